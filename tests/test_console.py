"""What certify prints for a person (conformance/reports/console.py): the progress, the skips
grouped by reason, the reference's self-check in one line, the summary that ends the
output (under 80 lines for a run of every driver and engine), the exit status's meaning."""

from __future__ import annotations

import argparse
import io

import attrs
import pytest

from adapters.engines import registry as engine_registry
from conformance.__main__ import CONFORMANT, NONCONFORMANT, main
from conformance.certify.engine import Verdict
from conformance.certify.engines import plan as engine_plan
from conformance.features import FEATURES
from conformance.records.failure import Failure, TracedStep
from conformance.reports import console
from reference import ops
from reference.layer import LayerSpec, StackSpec
from reference.options import MATRIX
from reference.outcome import Err, Ok

LABELS = [options.label for options in MATRIX]
CLAIMED = ("redirect_dir=off,index=off", "ro")
#: The option sets layer interchange is not defined for (the index, metacopy).
NO_INTERCHANGE = [label for label in LABELS if "index=on" in label or "metacopy" in label]
INTERCHANGE_SKIP = (
    "layer interchange is defined for index=off without metacopy, not {label}: the index "
    "lives in the work directory (overlayfs.rst 'Sharing and copying layers')"
)
PODMAN_SKIP = "podman cannot run here: podman is not installed\nsecond line of the reason"
REPORT_HTML = "/root/reports/report.html"


def _failure(driver: str, feature: str, label: str, step_actual: object, found=()) -> Failure:
    options = next(o for o in MATRIX if o.label == label)
    steps = (
        TracedStep(ops.Mkdir(path="d", mode=0o755), (Ok(None),), Ok(None)),
        TracedStep(ops.Chmod(path="a", mode=0o700), (Ok(None),), step_actual),
    )
    return Failure(driver, options, feature, StackSpec(lowers=(LayerSpec(entries=()),)), steps,
                   divergence="mydriver differs from the reference:\na: nlink: expected 1, got 2",
                   found=found)


def realistic(diverging: int = 3) -> list[Verdict]:
    """The verdicts of a default run on a machine like this one: the reference, the
    kernel, two FUSE presets claiming two option sets, the container engines (podman
    cannot run), and ``diverging`` unexpected verdicts in fuse-overlayfs."""
    verdicts: list[Verdict] = []
    wrong = 0
    for driver in ("reference", "kernel", "fuse-overlayfs", "unionfs-fuse"):
        for feature in ("", *(f.id for f in FEATURES)):
            for label in LABELS:
                verdict, detail, failures = "conforms", "", ()
                if feature == "layer-interchange" and label in NO_INTERCHANGE:
                    verdict, detail = "skipped", INTERCHANGE_SKIP.format(label=label)
                if driver.endswith("fuse") or driver == "fuse-overlayfs":
                    if label not in CLAIMED:
                        verdict, detail = "unclaimed", f"the profile does not claim {label}"
                    elif wrong < diverging and driver == "fuse-overlayfs":
                        wrong += 1
                        actual = Err("EIO") if wrong % 2 else Ok(None)
                        failures = (_failure(driver, feature, label, actual),)
                        verdict, detail = "diverges", "Diverged: mydriver differs"
                    else:
                        verdict, detail = "expected-divergence", "expected: a recorded one"
                verdicts.append(Verdict(driver, label, verdict, detail, 0.5, feature, failures))
    for name in engine_registry.ENGINES:
        for driver, feature, profile in engine_plan([name]):
            if name == "podman":
                verdicts.append(Verdict(driver, profile, "skipped", PODMAN_SKIP, 0.0, feature))
            else:
                verdicts.append(Verdict(driver, profile, "conforms", "", 1.0, feature))
    return verdicts


