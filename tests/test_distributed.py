"""One stage on several ranks: ``torchrun`` with two CPU processes (gloo) trains the same victim
and the same defense as one process, rank 0 alone writes, and a batch that does not split over
the ranks is refused before anything is computed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")


def empty_cache(root: Path, fashion_mnist_dir: Path) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "data" / "fashion-mnist").symlink_to(fashion_mnist_dir, target_is_directory=True)
    return root


def run_args(cache: Path, results: Path) -> list[str]:
    return ["run", "--preset", "micro", "--attack", "badnet", "--defense", "finetune", "--seed", "4", "--device", "cpu",
            "--cache-dir", str(cache), "--results-dir", str(results), "--set", "victim.epochs=2"]


def launch(ranks: int, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CLIPBENCH_WORKERS": "0"}
    command = [TORCHRUN, "--standalone", f"--nproc_per_node={ranks}", "-m", "clipbench.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def weights(cache: Path, stage: str) -> dict:
    from safetensors.torch import load_file

    [folder] = [p for p in (cache / stage).iterdir() if (p / "meta.json").exists()]
    [file] = folder.glob("*.safetensors")
    return load_file(str(file))


@pytest.mark.skipif(not Path(TORCHRUN).exists(), reason="torchrun is not installed")
def test_two_ranks_train_the_stage_one_process_trains(fashion_mnist_dir, tmp_path):
    one, two = empty_cache(tmp_path / "one", fashion_mnist_dir), empty_cache(tmp_path / "two", fashion_mnist_dir)
    plain = subprocess.run([sys.executable, "-m", "clipbench.cli", *run_args(one, tmp_path / "r1")], capture_output=True,
                           text=True, env={**os.environ, "CLIPBENCH_WORKERS": "0"}, timeout=600)
    assert plain.returncode == 0, plain.stderr[-2000:]
    done = launch(2, run_args(two, tmp_path / "r2"))
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert len(list((tmp_path / "r2").glob("*.json"))) == 1 and done.stdout.count("results: ") == 1  # rank 0 writes
    # The victim trains with open_clip's AdamW eps (1e-6): the two runs agree to 1e-4. The defense
    # trains with CleanCLIP's eps (1e-8), under which a gradient entry near zero, whose rounding
    # depends on the order the ranks' sums take, moves its weight by up to one learning rate
    # (micro: 1e-3) per step; the tolerance is that step.
    for stage, tolerance in (("victim", 1e-4), ("defense", 1e-3)):
        a, b = weights(one, stage), weights(two, stage)
        assert a.keys() == b.keys()
        worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
        assert worst < tolerance, f"{stage}: weights differ by {worst}"
    [r1], [r2] = (json.loads(p.read_text()) for p in (tmp_path / "r1").glob("*.json")), \
        (json.loads(p.read_text()) for p in (tmp_path / "r2").glob("*.json"))
    for metric in ("ca_top1", "asr"):
        assert abs(r1["metrics"][metric]["successes"] - r2["metrics"][metric]["successes"]) <= 2


@pytest.mark.skipif(not Path(TORCHRUN).exists(), reason="torchrun is not installed")
def test_a_batch_that_does_not_split_over_the_ranks_is_refused_before_compute(fashion_mnist_dir, tmp_path):
    cache = empty_cache(tmp_path / "c", fashion_mnist_dir)
    done = launch(3, run_args(cache, tmp_path / "r"))
    assert done.returncode != 0
    assert ("clipbench: error: victim batch_size 64 does not split over 3 ranks (each rank takes an equal share of "
            "every batch): use a multiple of 3") in done.stderr
    assert not list(cache.glob("clean/*")) and not (tmp_path / "r").exists()


RESUME_SCRIPT = '''
import sys, copy
import numpy as np, torch
from clipbench.distributed import init_from_env, is_main
from clipbench.data.pairs import PairSet
from clipbench.image_pipeline import ImagePipeline
from clipbench.models import create_model
from clipbench.resume import resumable
from clipbench.train_config import TrainConfig
from clipbench.training import TrainingData, train_contrastive

init_from_env("cpu")
folder, out, stop_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.manual_seed(0)
clip = create_model("clipbench-micro-vit")
n = 32
pairs = PairSet(np.zeros((n, 3, 16, 16), np.uint8), np.arange(n) % 10, [f"a photo of item {i}." for i in range(n)], np.arange(n))
images = torch.randint(0, 256, (n, 3, 16, 16), generator=torch.Generator().manual_seed(1)).to(torch.uint8)
calls = []

class Interrupt(Exception):
    pass

def objective(batch):
    from clipbench.training import clip_objective
    calls.append(1)
    if len(calls) == stop_at:
        raise Interrupt
    return clip_objective(batch)

try:
    with resumable(__import__("pathlib").Path(folder), "test:key", every_steps=1, every_seconds=0):
        train_contrastive(clip, ImagePipeline.from_model(clip.model), TrainingData.clean(images, pairs),
                          TrainConfig(epochs=3, batch_size=8, lr=1e-3, warmup_steps=1, seed=0), objective)
except Interrupt:
    sys.exit(3)
if is_main():
    torch.save(clip.model.state_dict(), out)
'''


@pytest.mark.skipif(not Path(TORCHRUN).exists(), reason="torchrun is not installed")
def test_a_state_saved_by_one_process_resumes_under_two_ranks(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(RESUME_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CLIPBENCH_WORKERS": "0"}
    plain = subprocess.run([sys.executable, str(script), str(tmp_path / "a"), str(tmp_path / "a.pt"), "0"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr[-2000:]
    cut = subprocess.run([sys.executable, str(script), str(tmp_path / "b"), str(tmp_path / "b.pt"), "7"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert cut.returncode == 3 and list((tmp_path / "b").iterdir())  # stopped at step 7 of 12, its state saved
    resumed = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node=2", str(script), str(tmp_path / "b"),
                              str(tmp_path / "b.pt"), "0"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    a, b = torch.load(tmp_path / "a.pt"), torch.load(tmp_path / "b.pt")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4
