"""Scoped torch CPU thread counts.

Element-wise torch ops on the CPU go parallel above 32k elements.  Waking the second thread costs
about 50-100 us with ``OMP_WAIT_POLICY=PASSIVE`` (measured on a 2-core machine: a 40k-element
multiply took 9 us on one thread, 101 us on two), so loops of many mid-sized ops run several
times faster on one thread; only arrays of about 500k elements and more gain from two.
"""

from __future__ import annotations

import contextlib
import functools

import torch

__all__ = ["torch_threads", "threads_for", "on_threads", "backward_on_forward_threads", "cpu_cores"]

PARALLEL_ELEMENTS = 500_000  # below this, one thread beats two in a loop of element-wise ops


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` torch CPU threads (``None``: leave the setting alone), then restore
    the count it found.

    torch's count is the process's, not the calling thread's (checked: a Python thread that sets
    it changes what the main thread reads), so blocks running at once in several Python threads
    see each other's setting; only speed depends on it, never an answer.  LiDAR odometry's
    second thread finds the loop's own setting and leaves it."""
    prev = torch.get_num_threads()
    if n is None or n == prev:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def threads_for(elements: int, device: torch.device, requested: int | None = None) -> int | None:
    """The thread count for a CPU loop over arrays of ``elements``: ``requested`` if given, one
    thread below :data:`PARALLEL_ELEMENTS`, otherwise torch's own setting (``None``)."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"num_threads: expected a positive thread count, got {requested}")
        return requested
    if device.type != "cpu":
        return None
    return 1 if elements < PARALLEL_ELEMENTS else None


def on_threads(size):
    """Decorate a function to run on :func:`threads_for`'s count for its work: ``size(*args,
    **kwargs)`` gives ``(elements, device)``, or ``None`` to leave the setting alone without a
    look at it (a call too small for anything to go parallel)."""

    def decorate(function):
        @functools.wraps(function)
        def run(*args, **kwargs):
            work = size(*args, **kwargs)
            if work is None:
                return function(*args, **kwargs)
            with torch_threads(threads_for(*work)):
                return function(*args, **kwargs)

        return run

    return decorate


@functools.lru_cache(maxsize=None)
def cpu_cores() -> int:
    """The cores this process may run on: the threads of a C++ search or estimator (a KD-tree
    query gains from every core at any size, unlike torch's small element-wise ops)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity on this platform
        return max(1, os.cpu_count() or 1)


def backward_on_forward_threads(backward):
    """Decorate an ``autograd.Function``'s ``backward`` to run on ``ctx.threads`` (set by its
    forward; ``None``: torch's setting).  A backward runs wherever the caller's ``backward()``
    does, on torch's count there, not on the one thread a solve picked for a small problem: the
    bunny's GICP backward paid ~0.1 ms of waking a second thread per mid-sized product, and IK's
    backward over 10,000 targets took 56-58 ms instead of 28-39 ms."""

    @functools.wraps(backward)
    def run(ctx, *grads):
        with torch_threads(ctx.threads):
            return backward(ctx, *grads)

    return run
