"""glibc's allocator, set for torch's temporaries on the CPU.

By default glibc serves blocks over 128 KiB from fresh ``mmap`` pages, and hands the heap's free
top back to the system beyond twice that.  A loop of torch ops on arrays of a megabyte (a LiDAR
scan of 40,000 points) then faults every page of every temporary in again: on KITTI odometry
the scan's downsampling took 3.7 ms instead of 2.6 ms, and a scan 15.3-16.1 ms instead of
14.0-14.2 ms (three alternating processes each, through ``GLIBC_TUNABLES``).
Serving blocks up to 32 MiB from the heap, and trimming it only beyond 64 MiB free, keeps those
pages.  The price is up to 64 MiB of freed memory the process keeps.

:func:`tune` is called when :mod:`robojac` is imported.  It does nothing off glibc, where the
user has set glibc's malloc tunables (``GLIBC_TUNABLES``, ``MALLOC_*_``), or where
``ROBOJAC_MALLOC=system`` asks it not to.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["tune"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20


def tune() -> bool:
    """Set glibc's mmap and trim thresholds (see the module); whether they were set."""
    env = os.environ
    if (env.get("ROBOJAC_MALLOC") == "system" or not sys.platform.startswith("linux")
            or "glibc.malloc" in env.get("GLIBC_TUNABLES", "")
            or any(k in env for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"))):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    # both or neither: a fixed trim threshold alone stops glibc raising its mmap threshold
    # (the KITTI scan then took 25.6 ms), and a fixed mmap threshold alone fixes the trim at 128 KiB
    if not mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD):
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
