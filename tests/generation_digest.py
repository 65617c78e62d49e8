"""``python tests/generation_digest.py`` (a script, not a test; under tests/ so that Hypothesis
does not mix its constants into the draws): a digest of what the generator draws, to
check that a change of the generator (or of the reference it draws against) draws the same
programs for the same choices (docs/generation.md, "Kernel throughput").

Two digests, each the SHA-256 (first 16 hex digits) of the ``repr`` of the drawn cases:

- *matrix*: 60 seeded cases (``ConjectureData(random=Random(i))``, i < 60) for ``Options()``
  and every option set of ``reference.options.MATRIX`` (720 cases), each with the callers
  of the whole machine (``("root",) * 4 + ("user", "other")``);
- *replay* (given a file of recorded choice sequences, a pickled list of
  ``ConjectureData.choices``): those choices replayed through ``Cases.do_draw`` for
  ``Options()`` with root only (``ConjectureData.for_choices``), as the callgrind
  measurements do. The i16b measurements recorded 300 sequences (seeds i < 300) in
  /tmp/i16b/choices.pkl; recorded again now they would differ (Hypothesis mixes constants
  of the loaded modules into fresh draws, conformance/bench.py), replayed they do not.

Run from the checkout: ``PYTHONPATH=. python tests/generation_digest.py [CHOICES.pkl]``.
"""

from __future__ import annotations

import hashlib
import pickle
import random
import sys

from hypothesis.internal.conjecture.data import ConjectureData

from conformance.generation.cases import cases
from reference.options import MATRIX, Options

#: The callers of the whole machine's cases (one step in three of those that take one).
CALLERS = ("root",) * 4 + ("user", "other")


def _digest(strategies: list[object], seeds: int) -> str:
    digest = hashlib.sha256()
    for strategy in strategies:
        for seed in range(seeds):
            data = ConjectureData(random=random.Random(seed))
            digest.update(repr(data.draw(strategy)).encode())  # type: ignore[arg-type]
    return digest.hexdigest()[:16]


def matrix_digest() -> str:
    """The digest of the 720 seeded cases of ``Options()`` and the matrix."""
    strategies = [
        cases(None, 30, options, 2 if options.read_only or options.data_only else 1, CALLERS)
        for options in [Options(), *MATRIX]
    ]
    return _digest(strategies, 60)  # type: ignore[arg-type]


def replay_digest(path: str) -> str:
    """The digest of the recorded choice sequences in ``path`` replayed for ``Options()``."""
    with open(path, "rb") as recorded:
        sequences = pickle.load(recorded)
    strategy = cases(None, 30, Options())
    digest = hashlib.sha256()
    for choices in sequences:
        digest.update(repr(ConjectureData.for_choices(choices).draw(strategy)).encode())
    return digest.hexdigest()[:16]


def main(argv: list[str]) -> int:
    sys.stdout.write(f"matrix {matrix_digest()}\n")
    for path in argv:
        sys.stdout.write(f"replay {replay_digest(path)} ({path})\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
