"""The seeded faults moved into the package: :mod:`adapters.faults`. This name stays for
branches written before the move; import from ``adapters.faults``."""

from adapters.faults import *  # noqa: F403
from adapters.faults import FAULTS, FaultyDriver  # noqa: F401
