"""``python -m conformance certify``: certify the drivers this machine can run;
``replay FILE``: run one step program of a corpus; ``diff OLD.json NEW.json``: the cells
whose verdict changed between two reports; ``bench``: measure the suite
(:mod:`conformance.bench`). Installed as the console command ``unionspec``.

Exit status: 0 conformant (or only expected divergences), 1 an unexpected divergence (a
regression for ``diff``), 2 a usage or setup error (one line on stderr), and for an
interrupted ``certify`` 130 (SIGINT) or 143 (SIGTERM), after the reports are written.
"""

from __future__ import annotations

import argparse
import signal
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
#: Exit status of an interrupted certify, by signal (the shell's 128 + N).
INTERRUPTED = {signal.SIGINT: 130, signal.SIGTERM: 143}
DEFAULT_CORPUS = ".unionspec/corpus"


class UsageError(Exception):
    """Bad input: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="unionspec")
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
        "--expectations",
        metavar="PATH",
        help="known divergences of installed driver versions (default: "
        "conformance/expectations.toml)",
    )
    certify_cmd.add_argument(
        "--report-dir",
        metavar="DIR",
        help="write report.json, report.md, report.html, junit.xml and the reproducers "
        "here (rewritten after every verdict)",
    )
    certify_cmd.add_argument(
        "--corpus",
        metavar="DIR",
        default=None,
        help="regression corpus: replayed first, every divergence found is saved there "
        f"(default: {DEFAULT_CORPUS}/)",
    )
    certify_cmd.add_argument(
        "--seed", type=int, metavar="N", help="seed of the generation (reproducible runs)"
    )
    certify_cmd.add_argument(
        "-n",
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="certify cells in N parallel processes (each with its own driver instances)",
    )
    certify_cmd.add_argument(
        "--feature",
        action="append",
        default=[],
        metavar="NAME",
        help="certify only this feature (repeatable; the whole-machine cells are then "
        "left out)",
    )
    replay_cmd = commands.add_parser(
        "replay", help="replay one step program (a corpus file) on a driver"
    )
    replay_cmd.add_argument("program", metavar="FILE")
    replay_cmd.add_argument("--driver", default=None, help="driver (default: the program's)")
    replay_cmd.add_argument("--driver-cmd", metavar="TEMPLATE")
    replay_cmd.add_argument("--profile", metavar="PATH")
    diff_cmd = commands.add_parser(
        "diff", help="the cells whose verdict changed between two report.json files"
    )
    diff_cmd.add_argument("old", metavar="OLD.json")
    diff_cmd.add_argument("new", metavar="NEW.json")
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
    try:
        return _main(argv)
    except UsageError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return USAGE_OR_SETUP_ERROR


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
    registry.configure(driver_cmd=args.driver_cmd, profile=args.profile)

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