def test_a_default_run_summary_is_under_80_lines_and_ends_with_the_report_path() -> None:
    verdicts = realistic()
    assert len(verdicts) > 400  # a run of every driver and engine
    lines = console.summary_lines(verdicts, {"fuse": "give --driver-cmd"}, REPORT_HTML, 295.0)
    assert len(lines) < 80
    assert lines[-1] == f"report: {REPORT_HTML}"
    assert lines[-3].startswith(f"{len(verdicts)} cells in 4m55s: ")
    assert lines[-2].startswith("exit status 1:")
    # the reference's self-check: one line, no column
    assert sum("reference self-check" in line for line in lines) == 1
    header = next(line for line in lines if line.startswith("feature "))
    assert header.split() == ["feature", "kernel", "fuse-overlayfs", "unionfs-fuse"]
    engines = next(line for line in lines if line.startswith("container feature "))
    assert engines.split()[2:] == ["kernel-mounts", "docker", "podman"]
    assert "not run: fuse (give --driver-cmd)" in lines
    assert all(not line.startswith("fuse/") for line in lines)


def _symbols(mark: dict[str, str]) -> str:
    """A matrix cell: a symbol per option set of MATRIX, in its order (default ``.``)."""
    return "".join(mark.get(label, ".") for label in LABELS)


def test_the_matrix_has_a_symbol_per_option_set() -> None:
    lines = console.summary_lines(realistic(diverging=0))
    fuse = _symbols({label: "e" if label in CLAIMED else "-" for label in LABELS})
    machine = next(line for line in lines if line.startswith("machine "))
    assert machine.split()[1:] == [_symbols({}), fuse, fuse]
    interchange = next(line for line in lines if line.startswith("layer-interchange "))
    assert interchange.split()[1] == _symbols(dict.fromkeys(NO_INTERCHANGE, "s"))
    # the option sets' legend numbers them in the cells' order, each whole on a line
    start = next(i for i, line in enumerate(lines) if line.startswith("option sets"))
    legend = " ".join(lines[start:lines.index(next(line for line in lines
                                                   if line.startswith("feature ")))])
    assert [legend.index(f" {n} {label}") for n, label in enumerate(LABELS, 1)] == sorted(
        legend.index(f" {n} {label}") for n, label in enumerate(LABELS, 1))
    legend = next(line for line in lines if line.startswith(". conforms"))
    assert legend.split("  ") == [". conforms", "e expected-divergence", "- unclaimed",
                                  "s skipped"]


def test_the_matrix_can_be_read_in_80_columns() -> None:
    """Every line of the matrices and their legends fits 80 columns; drivers that would not
    fit beside each other (a kernel image, the generic fuse driver) go to a second block
    with the feature names again."""
    verdicts = realistic(diverging=0)
    for extra in ("kernel@6.1.0-28-amd64", "fuse"):
        verdicts += [attrs.evolve(v, driver=extra) for v in verdicts if v.driver == "kernel"]
    lines = console.matrix_lines([v for v in verdicts if v.driver != "reference"])
    assert console.WIDTH == 80 and max(map(len, lines)) <= 80, max(lines, key=len)
    headers = [line.split() for line in lines if line.startswith("feature ")]
    assert headers == [["feature", "kernel", "fuse-overlayfs", "unionfs-fuse"],
                       ["feature", "kernel@6.1.0-28-amd64", "fuse"]]
    skips = _symbols(dict.fromkeys(NO_INTERCHANGE, "s"))
    fuse = _symbols({label: "e" if label in CLAIMED else "-" for label in LABELS})
    rows = [line.split() for line in lines if line.startswith("layer-interchange ")]
    assert rows == [["layer-interchange", skips, fuse, fuse],
                    ["layer-interchange", skips, skips]]


def test_skipped_cells_are_grouped_by_reason_one_line_each() -> None:
    verdicts = realistic()
    lines = console.skip_lines(verdicts)
    assert len(lines) == 2, lines
    interchange, podman = lines
    # the option sets with an index or metacopy x (reference, kernel): the reasons differ
    # only in the option set named
    assert interchange.startswith(f"skipped {2 * len(NO_INTERCHANGE)}: layer interchange is "
                                  "defined for index=off without metacopy, not <option set>:")
    assert interchange.endswith(
        "[{reference,kernel}/layer-interchange/{" + " | ".join(NO_INTERCHANGE) + "}]"
    )
    podman_cells = [v for v in verdicts if v.driver == "engine:podman"]
    assert podman == (f"skipped {len(podman_cells)}: podman cannot run here: podman is not "
                      "installed [engine:podman/*/*]")
    summary = console.summary_lines(verdicts)
    assert interchange in summary and podman in summary


