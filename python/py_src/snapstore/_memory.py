"""Returning freed memory to the OS.

glibc keeps freed heap memory for reuse, so a closed handle's caches (a copy of the model)
would stay in the process's RSS; ``malloc_trim(0)`` hands the free pages back.
"""

from __future__ import annotations

import ctypes
import platform
import sys
from typing import Any, Optional

_trim: Optional[Any] = None
_looked_up = False


def _malloc_trim() -> Optional[Any]:
    global _trim, _looked_up
    if not _looked_up:
        _looked_up = True
        try:
            if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
                _trim = ctypes.CDLL(None).malloc_trim
                _trim.argtypes = [ctypes.c_size_t]
                _trim.restype = ctypes.c_int
        except Exception:  # musl, a static build: nothing to trim with
            _trim = None
    return _trim


def release_free_memory() -> None:
    """Gives the heap's free memory back to the OS where glibc allows; never fails."""
    try:
        trim = _malloc_trim()
        if trim is not None:
            trim(0)
    except Exception:
        pass
