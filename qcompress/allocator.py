"""Keep freed memory in the process instead of handing it back to the operating system.

glibc's malloc serves large blocks with ``mmap`` and returns them on ``free``, and trims the
top of its heap as soon as little is in use. A training step allocates state-sized tensors
(1 MiB for the QD-LLM circuit at batch 64) dozens of times, so every new one faults its pages
in again: measured here at about 780 page faults and 1.5 ms of a 13.5 ms forward+backward
step, and 1.4 ms of a 4.3 ms forward. Raising both thresholds lets freed blocks be reused.

Measurements of memory (``qcompress.measure.MemorySampler``) hand the kept memory back before
each phase (``release_free_memory``), so what a phase adds does not depend on what ran before.

This is a process-wide setting, so only applications call it (the ``qcompress`` command and
the benchmarks), never a library import. A user who set glibc's own ``MALLOC_*`` variables or
``GLIBC_TUNABLES`` keeps them; elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt() parameters, from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD_BYTES = 64 << 20  # blocks below this come from the heap and are reused
TRIM_THRESHOLD_BYTES = 1 << 30  # the heap keeps up to this much free memory

_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds; True when they were set."""
    if any(name in os.environ for name in _USER_SETTINGS):
        return False
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )


def release_free_memory() -> bool:
    """Hand the heap's free memory back to the operating system (glibc ``malloc_trim``); True
    when it ran. Memory measurements call it before reading their starting level: memory an
    earlier phase freed but the process kept would otherwise be reused unseen, so a phase's
    growth would depend on what ran before it."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (musl and macOS do not)
    except (OSError, AttributeError):
        return None
    return libc
