"""Argument checks: a wrong type or range raises ``InvalidInputError`` naming the argument,
not the builtin TypeError/OverflowError the native conversion would raise."""

from __future__ import annotations

import numbers
import os
from typing import Any, List, Optional

from .errors import InvalidInputError

U32_MAX = 2**32 - 1
USIZE_MAX = 2**64 - 1


def text(value: Any, what: str, optional: bool = False) -> Optional[str]:
    """``value``, which must be a ``str`` (or ``None`` when ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        kind = "a string or None" if optional else "a string"
        raise InvalidInputError(f"{what} must be {kind}, not {shown(value)}")
    return value


def path(value: Any, what: str = "path") -> str:
    """A ``str``, ``bytes`` or ``os.PathLike`` path as a ``str``."""
    try:
        return os.fsdecode(value)
    except TypeError:
        raise InvalidInputError(
            f"{what} must be a str, bytes or os.PathLike, not {shown(value)}") from None


def names(value: Any, what: str) -> List[str]:
    """A list of strings from ``None`` (empty), one ``str`` (a list of it: ``list("main")``
    would be its letters) or an iterable of ``str``."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    try:
        items = list(value)
    except TypeError:
        items = None
    if items is None or not all(isinstance(v, str) for v in items):
        raise InvalidInputError(f"{what} must be a string or a list of strings, not {shown(value)}")
    return items


def whole(value: Any, what: str, low: int, high: int, optional: bool = True) -> Optional[int]:
    """``value``, an ``int`` in ``[low, high]`` (or ``None`` when ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not (
            low <= value <= high):
        raise InvalidInputError(
            f"{what} must be a whole number from {low} to {high}, not {shown(value)}")
    return int(value)


def real(value: Any, what: str) -> float:
    """``value`` as a float: what ``float()`` takes (a numpy scalar, a one-element tensor),
    but not a bool or a string, which it would parse or count as 0/1."""
    if not isinstance(value, (bool, str, bytes)):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    raise InvalidInputError(f"{what} must be a number, not {shown(value)}")


def shown(value: Any) -> str:
    """``value`` for a message: its repr (shortened) and its type."""
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{shown} ({type(value).__name__})"