def test_short_cells_names_features_and_option_sets() -> None:
    universe = realistic(diverging=0)
    kernel = [v for v in universe if v.driver == "kernel"]
    some = [v for v in kernel if v.feature in ("copy-up", "xattrs") and v.options == "ro"]
    assert console.short_cells(some, universe) == "kernel/{copy-up,xattrs}/ro"
    assert console.short_cells(kernel, universe) == "kernel/*/*"
    machine = [v for v in kernel if not v.feature]
    assert console.short_cells(machine, universe) == "kernel/machine/*"


def test_each_unexpected_verdict_is_two_lines_with_its_first_difference() -> None:
    lines = console.summary_lines(realistic(diverging=3))
    listed = [i for i, line in enumerate(lines) if line.startswith("DIVERGES ")]
    assert [lines[i] for i in listed] == [
        "DIVERGES fuse-overlayfs/machine/redirect_dir=off,index=off",
        "DIVERGES fuse-overlayfs/machine/ro",
        "DIVERGES fuse-overlayfs/read-precedence/redirect_dir=off,index=off",
    ]
    # the first differing step, allowed vs actual
    assert lines[listed[0] + 1] == (
        "  step 2/2 Chmod(path='a', mode=0o700): allowed None, actual EIO (Input/output error)"
    )
    # every step allowed: the difference after the last one
    assert lines[listed[1] + 1] == "  after step 2/2: a: nlink: expected 1, got 2"


def test_a_hang_without_a_program_gives_its_reason_and_many_are_capped() -> None:
    hung = Verdict("kernel", "ro", "hung", "DriverHung: no answer in 30 s\nmore", 30.0, "xattrs")
    assert console.divergence_lines([hung]) == ["HUNG kernel/xattrs/ro",
                                                "  DriverHung: no answer in 30 s"]
    many = console.summary_lines(realistic(diverging=20))
    assert sum(line.startswith("DIVERGES ") for line in many) == console.MAX_LISTED
    assert "... and 10 more (report.html has them all)" in many
    # capped: twice as many divergences add the one "... and N more" line, whatever the
    # number of features in the tables above them
    fewer = console.summary_lines(realistic(diverging=console.MAX_LISTED))
    assert len(many) == len(fewer) + 1


def test_the_exit_status_line_says_what_the_status_means() -> None:
    good = realistic(diverging=0)
    assert console.exit_status(good) == CONFORMANT
    assert console.summary_lines(good)[-2] == (
        "exit status 0: no unexpected divergence (every cell conforms, is recorded, "
        "unclaimed or skipped)"
    )
    bad = realistic(diverging=1)
    assert console.exit_status(bad) == NONCONFORMANT
    assert console.summary_lines(bad)[-2].startswith("exit status 1: an unexpected divergence")
    assert console.summary_lines(good)[-1].startswith("report: none written")


def test_a_verdict_the_console_does_not_know_gets_a_symbol_a_count_and_a_listing() -> None:
    verdicts = realistic(diverging=0)
    odd = Verdict("kernel", "ro", "recorded-only", "only recorded behaviours", 0.1, "xattrs")
    verdicts[verdicts.index(next(v for v in verdicts if v.id == odd.id))] = odd
    marks = console.symbols(v.verdict for v in verdicts)
    assert marks["recorded-only"] not in {m for k, m in marks.items() if k != "recorded-only"}
    lines = console.summary_lines(verdicts)
    assert any(f"{marks['recorded-only']} recorded-only" in line for line in lines)
    assert "1 recorded-only" in lines[-3]


def test_only_the_reference_is_its_own_matrix(capsys) -> None:
    """certify --driver reference: the reference is the subject, not a self-check line."""
    verdicts = [v for v in realistic() if v.driver == "reference"]
    lines = console.summary_lines(verdicts)
    assert not any("self-check" in line for line in lines)
    assert next(line for line in lines if line.startswith("feature ")).split() == [
        "feature", "reference"]


