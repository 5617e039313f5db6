"""What the command-line modules share: default folders and the device check."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ClipbenchError

DEFAULT_RESULTS = Path("clipbench-results")


def default_cache_dir() -> Path:
    """``$CLIPBENCH_CACHE``, else ``$XDG_CACHE_HOME/clipbench``, else ``~/.cache/clipbench``."""
    if os.environ.get("CLIPBENCH_CACHE"):
        return Path(os.environ["CLIPBENCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clipbench"


def check_device(device: str) -> None:
    """Reject a device string torch does not know, or CUDA where none is available."""
    if device == "auto":
        return
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ClipbenchError(f"--device {device!r} is not a device; valid: auto, cpu, cuda, cuda:N") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ClipbenchError(f"--device {device}: CUDA is not available on this machine; use cpu or auto")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ClipbenchError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
    elif parsed.type != "cpu":
        raise ClipbenchError(f"--device {device!r}: clipbench runs on cpu or cuda")
