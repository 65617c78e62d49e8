"""Debian kernel packages for the kernel matrix: ``unionspec kernels fetch SPEC...``.

A kernel is fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x`` into a
cache (``$UNIONSPEC_CACHE`` or ``~/.cache/unionspec``, under ``kernels/<release>/``); it is
never installed. The Debian suites it looks in are apt sources written into a private apt
directory under the cache (``kernels/apt/``): the host's ``/etc/apt`` is never read for
sources nor written. Those sources use the archive keys of the host's
``debian-archive-keyring``.

A SPEC is a version prefix (``6.1``, ``6.12``: the newest image package of that series in
any suite), a suite name (``bookworm``, ``trixie``, ``sid``: the image its
``linux-image-amd64`` depends on), ``newest`` (the highest version in any suite) or a full
package name (``linux-image-6.1.0-37-amd64``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import attrs

from adapters.cache import cache_root
from conformance.errors import ConformanceError
from conformance.verdicts import USAGE_OR_SETUP_ERROR

MIRROR = "http://deb.debian.org/debian"
SECURITY = "http://deb.debian.org/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
#: (archive, suite): Debian 12 with its security updates and backports (6.12 is there),
#: Debian 13 and unstable (the newest Debian offers).
SUITES = (
    (MIRROR, "bookworm"),
    (SECURITY, "bookworm-security"),
    (MIRROR, "bookworm-backports"),
    (MIRROR, "trixie"),
    (SECURITY, "trixie-security"),
    (MIRROR, "sid"),
)
#: A stock image package: linux-image-<release>, release ending in -amd64 (not -dbg,
#: -unsigned, -rt-, -cloud-).
IMAGE = re.compile(r"^linux-image-(\d+\.\d+\.\d+[^ ]*-amd64)$")
#: The packages a kernel is made of besides its image package (Debian 14 split it).
PART_PREFIXES = ("linux-binary-", "linux-modules-")
#: The mark of a completely unpacked kernel (the package names, one a line).
UNPACKED = ".unpacked"
#: Package lists younger than this are not fetched again (seconds).
LISTS_MAX_AGE = 24 * 3600.0
FLAVOUR_EXCLUDED = ("-rt-", "-cloud-", "-unsigned", "-dbg")
#: A SPEC that is a version prefix: ``6.1``, ``6.12.118``.
VERSION = re.compile(r"\d+\.\d+(\.\d+)?")


class FetchError(ConformanceError, RuntimeError):
    """A kernel could not be fetched (one line for the user)."""


def kernels_dir() -> Path:
    """Where kernels are kept: ``kernels/`` under the cache (adapters.cache)."""
    return cache_root() / "kernels"


@attrs.frozen
class PrivateApt:
    """An apt configuration of our own: sources, lists and archives under ``root``."""

    root: Path
    #: The (archive, suite) pairs it looks in.
    suites: tuple[tuple[str, str], ...] = SUITES

    def options(self) -> list[str]:
        r = self.root
        return [
            "-o", f"Dir::Etc::SourceList={r / 'sources.list'}",
            "-o", f"Dir::Etc::SourceParts={r / 'sources.list.d'}",
            "-o", f"Dir::Etc::Preferences={r / 'preferences'}",
            "-o", f"Dir::Etc::PreferencesParts={r / 'preferences.d'}",
            "-o", f"Dir::State::Lists={r / 'lists'}",
            "-o", f"Dir::State::Status={r / 'status'}",
            "-o", f"Dir::Cache={r / 'cache'}",
            "-o", "APT::Get::List-Cleanup=false",
            "-o", "Acquire::Languages=none",
            "-o", "APT::Architecture=amd64",
            "-o", "APT::Architectures=amd64",
        ]  # fmt: skip

    def prepare(self) -> None:
        for sub in ("sources.list.d", "preferences.d", "lists/partial", "cache/archives/partial"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "status").touch()
        lines = [f"deb [signed-by={KEYRING}] {url} {suite} main" for url, suite in self.suites]
        (self.root / "sources.list").write_text("\n".join(lines) + "\n")

    def run(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        proc = subprocess.run(
            [tool, *self.options(), *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise FetchError(f"{tool} {' '.join(args[:2])}: {last}")
        return proc.stdout

    def update(self, max_age: float = LISTS_MAX_AGE) -> None:
        """``apt-get update`` unless the lists are younger than ``max_age`` seconds."""
        self.prepare()
        stamp = self.root / ("updated-" + "-".join(suite for _url, suite in self.suites))
        if stamp.exists() and time.time() - stamp.stat().st_mtime < max_age:
            return
        self.run("apt-get", "update", "-qq")
        stamp.touch()

    def image_packages(self) -> dict[str, str]:
        """Every stock amd64 image package the suites offer: name -> newest version."""
        out = self.run("apt-cache", "search", "--names-only", "^linux-image-[0-9]")
        names = [line.split(" ", 1)[0] for line in out.splitlines()]
        found = {}
        for name in names:
            if IMAGE.match(name) and not any(x in name for x in FLAVOUR_EXCLUDED):
                found[name] = ""
        if not found:
            return {}
        policy = self.run("apt-cache", "policy", *sorted(found))
        current = ""
        for line in policy.splitlines():
            if line and not line.startswith(" "):
                current = line.rstrip(":")
            elif "Candidate:" in line and current in found:
                found[current] = line.split()[-1]
        return found

    def suite_image(self, suite: str) -> str:
        """The image package ``linux-image-amd64`` of ``suite`` depends on."""
        out = self.run("apt-cache", "show", f"linux-image-amd64/{suite}")
        for line in out.splitlines():
            if line.startswith("Depends:"):
                for dep in line.split(":", 1)[1].split(","):
                    name = dep.strip().split(" ")[0]
                    if IMAGE.match(name):
                        return name
        raise FetchError(f"linux-image-amd64 of {suite} depends on no image package")


def version_key(version: str) -> tuple[object, ...]:
    """A sort key for Debian versions good enough for kernel packages (numbers compare as
    numbers, ``~`` sorts first)."""
    parts: list[object] = []
    for piece in re.findall(r"\d+|~|[^\d~]+", version):
        parts.append((2, int(piece)) if piece.isdigit() else (0,) if piece == "~" else (1, piece))
    return tuple(parts)


def check_spec(spec: str) -> None:
    """A FetchError (one line) for what cannot be a SPEC, before any download."""
    known = spec.startswith("linux-image-") or spec == "newest"
    known |= spec in {suite for _url, suite in SUITES}
    if not known and not VERSION.fullmatch(spec):
        raise FetchError(
            f"{spec!r} is not a kernel spec (a version such as 6.1, a suite such as "
            f"trixie, 'newest', or a linux-image-... package name)"
        )


def resolve(spec: str, apt: PrivateApt, offered: dict[str, str] | None = None) -> str:
    """The image package a SPEC names (module doc)."""
    check_spec(spec)
    if spec.startswith("linux-image-"):
        return spec
    suites = {suite for _url, suite in apt.suites}
    if spec in suites:
        return apt.suite_image(spec)
    offered = apt.image_packages() if offered is None else offered
    if spec == "newest":
        candidates = list(offered)
    elif VERSION.fullmatch(spec):
        candidates = [n for n in offered if re.match(rf"linux-image-{re.escape(spec)}[.\-+]", n)]
    else:  # a suite of SUITES that this apt does not look in
        candidates = []
    if not candidates:
        raise FetchError(f"no Debian kernel image package matches {spec!r}")
    return max(candidates, key=lambda n: version_key(offered[n]))


def parts(package: str, apt: PrivateApt) -> list[str]:
    """The packages that make up a kernel: the image package, and since Debian 14 the
    ``linux-binary-<release>`` (the image) and ``linux-modules-<release>`` it depends on."""
    release = package.removeprefix("linux-image-")
    out = apt.run("apt-cache", "show", "--no-all-versions", package)
    names = [package]
    for line in out.splitlines():
        if line.startswith("Depends:"):
            for dep in line.split(":", 1)[1].split(","):
                for alt in dep.split("|"):
                    name = alt.strip().split(" ")[0]
                    if name.endswith(f"-{release}") and name.startswith(PART_PREFIXES):
                        names.append(name)
    return names


def unpack(package: str, apt: PrivateApt, into: Path) -> Path:
    """Download ``package`` (and its parts) and unpack them with ``dpkg-deb -x`` into
    ``into/<release>``; a directory with a ``.unpacked`` mark is kept as it is."""
    release = package.removeprefix("linux-image-")
    target = into / release
    if (target / UNPACKED).exists():
        return target
    with tempfile.TemporaryDirectory(dir=into) as tmp:
        names = parts(package, apt)
        apt.run("apt-get", "download", "-qq", *names, cwd=Path(tmp))
        debs = sorted(Path(tmp).glob("*.deb"))
        if len(debs) != len(names):
            raise FetchError(f"apt-get download {' '.join(names)} left {len(debs)} .deb files")
        partial = Path(tmp) / "root"
        for deb in debs:
            proc = subprocess.run(
                ["dpkg-deb", "-x", str(deb), str(partial)],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise FetchError(f"dpkg-deb -x {deb.name}: {proc.stderr.strip()}")
        (partial / UNPACKED).write_text("\n".join(names) + "\n")
        if target.exists():
            shutil.rmtree(target)
        partial.rename(target)
    return target


def fetch(
    specs: Sequence[str], cache: Path | None = None, suites: Sequence[str] | None = None
) -> list[Path]:
    """Fetch and unpack the kernels SPECs name; the unpacked directories, in order. With
    ``suites``, only those of :data:`SUITES` are looked in (fewer lists to download)."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise FetchError("fetching Debian kernels needs apt-get and dpkg-deb")
    for spec in specs:
        check_spec(spec)
    into = cache or kernels_dir()
    into.mkdir(parents=True, exist_ok=True)
    chosen = tuple(pair for pair in SUITES if suites is None or pair[1] in suites)
    if not chosen:
        raise FetchError(f"no known suite among {', '.join(suites or ())}")
    apt = PrivateApt(into / "apt", chosen)
    apt.update()
    offered = apt.image_packages()
    return [unpack(resolve(spec, apt, offered), apt, into) for spec in specs]


def main(argv: Sequence[str]) -> int:
    """``kernels fetch SPEC...``: print each unpacked directory; exit status 2 for bad
    usage or a kernel that cannot be fetched (a setup error, conformance.__main__)."""
    if len(argv) < 2 or argv[0] != "fetch":
        print("usage: unionspec kernels fetch SPEC... (6.1, 6.12, trixie, newest)", file=sys.stderr)
        return USAGE_OR_SETUP_ERROR
    try:
        for path in fetch(argv[1:]):
            print(path)
    except FetchError as exc:
        print(f"unionspec kernels: {exc}", file=sys.stderr)
        return USAGE_OR_SETUP_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
