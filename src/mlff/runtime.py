"""Process settings that make CPU inference fast: the allocator and the thread count.

PyTorch on the CPU allocates every intermediate tensor anew. glibc serves blocks larger
than its mmap threshold (at most 32 MiB) with fresh ``mmap`` pages and unmaps them when
freed, so each large intermediate of a big structure pays a page fault per 4 KiB on first
touch: for 2048 Cu atoms that is about 40% of a MACE or NequIP step.
:func:`keep_freed_memory` tells glibc to serve all blocks from its heap and keep freed
memory for reuse instead; peak memory stays the same, but the process keeps its peak
until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_configured = False


def keep_freed_memory() -> bool:
    """Make glibc reuse freed memory instead of returning it to the OS (Linux only).

    Equivalent to starting the process with ``MALLOC_MMAP_MAX_=0`` and a huge
    ``MALLOC_TRIM_THRESHOLD_``. Idempotent; does nothing (returns False) on other
    platforms or C libraries, or when ``MLFF_KEEP_FREED_MEMORY=0``.

    Returns:
        Whether the setting is in effect.
    """
    global _configured
    if _configured:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("MLFF_KEEP_FREED_MEMORY") == "0":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # a trim threshold of -1 never gives the top of the heap back (glibc mallopt(3))
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, -1) == 1
    _configured = ok
    return ok


def available_memory(device) -> int:
    """Bytes that can still be allocated on ``device``: free GPU memory, or on the CPU the
    kernel's MemAvailable (Linux; else a conservative 4 GiB)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30
