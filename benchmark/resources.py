"""Wall time and peak resident memory of a stage."""

from __future__ import annotations

import resource
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux ``clear_refs`` value 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (``VmHWM``; ``ru_maxrss`` as a fallback)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cuda_in_use() -> bool:
    import sys

    torch = sys.modules.get("torch")  # never imports torch (or starts CUDA) for a stage that did not
    return torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized()


@contextmanager
def measure() -> Iterator[dict]:
    """Yield a dict filled on exit with ``wall_s`` and ``peak_rss_mib`` of the block, and
    ``peak_gpu_mib`` (torch's peak allocated CUDA memory during the block) whenever the process
    has started CUDA by the block's end (0 for a block that allocated nothing on the GPU). A
    nested block resets the counter, so an enclosing block reports the peak since the inner one
    began."""
    stats: dict = {}
    resettable = _reset_peak_rss()
    if _cuda_in_use():
        import torch

        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        yield stats
    finally:
        stats["wall_s"] = round(time.perf_counter() - start, 3)
        stats["peak_rss_mib"] = round(peak_rss_mib(), 1)
        stats["peak_rss_scope"] = "stage" if resettable else "process"
        if _cuda_in_use():
            import torch

            stats["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
