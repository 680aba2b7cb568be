"""Give freed heap memory back to the operating system.

The server allocates in bursts (snapshot frames of whole feeds for joining clients, replay frames,
streams that live for seconds) and frees them again. glibc keeps freed memory in its arenas and returns
only the free top of the heap, so resident memory climbs in steps to the highest burst seen and stays
there. With a trim every few seconds (a few milliseconds each) it follows what is in use, down as well as
up, which is what the chaos run's memory check measures. Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


def release_free_heap() -> bool:
    """Return the free pages of every arena to the system; False where the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
