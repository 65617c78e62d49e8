"""``python -m conformance certify``: certify the drivers this machine can run;
``python -m conformance bench``: measure the suite (:mod:`conformance.bench`)."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from adapters import registry
from conformance import expectations
from conformance.certify import (
    CONFORMS,
    UNCLAIMED,
    Verdict,
    certify,
    render_feature_matrix,
    render_matrix,
)

CONFORMANT, NONCONFORMANT, USAGE_OR_SETUP_ERROR = 0, 1, 2
#: Ctrl-C or SIGTERM (128 + SIGINT, as a shell reports it).
INTERRUPTED = 130


class UsageError(Exception):
    """Bad input: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m conformance")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    certify_cmd = commands.add_parser("certify", help="certify drivers against the reference")
    certify_cmd.add_argument(
        "--driver",
        action="append",
        default=[],
        help="driver to certify (repeatable; default: every driver this machine can run)",
    )
    certify_cmd.add_argument(
        "--budget",
        choices=("quick", "standard", "deep"),
        default="quick",
        help="how much the state machines explore (default: quick)",
    )
    certify_cmd.add_argument(
        "--driver-cmd",
        metavar="TEMPLATE",
        help="command template of a FUSE driver, for --driver=fuse (see README)",
    )
    certify_cmd.add_argument(
        "--profile", metavar="PATH", help="profile (TOML) of the FUSE driver under test"
    )
    certify_cmd.add_argument(
        "--driver-timeout",
        type=float,
        metavar="SECONDS",
        help="seconds one driver request may take before the driver is hung (default: 30)",
    )
    certify_cmd.add_argument(
        "--expectations",
        metavar="PATH",
        help="known divergences of installed driver versions (default: "
        "conformance/expectations.toml)",
    )
    bench_cmd = commands.add_parser(
        "bench", help="measure throughput, -n 2 scaling and how fast seeded faults are found"
    )
    from conformance.bench import add_arguments

    add_arguments(bench_cmd)
    return parser


def _progress(verdict: Verdict) -> None:
    print(
        f"  {verdict.driver:<10} {verdict.feature or 'all':<20} {verdict.options:<40} "
        f"{verdict.verdict} ({verdict.seconds:.1f}s)",
        file=sys.stderr,
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    from conformance.interrupt import terminate_as_interrupt

    terminate_as_interrupt()
    try:
        return _main(argv)
    except UsageError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return USAGE_OR_SETUP_ERROR
    except KeyboardInterrupt as why:
        # Ctrl-C or SIGTERM: the drivers were closed on the way out (certify's finally)
        print(f"interrupted ({why or 'SIGINT'}): no verdict", file=sys.stderr)
        return INTERRUPTED


def _check_fuse_settings(driver_cmd: str | None, profile: str | None) -> None:
    """Reject a bad template or profile before anything runs (one line each)."""
    from adapters.fuse import TemplateError, binary_problem, parse_template
    from adapters.profile import ProfileError, load_profile

    try:
        if driver_cmd is not None:
            words = parse_template(driver_cmd)
            problem = binary_problem(words[0])
            if problem is not None:
                raise UsageError(f"--driver-cmd: {problem}")
        if profile is not None:
            load_profile(profile)
    except (TemplateError, ProfileError, OSError) as problem:
        raise UsageError(str(problem).splitlines()[0]) from None


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "bench":
        from conformance.bench import main as bench_main

        return bench_main(args)
    known = registry.names()
    for name in args.driver:
        if name not in known:
            print(f"error: unknown driver {name!r} (known: {', '.join(known)})", file=sys.stderr)
            return USAGE_OR_SETUP_ERROR
    drivers = args.driver or known
    _check_fuse_settings(args.driver_cmd, args.profile)
    try:
        expectations.configure(args.expectations)
    except expectations.ExpectationError as problem:
        raise UsageError(str(problem)) from None
    try:
        registry.configure(
            driver_cmd=args.driver_cmd, profile=args.profile, timeout=args.driver_timeout
        )
    except ValueError as problem:
        raise UsageError(f"--driver-timeout: {problem}") from None

    from pathlib import Path

    from conformance.settings import feature_profile, profile, register_profiles

    register_profiles(Path.cwd())
    verdicts = certify(
        drivers, profile(args.budget), _progress, feature_settings=feature_profile(args.budget)
    )
    print(render_matrix(verdicts))
    print()
    print(render_feature_matrix(verdicts))
    for verdict in verdicts:
        if verdict.verdict != CONFORMS:
            where = f"{verdict.feature} " if verdict.feature else ""
            print(
                f"\n{verdict.driver} {where}[{verdict.options}] {verdict.verdict}:\n"
                f"{verdict.detail}"
            )
    # diverges, hung and crashed are failures; skipped, unclaimed and expected divergences
    # (conformance/expectations.toml) are reported, not failed
    passed = (CONFORMS, UNCLAIMED, "skipped", expectations.EXPECTED)
    failed = [v for v in verdicts if v.verdict not in passed]
    return NONCONFORMANT if failed else CONFORMANT


if __name__ == "__main__":
    sys.exit(main())
