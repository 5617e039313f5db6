"""Result JSON of one cell (docs/design.md, "Results and report"): one file per cell."""

from __future__ import annotations

import datetime
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from . import __version__
from .atomic import write_json

SCHEMA_VERSION = 1
TRIGGER_SPACE = "uint8 at the model's input resolution, after its resize and centre crop, before normalisation"


@lru_cache(maxsize=1)
def git_commit() -> Optional[str]:
    """The commit of the clipbench checkout, or ``None`` outside a git checkout."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def library_versions() -> dict[str, Optional[str]]:
    versions: dict[str, Optional[str]] = {"python": platform.python_version()}
    for name in ("torch", "open_clip_torch", "datasets", "numpy", "safetensors"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def device_info(device: Any) -> dict:
    import torch

    # threads and the CPU's instruction set pick the kernels, and so the float rounding: methods that
    # amplify rounding (RoCLIP's caption matching, SafeCLIP's split) reproduce only on the same ones
    info = {"type": str(device), "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu": _cpu_model()}
    if getattr(device, "type", "") == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
    return info


def build_result(cell, run_key: str, status: str, error: Optional[str], metrics: dict, stages: dict,
                 artifacts: dict, device: Any, scenario, trace: Optional[str] = None) -> dict:
    """Assemble the result record of one cell."""
    attack_cls, defense_cls = cell.attack_cls, cell.defense_cls
    result = {
        "schema_version": SCHEMA_VERSION,
        "clipbench_version": __version__,
        "git_commit": git_commit(),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        "device": device_info(device),
        "cell": {
            "preset": cell.preset.name, "model": cell.preset.model, "attack": cell.request.attack,
            "defense": cell.request.defense, "seed": cell.seed, "name": cell.name,
        },
        "status": status,
        "error": error,
        "run_key": run_key,
        "config": cell.config_dict(),
        "artifacts": artifacts,
        "metrics": metrics,
        "stages": stages,
        "provenance": {
            "attack": getattr(attack_cls, "provenance", "official method"),
            "defense": defense_cls.provenance,
            "defense_source": defense_cls.source,
            "attack_source": attack_cls.source,
        },
        "evaluation": {"trigger_space": TRIGGER_SPACE},
    }
    sweep = cell.sweep_point()
    if sweep is not None:
        result["cell"]["sweep"] = sweep
    if scenario is not None:
        result["evaluation"].update({
            "images": int(len(scenario.evaluation)),
            "target_class": scenario.target_name,
            "classnames": list(scenario.classnames),
            "templates": list(scenario.templates),
        })
        if scenario.sources:  # real-scale data: listed rows vs rows that resolved to readable images
            result["data_sources"] = scenario.sources
    if trace:
        result["traceback"] = trace
    return result


def write_result(path: Path, result: dict) -> None:
    write_json(path, result)
