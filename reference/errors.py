"""The base of every error the reference package raises."""


class SpecError(Exception):
    """An error of the executable specification (an operation's errno, an engine's
    refusal): the base of :class:`reference.paths.FsError` and
    :class:`reference.container.EngineError`."""