def test_off_a_terminal_progress_is_one_line_per_cell() -> None:
    stream = io.StringIO()
    progress = console.Progress(3, stream, live=False)
    cells = realistic()[:3]
    for verdict in cells:
        progress.update(verdict)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in stream.getvalue()
    assert lines[0].startswith("[1/3] reference ") and lines[2].startswith("[3/3] reference ")
    assert not console.live_terminal(io.StringIO(), io.StringIO())


def test_on_a_terminal_progress_is_one_line_redrawn_in_place() -> None:
    stream = io.StringIO()
    now = [100.0]
    progress = console.Progress(4, stream, live=True, clock=lambda: now[0], columns=200)
    cells = realistic()[:2]
    for verdict in cells:
        now[0] += 10.0
        progress.update(verdict)
    text = stream.getvalue()
    assert "\n" not in text and text.count("\r\x1b[K") == 2
    assert text.rsplit("\r\x1b[K", 1)[1].startswith(
        "[2/4] 20s elapsed, about 20s left; reference/machine/redirect_dir=on,index=off conforms"
    )
    narrow = console.Progress(4, io.StringIO(), live=True, columns=40)
    narrow.update(cells[0])
    assert len(narrow.stream.getvalue()) == len("\r\x1b[K") + 39  # never wraps
    progress.note("warning: corpus: disk full")  # stays, above the live line
    assert stream.getvalue().endswith("\r\x1b[Kwarning: corpus: disk full\n")
    progress.update(cells[0])
    progress.close()
    assert stream.getvalue().endswith("\r\x1b[K")  # cleared for the summary


def test_durations() -> None:
    assert [console.duration(s) for s in (4.4, 59.6, 185, 3725)] == ["4s", "1m00s", "3m05s",
                                                                     "1h02m"]


def test_the_generic_fuse_driver_is_left_out_unless_asked_for() -> None:
    from adapters import registry
    from adapters.settings import DriverSettings
    from conformance.certify.command import left_out

    unset = DriverSettings()  # no --driver-cmd, no --profile
    drivers = registry.names()
    default = argparse.Namespace(driver=[])
    assert set(left_out(default, drivers, unset)) == {"fuse"}
    assert left_out(argparse.Namespace(driver=["fuse"]), ["fuse"], unset) == {}


def test_certify_ends_with_the_summary(tmp_path, capsys) -> None:
    argv = ["certify", "--driver", "reference", "--feature", "xattrs", "--corpus",
            str(tmp_path / "c"), "--report-dir", str(tmp_path / "r")]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"report: {(tmp_path / 'r' / 'report.html').resolve()}"
    assert out[-2].startswith("exit status 0:")
    cells = len(MATRIX)  # one feature on every option set
    assert out[-3].startswith(f"{cells} cells in ") and out[-3].endswith(f"s: {cells} conforms")
    assert ["xattrs", "." * cells] in [line.split() for line in out]


@pytest.mark.parametrize("verdict", ["diverges", "hung", "crashed"])
def test_known_failing_verdicts_have_capital_symbols(verdict: str) -> None:
    assert console.symbols([verdict])[verdict].isupper()


def test_a_reference_that_does_not_conform_is_not_hidden_in_its_line() -> None:
    verdicts = realistic(diverging=0)
    broken = Verdict("reference", "ro", "diverges", "Diverged: the spec disagrees", 0.1, "xattrs")
    verdicts[verdicts.index(next(v for v in verdicts if v.id == broken.id))] = broken
    lines = console.summary_lines(verdicts)
    check = next(line for line in lines if line.startswith("reference self-check"))
    overlay = (1 + len(FEATURES)) * len(MATRIX)  # the machine and each feature
    container = len(engine_plan(["reference"]))
    assert check.startswith(f"reference self-check: 1 of {overlay + container} cells "
                            f"({overlay} overlay + {container} container) do not conform")
    assert "DIVERGES reference/xattrs/ro" in lines and lines[-2].startswith("exit status 1")
