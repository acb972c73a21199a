"""Peak memory of a call, for the cost columns of the reports (per method, per inner-step count).

``measure_peak_memory(fn, *args, **kwargs)`` runs ``fn`` once and returns its result with a
``PeakMemory``. What is measured depends on where the tensors live:

* ``"cuda"``: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` -- the peak of the
  tensors PyTorch's caching allocator handed out during the call (not memory it merely reserved).
* ``"rss"`` (CPU, Linux): the process's resident-set high-water mark ``VmHWM``, reset before the
  call by writing ``5`` to ``/proc/self/clear_refs`` and read from ``/proc/self/status`` after it.
  Tensor storage is allocated by PyTorch's C++ allocator, which ``tracemalloc`` does not see, so the
  resident set is the number that covers tensors. It is process-wide (other threads count too).
  Memory freed earlier but kept by the C library for reuse would hide the call's allocations (they
  reuse those pages without raising the resident set), so freed memory is first handed back to the
  system (``gc.collect()`` and glibc's ``malloc_trim(0)`` where available). For numbers that do not
  depend on what ran before, measure in a fresh process.
* ``"ru_maxrss"`` (CPU, where the high-water mark cannot be reset): ``resource.getrusage``'s
  lifetime maximum resident set. It only measures this call if the call raised the process's
  high-water mark; otherwise it is an upper bound (``exact`` is False then).

``trace_python=True`` additionally records ``tracemalloc``'s peak of Python-heap allocations (lists,
dicts, Python objects -- not tensor storage); it slows Python code down, so it is off by default.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import resource
import sys
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

T = TypeVar("T")

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class PeakMemory:
    """``peak_bytes`` during the call, ``baseline_bytes`` just before it, and how they were measured."""

    peak_bytes: int
    baseline_bytes: int
    source: str  # "cuda" | "rss" | "ru_maxrss"
    exact: bool = True
    python_peak_bytes: int | None = None

    @property
    def increment_bytes(self) -> int:
        """Memory the call added on top of what was in use before it."""
        return max(0, self.peak_bytes - self.baseline_bytes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "peak_mib": self.peak_bytes / 2**20,
            "increment_mib": self.increment_bytes / 2**20,
            "source": self.source,
            "exact": self.exact,
            "python_peak_mib": None if self.python_peak_bytes is None else self.python_peak_bytes / 2**20,
        }


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_rss_high_water() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _release_freed_memory() -> None:
    """Return memory the process freed but the C library kept to the system (best effort, glibc)."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return
    trim(0)


def _ru_maxrss_bytes() -> int:
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024  # bytes on macOS, KiB on Linux


def measure_peak_memory(
    fn: Callable[..., T],
    *args: Any,
    device: str | torch.device | None = None,
    trace_python: bool = False,
    **kwargs: Any,
) -> tuple[T, PeakMemory]:
    """Run ``fn(*args, **kwargs)`` once; return its result and the peak memory of the call.

    ``device``: where the call's tensors live; a CUDA device measures the CUDA allocator, anything
    else the process's resident set. Default: CUDA if available, else CPU.
    """
    device = torch.device(device) if device is not None else None
    use_cuda = (device.type == "cuda") if device is not None else torch.cuda.is_available()
    if trace_python:
        tracemalloc.start()
    try:
        if use_cuda:
            torch.cuda.synchronize(device)
            baseline = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            result = fn(*args, **kwargs)
            torch.cuda.synchronize(device)
            peak = PeakMemory(torch.cuda.max_memory_allocated(device), baseline, "cuda")
        else:
            peak_info, result = _measure_rss(fn, args, kwargs)
            peak = peak_info
        python_peak = tracemalloc.get_traced_memory()[1] if trace_python else None
    finally:
        if trace_python:
            tracemalloc.stop()
    if python_peak is not None:
        peak = PeakMemory(peak.peak_bytes, peak.baseline_bytes, peak.source, peak.exact, python_peak)
    return result, peak


def _measure_rss(fn: Callable[..., T], args: tuple, kwargs: dict) -> tuple[PeakMemory, T]:
    _release_freed_memory()
    baseline_kib = _status_kib("VmRSS")
    if baseline_kib is not None and _reset_rss_high_water():
        result = fn(*args, **kwargs)
        high_water = _status_kib("VmHWM")
        if high_water is not None:
            return PeakMemory(high_water * 1024, baseline_kib * 1024, "rss"), result
        return PeakMemory(_ru_maxrss_bytes(), baseline_kib * 1024, "ru_maxrss", exact=False), result
    before = _ru_maxrss_bytes()
    baseline = baseline_kib * 1024 if baseline_kib is not None else before
    result = fn(*args, **kwargs)
    after = _ru_maxrss_bytes()
    return PeakMemory(after, baseline, "ru_maxrss", exact=after > before), result
