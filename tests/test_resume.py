"""Long stages resume: an interrupted training run continues from its saved state to the weights
of an uninterrupted run; completed phases are not retrained; a state from another config is
ignored; and a ``kill -9`` in the middle of a victim's training, rerun, gives the same victim."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from clipbench.data.pairs import PairSet
from clipbench.image_pipeline import ImagePipeline
from clipbench.models import create_model
from clipbench.resume import parse_every, resumable
from clipbench.train_config import TrainConfig
from clipbench.training import TrainingData, clip_loss, train_contrastive

N = 24


@pytest.fixture(scope="module")
def start():
    torch.manual_seed(0)
    clip = create_model("clipbench-micro-vit")
    pairs = PairSet(np.zeros((N, 3, 16, 16), np.uint8), np.arange(N) % 10, [f"a photo of item {i}." for i in range(N)], np.arange(N))
    images = torch.randint(0, 256, (N, 3, 16, 16), generator=torch.Generator().manual_seed(1)).to(torch.uint8)
    return clip, TrainingData.clean(images, pairs)


class Interrupt(Exception):
    pass


def noisy_objective(generator: torch.Generator, stop_at: int | None = None, calls: list | None = None):
    """CLIP loss on images with noise from ``generator`` (a stream the resume must restore), and
    the global RNG drawn too; raises :class:`Interrupt` on call ``stop_at``."""
    calls = calls if calls is not None else []

    def objective(batch):
        calls.append(1)
        if stop_at is not None and len(calls) == stop_at:
            raise Interrupt
        noise = torch.randint(0, 3, batch.images.shape, generator=generator) + torch.randint(0, 2, batch.images.shape)
        images = (batch.images.int() + noise).clamp(0, 255).to(torch.uint8)
        return clip_loss(batch.encode_images(images), batch.encode_texts(), batch.logit_scale)

    return objective


def train_phases(start, folder: Path, phases: int = 1, stop_at: int | None = None, calls: list | None = None,
                 lr: float = 1e-3, every: int = 1) -> dict:
    clip, data = copy.deepcopy(start[0]), start[1]
    pipeline = ImagePipeline.from_model(clip.model)
    torch.manual_seed(5)
    generator = torch.Generator().manual_seed(3)
    objective = noisy_objective(generator, stop_at, calls)
    stats = []
    with resumable(folder, "test:key", every_steps=every, every_seconds=0):
        for phase in range(phases):
            config = TrainConfig(epochs=3, batch_size=8, lr=lr, warmup_steps=1, seed=phase)
            stats.append(train_contrastive(clip, pipeline, data, config, objective, description=f"phase {phase}",
                                           streams={"noise": generator}))
    return {"weights": clip.model.state_dict(), "stats": stats}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_an_interrupted_phase_resumes_to_the_uninterrupted_weights(start, tmp_path):
    reference = train_phases(start, tmp_path / "reference")
    with pytest.raises(Interrupt):
        train_phases(start, tmp_path / "run", stop_at=6)
    resumed = train_phases(start, tmp_path / "run")
    assert resumed["stats"][0]["resumed_at_step"] == 5
    assert same_weights(resumed["weights"], reference["weights"])
    assert not same_weights(resumed["weights"], start[0].model.state_dict())


def test_completed_phases_are_loaded_not_retrained(start, tmp_path):
    reference = train_phases(start, tmp_path / "reference", phases=2)
    with pytest.raises(Interrupt):
        train_phases(start, tmp_path / "run", phases=2, stop_at=9 + 4)  # phase 0 has 9 steps
    calls: list = []
    resumed = train_phases(start, tmp_path / "run", phases=2, calls=calls)
    assert len(calls) == 9 - 3  # phase 1 continues after its 3 saved steps; phase 0 is not retrained
    assert same_weights(resumed["weights"], reference["weights"])


def test_a_state_from_another_config_is_ignored(start, tmp_path, capsys):
    with pytest.raises(Interrupt):
        train_phases(start, tmp_path / "run", stop_at=6, lr=5e-3)
    resumed = train_phases(start, tmp_path / "run")
    assert "resumed_at_step" not in resumed["stats"][0]
    assert "from another config or code version" in capsys.readouterr().err
    assert same_weights(resumed["weights"], train_phases(start, tmp_path / "reference")["weights"])


def test_a_truncated_state_is_ignored(start, tmp_path, capsys):
    with pytest.raises(Interrupt):
        train_phases(start, tmp_path / "run", stop_at=6)
    state = tmp_path / "run" / "phase-0000.pt"
    state.write_bytes(state.read_bytes()[:100])
    resumed = train_phases(start, tmp_path / "run")
    assert "resumed_at_step" not in resumed["stats"][0] and "unreadable" in capsys.readouterr().err


def test_save_every_parses_steps_and_times():
    assert parse_every("500") == (500, 0.0) and parse_every("10min") == (0, 600.0) and parse_every("30s") == (0, 30.0)
    from clipbench.errors import ClipbenchError

    with pytest.raises(ClipbenchError, match="--save-every"):
        parse_every("often")


def _victim_weights(cache: Path):
    from safetensors.torch import load_file

    folders = [p for p in (cache / "victim").iterdir() if not p.name.startswith(".")]
    assert len(folders) == 1
    return load_file(str(folders[0] / "model.safetensors")), json.loads((folders[0] / "meta.json").read_text())


def test_kill_9_in_the_middle_of_a_victim_then_rerun_gives_the_same_victim(tmp_path, fashion_mnist_dir):
    caches = {}
    for name in ("killed", "whole"):
        caches[name] = tmp_path / name
        (caches[name] / "data").mkdir(parents=True)
        (caches[name] / "data" / "fashion-mnist").symlink_to(fashion_mnist_dir, target_is_directory=True)

    def command(cache: Path) -> list[str]:
        return [sys.executable, "-m", "clipbench.cli", "run", "--preset", "micro", "--attack", "badnet", "--defense", "none",
                "--set", "victim.epochs=24", "--save-every", "6", "--cache-dir", str(cache), "--results-dir", str(cache / "results"),
                "--device", "cpu"]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command(caches["killed"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                               start_new_session=True)
    deadline = time.monotonic() + 240
    state = None
    while time.monotonic() < deadline and process.poll() is None:
        found = list((caches["killed"] / "victim").glob(".resume-*/phase-0000.pt")) if (caches["killed"] / "victim").exists() else []
        if found:
            state = found[0]
            time.sleep(0.5)
            break
        time.sleep(0.1)
    assert state is not None, "the victim never saved a resume state"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not list((caches["killed"] / "victim").glob("[!.]*")), "the killed victim must not look complete"
    for cache in caches.values():
        done = subprocess.run(command(cache), capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    killed, killed_meta = _victim_weights(caches["killed"])
    whole, _ = _victim_weights(caches["whole"])
    assert killed_meta["train"]["resumed_at_step"] > 0
    assert same_weights(killed, whole)
    assert not list((caches["killed"] / "victim").glob(".resume-*")), "the resume state is removed once the victim is complete"
