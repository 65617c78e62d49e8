"""unionspec reference engine: the semantics of layered filesystems as executable code.

Pure Python, in memory, no I/O. The modules, in reading order:

- ``outcome``  what an operation returns: ``Ok(value)`` or ``Err("ENOENT")``;
- ``layer``    a layer as a driver keeps it on disk (entries, whiteouts, opaque dirs,
  redirects, metacopy) and the frozen specs that describe generated layers;
- ``ops``      the operations, as small frozen data classes;
- ``options``  the overlay feature options of a mount;
- ``view``     what can be observed: the merged view and a layer's on-disk image;
- ``overlay``  the overlay engine that applies operations and defines the rules.
"""

from reference.options import Options
from reference.outcome import Err, Ok, Outcome
from reference.overlay import Overlay

__all__ = ["Err", "Ok", "Options", "Outcome", "Overlay"]
