"""``python -m conformance certify``: certify the drivers this machine can run;
``replay FILE``: run one step program of a corpus; ``diff OLD.json NEW.json``: the cells
whose verdict changed between two reports; ``bench``: measure the suite
(:mod:`conformance.bench`); ``coverage``: how deep generation reaches
(:mod:`conformance.generation.coverage`). Installed as the console command ``unionspec``.

Exit status: 0 conformant (or only expected divergences), 1 an unexpected divergence (a
regression for ``diff``), 2 a usage or setup error (one line on stderr), and for an
interrupted ``certify`` (Ctrl-C or SIGTERM) 130, after the reports are written.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from adapters.engines.registry import ENGINES
from conformance.certify.command import DEFAULT_CORPUS, UsageError
from conformance.timebudget import budget_arg
from conformance.verdicts import (  # noqa: F401 (CONFORMANT, NONCONFORMANT: the CLI's API)
    CONFORMANT,
    INTERRUPTED,
    NONCONFORMANT,
    USAGE_OR_SETUP_ERROR,
)


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
        "--kernel-image",
        action="append",
        default=[],
        metavar="PATH",
        help="certify the kernel driver in a VM booted on this kernel (a vmlinuz or an "
        "unpacked Debian kernel package, see `unionspec kernels fetch`; repeatable: one "
        "driver kernel@<release> each, instead of the host's kernel)",
    )
    certify_cmd.add_argument(
        "--kernel-modules",
        metavar="DIR",
        help="the modules of a --kernel-image given as a vmlinuz (default: found beside it)",
    )
    certify_cmd.add_argument(
        "--shard",
        metavar="K/N",
        help="certify only the K-th of N stable shares of the cells (one per machine or CI "
        "job; join the reports with `unionspec merge`)",
    )
    certify_cmd.add_argument(
        "--budget",
        type=budget_arg,
        default="quick",
        metavar="quick|standard|deep|DURATION",
        help="how much the state machines explore (default: quick); a duration (10m, 1h) "
        "explores until it is spent, spread over the cells",
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
        "conformance/records/expectations.toml)",
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
        help="regression corpus: replayed first, every unexpected divergence is saved there "
        f"(default: {DEFAULT_CORPUS}/)",
    )
    certify_cmd.add_argument(
        "--seed", type=int, metavar="N", help="seed of the generation (reproducible runs)"
    )
    certify_cmd.add_argument(
        "--example-db",
        metavar="DIR",
        default=None,
        help="a Hypothesis example database shared with other runs (storage other "
        "machines see, a CI artifact), joined to the local one: every run replays every "
        "run's failures first (default: $UNIONSPEC_EXAMPLE_DB)",
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
        "left out, unless named: --feature machine)",
    )
    certify_cmd.add_argument(
        "--engine",
        action="append",
        default=[],
        choices=list(ENGINES),
        help="container engine to certify (repeatable; default: every engine, when neither "
        "--driver nor --feature is given)",
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
    diff_cmd.add_argument(
        "--old-driver", metavar="NAME", help="compare this driver's cells in OLD (kernel@...)"
    )
    diff_cmd.add_argument(
        "--new-driver", metavar="NAME", help="with this driver's in NEW (may be the same file)"
    )
    merge_cmd = commands.add_parser(
        "merge", help="join the reports of shards (or of kernels) into one report directory"
    )
    merge_cmd.add_argument("out", metavar="OUT_DIR")
    merge_cmd.add_argument("reports", nargs="+", metavar="REPORT", help="report.json or its dir")
    kernels_cmd = commands.add_parser(
        "kernels", help="download and unpack Debian kernels for --kernel-image (never installed)"
    )
    kernels_cmd.add_argument("action", choices=("fetch",))
    kernels_cmd.add_argument(
        "specs", nargs="+", metavar="SPEC", help="6.1, 6.12, a suite (trixie, sid), newest, "
        "or a linux-image-... package name"
    )
    bench_cmd = commands.add_parser(
        "bench", help="measure throughput, -n 2 scaling and how fast seeded faults are found"
    )
    from conformance.bench import add_arguments

    add_arguments(bench_cmd)
    coverage_cmd = commands.add_parser(
        "coverage",
        help="how deep generation reaches: success per operation kind, rare states reached",
    )
    from conformance.generation.coverage import add_arguments as coverage_arguments

    coverage_arguments(coverage_cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    from conformance.certify.interrupt import terminate_as_interrupt

    terminate_as_interrupt()
    from conformance.reports.report import ReportDirError

    try:
        return _main(argv)
    except (UsageError, ReportDirError) as problem:
        print(f"error: {problem}", file=sys.stderr)
        return USAGE_OR_SETUP_ERROR
    except KeyboardInterrupt as why:
        # Ctrl-C or SIGTERM: the drivers were closed on the way out (certify's finally)
        print(f"interrupted ({why or 'SIGINT'}): no verdict", file=sys.stderr)
        return INTERRUPTED


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "bench":
        from conformance.bench import main as bench_main

        return bench_main(args)
    if args.command == "merge":
        from conformance.certify.shard import merge_command

        return merge_command(args.out, args.reports)
    if args.command == "kernels":
        from conformance.certify.kernels import main as kernels_main

        return kernels_main([args.action, *args.specs])
    if args.command == "coverage":
        from conformance.generation.coverage import main as coverage_main

        return coverage_main(args)
    if args.command == "diff":
        from conformance.reports.diff import diff_command

        return diff_command(args.old, args.new, args.old_driver, args.new_driver)
    if args.command == "replay":
        from conformance.certify.command import replay_command

        return replay_command(args)
    from conformance.certify.command import certify_command

    return certify_command(args)


if __name__ == "__main__":
    sys.exit(main())
