"""Where unionspec keeps what outlives a run (fetched kernels, a VM's last console):
``$UNIONSPEC_CACHE``, else ``unionspec`` under ``$XDG_CACHE_HOME`` or ``~/.cache``.

Read when asked, not at import, so a changed environment (a test's) is seen. It lives in
``adapters`` since both the VM (:mod:`adapters.vm.machine`) and ``unionspec kernels fetch``
(:mod:`conformance.certify.kernels`) need it, and ``conformance`` may import ``adapters``, not the
reverse.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$UNIONSPEC_CACHE`` or ``$XDG_CACHE_HOME/unionspec`` or ``~/.cache/unionspec``."""
    base = os.environ.get("UNIONSPEC_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "unionspec"
    )
    return Path(base)
