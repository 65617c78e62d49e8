"""Outcomes of operations: a value or an errno name, plain comparable data."""

from __future__ import annotations

import errno
import os
from typing import Any

import attrs


@attrs.frozen
class Ok:
    """The call succeeded and returned ``value`` (``None`` for calls with no result)."""

    value: Any = None


@attrs.frozen
class Err:
    """The call failed with the errno named ``name`` (``"ENOENT"``, never a number)."""

    name: str


Outcome = Ok | Err

@attrs.frozen
class AlsoAllowed:
    """What an operation returns when Linux gives ``value`` and a conforming driver may
    give one of ``others`` instead (each use cites why)."""

    value: Any
    others: tuple[Any, ...]


#: The outcomes the reference allows for one call. Usually one; several where POSIX or the
#: kernel leave the choice open (each such place cites its source).
Allowed = frozenset[Outcome]


def err_from_oserror(exc: OSError) -> Err:
    """The boundary of every adapter: an OSError becomes ``Err(<errno name>)``."""
    return Err(errno.errorcode.get(exc.errno or 0, f"E{exc.errno}"))


def describe(outcome: Outcome) -> str:
    if isinstance(outcome, Err):
        return f"{outcome.name} ({os.strerror(getattr(errno, outcome.name, 0))})"
    return repr(outcome.value)
