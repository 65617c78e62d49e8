"""A third-party driver package, made on the fly: a module and a ``*.dist-info`` with an
``entry_points.txt`` registering its drivers in the ``unionspec.drivers`` group, put on
``PYTHONPATH`` of a subprocess (as ``pip install`` of a separate package would)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MODULE = '''
from adapters.drivers.reference import ReferenceDriver
from adapters.faults import FaultyDriver


class CleanDriver(ReferenceDriver):
    """A conforming driver (the reference engine under another name)."""

    name = "thirdparty-clean"


class ChownDriver(FaultyDriver):
    """A driver whose chown swaps uid and gid (adapters/faults.py)."""

    def __init__(self):
        super().__init__("chown-swaps-ids")
        self.name = "thirdparty-chown"
'''

ENTRY_POINTS = """[unionspec.drivers]
thirdparty-clean = thirdparty_drivers:CleanDriver
thirdparty-chown = thirdparty_drivers:ChownDriver
"""


def install(where: Path) -> dict[str, str]:
    """Write the package under ``where``; the environment of a subprocess that sees it."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "thirdparty_drivers.py").write_text(MODULE)
    info = where / "thirdparty_drivers-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: thirdparty-drivers\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    (info / "RECORD").write_text("")
    path = os.pathsep.join([str(where), str(ROOT)])
    return {**os.environ, "PYTHONPATH": path}
