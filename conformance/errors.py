"""The bases of the errors the conformance package raises."""


class ConformanceError(Exception):
    """Every error of the conformance package: bad input (one line, never a traceback), a
    cell that cannot run, and a divergence (:class:`Diverges`)."""


class Diverges(ConformanceError, AssertionError):
    """A driver did what the reference does not allow. An AssertionError, as Hypothesis
    and pytest report a failed check: the base of the state machine's, the container
    machine's and layer interchange's divergences."""
