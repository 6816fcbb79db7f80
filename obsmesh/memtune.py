"""Keep freed heap memory for reuse in the mesh's long-running processes.

A history query allocates column-sized temporaries (a day of 1 Hz samples is
about 700 kB a column) and frees them a millisecond later. With glibc's
defaults such a block is mmap'd, or freed at the top of the heap and trimmed
back to the kernel, so the next query page-faults all of it in again; on the
virtual machines the mesh runs on that costs 2-3 µs a page, and it was 80 %
of a `get_data` call (1.1 ms of copying that takes 0.07 ms in warm memory).

`keep_freed_memory` raises the mmap threshold and the trim threshold so those
blocks come from the heap and stay there. The price is bounded: at most
`trim_bytes` of free memory kept at the top of the heap per process. Other C
libraries (musl) ignore the call, which is only a lost optimisation.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_THRESHOLD = -3

MMAP_BYTES = 32 << 20  # glibc's ceiling for the mmap threshold on 64-bit
TRIM_BYTES = 64 << 20


def keep_freed_memory(mmap_bytes: int = MMAP_BYTES, trim_bytes: int = TRIM_BYTES) -> bool:
    """Tune malloc for this process; True when the C library accepted both settings."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, int(mmap_bytes))) and bool(
        mallopt(M_TRIM_THRESHOLD, int(trim_bytes))
    )
