"""Every kind of cached artifact is verified before use: damage is detected, warned about in one
line, and rebuilt, and the cell's metrics are those of an undamaged run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from clipbench.cells import CellRequest, resolve_cell
from clipbench.matrix import RunnerSettings


def _run(cache: Path, results: Path, cell) -> dict:
    result = RunnerSettings(str(cache), str(results), "cpu", False).cell_runner().run_cell(cell)
    assert result["status"] == "ok", result.get("error")
    return result


def _counts(result: dict) -> dict:
    return {name: (m["successes"], m["total"]) for name, m in result["metrics"].items()}


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


@pytest.fixture(scope="module")
def undamaged(tmp_path_factory, fashion_mnist_dir):
    """A cache with one finished micro cell and its dataset as a real copy (not a link)."""
    cache = tmp_path_factory.mktemp("integrity-cache")
    shutil.copytree(fashion_mnist_dir, cache / "data" / "fashion-mnist")
    cell = resolve_cell(CellRequest(preset="micro", attack="badnet", defense="finetune", seed=3))
    result = _run(cache, tmp_path_factory.mktemp("integrity-results"), cell)
    return cache, cell, result


def _target(cache: Path, result: dict, kind: str) -> Path:
    artifacts = result["artifacts"]
    return {
        "trigger": cache / "poison" / artifacts["poison"] / "trigger.safetensors",
        "manifest": cache / "poison" / artifacts["poison"] / "manifest.json",
        "classifier": cache / "classifier" / artifacts["classifier"] / "classifier.safetensors",
        "checkpoint": cache / "victim" / artifacts["victim"] / "model.safetensors",
        "sidecar": cache / "victim" / artifacts["victim"] / "model.json",
        "meta": cache / "defense" / artifacts["defense"] / "meta.json",
        "dataset": next((cache / "data" / "fashion-mnist" / "train").glob("*.arrow")),
    }[kind]


@pytest.mark.parametrize("kind, damage", [
    ("trigger", _flip), ("manifest", _flip), ("classifier", _flip), ("checkpoint", _flip), ("dataset", _flip),
    ("sidecar", _truncate), ("meta", _flip),
])
def test_damaged_artifact_is_detected_and_rebuilt(kind, damage, undamaged, tmp_path, capsys):
    cache, cell, reference = undamaged
    target = _target(cache, reference, kind)
    damage(target)
    capsys.readouterr()
    rerun = _run(cache, tmp_path / "results", cell)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "damaged" in line]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("clipbench: warning:") and "rebuilding" in warnings[0]
    assert _counts(rerun) == _counts(reference)
    assert rerun["artifacts"] == reference["artifacts"]
    # the rebuilt artifact verifies, and the next run reuses it silently
    _run(cache, tmp_path / "again", cell)
    assert "damaged" not in capsys.readouterr().err


def test_cache_verify_covers_every_kind(undamaged, cli_runner):
    cache, _, result = undamaged
    listing = cli_runner(["cache", "verify", "--cache-dir", cache])
    assert listing.exit_code == 0, listing.output
    verified = int(listing.output.split(" of ")[1].split()[0])
    assert verified >= 7  # clean, poison, reference, victim, defense, classifiers, dataset
    _flip(_target(cache, result, "classifier"))
    _flip(_target(cache, result, "dataset"))
    damaged = cli_runner(["cache", "verify", "--cache-dir", cache])
    assert damaged.exit_code == 1
    assert "removed classifier/" in damaged.output and "removed data/fashion-mnist" in damaged.output


def test_killed_build_leftover_is_removed_when_the_key_is_built(tmp_path):
    from clipbench.cache import ArtifactStore

    store = ArtifactStore(tmp_path / "cache")
    leftover = tmp_path / "cache" / "victim" / ".tmp-abc123-xyz"
    leftover.mkdir(parents=True)
    (leftover / "model.safetensors").write_bytes(b"half written")
    path, meta, built = store.get_or_build("victim", "abc123", lambda folder: (folder / "x.txt").write_text("ok") and {})
    assert built and not leftover.exists()
    assert json.loads((path / "meta.json").read_text())["files"] == {"x.txt": meta["files"]["x.txt"]}


def test_a_failed_stage_is_not_retried_in_the_same_run(tmp_path):
    from clipbench.errors import ClipbenchError
    from clipbench.stages.workspace import StageFailed, Workspace

    calls = []

    def diverging(folder):
        calls.append(1)
        raise ClipbenchError("train poisoned victim: non-finite loss (nan) at step 3")

    ws = Workspace(tmp_path / "cache", device="cpu", run_id="run-1")
    with pytest.raises(ClipbenchError, match="non-finite"):
        ws.artifact("victim", "k1", diverging)
    other_process = Workspace(tmp_path / "cache", device="cpu", run_id="run-1")
    with pytest.raises(StageFailed, match="failed earlier in this run: train poisoned victim"):
        other_process.artifact("victim", "k1", diverging)
    assert len(calls) == 1
    with pytest.raises(ClipbenchError, match="non-finite"):  # a new run tries again
        Workspace(tmp_path / "cache", device="cpu", run_id="run-2").artifact("victim", "k1", diverging)
    assert len(calls) == 2


@pytest.mark.parametrize("mode", ["flock", "soft"])
def test_lock_modes_build_once_and_report_a_held_lock(tmp_path, mode):
    from clipbench.cache import ArtifactStore
    from clipbench.locks import artifact_lock

    store = ArtifactStore(tmp_path / "cache", lock_mode=mode)
    lock = artifact_lock(store.lock_path("clean", "k"), mode)
    with lock:
        import subprocess
        import sys

        probe = ("from clipbench.cache import ArtifactStore; import sys; "
                 f"print(ArtifactStore(sys.argv[1], lock_mode='{mode}').build_in_progress('clean', 'k'))")
        held = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "cache")], capture_output=True, text=True)
        assert held.stdout.strip() == "True", held.stderr
    assert not store.build_in_progress("clean", "k")
    first = store.get_or_build("clean", "k", lambda folder: {"n": 1})
    second = store.get_or_build("clean", "k", lambda folder: {"n": 2})
    assert first[2] and not second[2] and second[1]["n"] == 1
