"""The real-scale input path, measured side by side with its peers on the same data, model,
batch and precision.

1. Input: images/s one decode worker turns CC3M-like JPEG shards into 224 px uint8 tensors, and
   the fraction of each clipbench training step spent waiting for data.
2. Training samples/s: clipbench's ``train_contrastive`` (DataLoader workers decoding the shards)
   against ``open_clip_train``'s own ``main`` (``--dataset-type webdataset`` on the same shards),
   as a ratio. Each side runs twice in a fresh process, with ``steps_short`` and ``steps_long``
   steps; the rate is the difference in samples over the difference in wall time, so start-up
   (model creation, workers, the shard index) cancels out on both sides.
3. Zero-shot evaluation images/s: clipbench's ``image_logits`` against ``clip-benchmark``'s
   ``run_classification`` (a torchvision ``ImageFolder`` with open_clip's preprocessing, as its
   CLI builds) on the same image folder, model and classifier, as a ratio.

The data come from ``clipbench data synthetic`` (written once into ``--data``). Needs the bench
extra: ``pip install -c constraints.txt -e ".[bench]"``.

    python perf/bench_real_scale.py --out results/benchmarks/real_scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_cell import current_commit, emit, provenance  # noqa: E402

MODEL = "clipbench-small-vit-224"


def setup_open_clip():
    from clipbench.model_zoo import CONFIG_DIR
    from clipbench.torchvision_compat import import_open_clip

    open_clip = import_open_clip()
    open_clip.add_model_config(CONFIG_DIR)
    return open_clip


# ----------------------------------------------------------------------------- child processes
def child_clipbench_train(data: Path, steps: int, batch: int, workers: int) -> dict:
    import numpy as np
    import torch

    from clipbench.data.images import LazyImages
    from clipbench.data.pairs import PairSet
    from clipbench.data.sources import open_pairs
    from clipbench.image_pipeline import ImagePipeline
    from clipbench.models import create_model
    from clipbench.train_config import TrainConfig
    from clipbench.training import TrainingData, train_contrastive

    os.environ["CLIPBENCH_WORKERS"] = str(workers)
    torch.manual_seed(0)
    source = open_pairs(data / "cc3m", cache_dir=data / "index-cache")
    rows = np.arange(steps * batch)
    from clipbench.data.images import RowView

    pairs = PairSet(RowView(source, rows), np.full(len(rows), -1), [source.captions[i] for i in rows], source.ids[rows])
    clip = create_model(MODEL)
    pipeline = ImagePipeline.from_model(clip.model)
    training = TrainingData.clean(LazyImages(pairs.images, pipeline.size), pairs)
    config = TrainConfig(epochs=1, batch_size=batch, lr=5e-4, warmup_steps=2, precision="fp32", seed=0)
    start = time.perf_counter()
    stats = train_contrastive(clip, pipeline, training, config, description="clipbench")
    return {"wall_s": time.perf_counter() - start, "steps": stats["steps"], "feed": stats["feed"]}


def child_open_clip_train(data: Path, steps: int, batch: int, workers: int) -> dict:
    setup_open_clip()
    from open_clip_train.main import main as open_clip_main

    shards = sorted((data / "cc3m").glob("*.tar"))
    pattern = str(data / "cc3m" / f"cc3m-train-{{0000..{len(shards) - 1:04d}}}.tar")
    logs = Path(tempfile.mkdtemp(prefix="oc-logs-"))
    args = ["--train-data", pattern, "--dataset-type", "webdataset", "--train-num-samples", str(steps * batch),
            "--batch-size", str(batch), "--epochs", "1", "--workers", str(workers), "--model", MODEL, "--lr", "5e-4",
            "--warmup", "2", "--precision", "fp32", "--device", "cpu", "--logs", str(logs), "--name", "bench",
            "--save-frequency", "0", "--seed", "0", "--log-every-n-steps", "1000", "--report-to", ""]
    start = time.perf_counter()
    open_clip_main(args)
    return {"wall_s": time.perf_counter() - start, "steps": steps}


def run_child(kind: str, data: Path, steps: int, batch: int, workers: int, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, __file__, "--child", kind, "--data", str(data), "--steps", str(steps),
                           "--batch", str(batch), "--workers", str(workers)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{kind} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- measurements
def decode_rate(data: Path, images: int = 384) -> dict:
    """Images/s of one process decoding shard JPEGs to 224 px (no threads)."""
    import numpy as np

    from clipbench.data.sources import open_pairs

    source = open_pairs(data / "cc3m", cache_dir=data / "index-cache")
    rows = np.random.default_rng(0).permutation(len(source))[:images]
    source.load_images(rows[:16], 224)  # warm the file cache
    start = time.perf_counter()
    source.load_images(rows, 224)
    wall = time.perf_counter() - start
    return {"images": images, "wall_s": round(wall, 3), "images_per_s_per_worker": round(images / wall, 1)}


def training_rates(data: Path, steps: tuple[int, int], batch: int, workers: int, threads: int) -> dict:
    out = {}
    for kind in ("clipbench", "open_clip_train"):
        short = run_child(kind, data, steps[0], batch, workers, threads)
        long = run_child(kind, data, steps[1], batch, workers, threads)
        rate = (steps[1] - steps[0]) * batch / (long["wall_s"] - short["wall_s"])
        out[kind] = {"samples_per_s": round(rate, 2), "runs": [short, long]}
    out["ratio_clipbench_over_open_clip_train"] = round(out["clipbench"]["samples_per_s"] / out["open_clip_train"]["samples_per_s"], 3)
    out["data_wait_fraction"] = out["clipbench"]["runs"][1]["feed"]["data_wait_fraction"]
    return out


def evaluation_rates(data: Path, batch: int, workers: int) -> dict:
    import numpy as np
    import torch

    open_clip = setup_open_clip()
    from clip_benchmark.metrics.zeroshot_classification import run_classification
    from torchvision.datasets import ImageFolder

    from clipbench.data.images import LazyImages
    from clipbench.data.sources import open_classes
    from clipbench.evaluation import image_logits
    from clipbench.image_pipeline import ImagePipeline
    from clipbench.models import create_model

    os.environ["CLIPBENCH_WORKERS"] = str(workers)
    torch.manual_seed(0)
    clip = create_model(MODEL)
    pipeline = ImagePipeline.from_model(clip.model)
    folder = data / "imagenet-val"
    source = open_classes(folder, cache_dir=data / "index-cache")
    classifier = torch.nn.functional.normalize(torch.randn(128, 1000), dim=0)  # the same classifier for both
    images = LazyImages(source, pipeline.size)
    ids = torch.as_tensor(source.ids)
    start = time.perf_counter()
    ours = image_logits(clip, pipeline, images, ids, classifier, (None,), batch_size=batch, precision="fp32")[0]
    ours_wall = time.perf_counter() - start
    preprocess = open_clip.image_transform(pipeline.size, is_train=False, mean=pipeline.mean, std=pipeline.std)
    loader = torch.utils.data.DataLoader(ImageFolder(str(folder), transform=preprocess, allow_empty=True), batch_size=batch,
                                         num_workers=workers, shuffle=False)
    start = time.perf_counter()
    theirs, _ = run_classification(clip.model, classifier, loader, "cpu", amp=False)
    theirs_wall = time.perf_counter() - start
    n = len(source)
    agree = float(np.mean(ours.argmax(1) == theirs.numpy().argmax(1)))
    return {"images": n, "clipbench_images_per_s": round(n / ours_wall, 2), "clip_benchmark_images_per_s": round(n / theirs_wall, 2),
            "ratio_clipbench_over_clip_benchmark": round(theirs_wall / ours_wall, 3), "top1_agreement": round(agree, 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "clipbench-bench-data")
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--val-images", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", default="10,40", help="short,long step counts of the training runs")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads of the training process")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        steps = int(args.steps)
        child = {"clipbench": child_clipbench_train, "open_clip_train": child_open_clip_train}[args.child]
        print(json.dumps(child(args.data, steps, args.batch, args.workers)))
        return 0
    commit = current_commit()
    if not (args.data / "cc3m").exists():
        from clipbench.data.synthetic import SyntheticSpec, write_synthetic

        write_synthetic(args.data, SyntheticSpec(pairs=args.pairs, val_images=args.val_images, shard_size=1000))
    short, long = (int(s) for s in args.steps.split(","))
    report = {
        "setting": {"model": MODEL, "image_size": 224, "batch": args.batch, "precision": "fp32", "device": "cpu",
                    "decode_workers": args.workers, "torch_threads": args.threads, "data": "clipbench data synthetic",
                    "pairs": args.pairs, "val_images": args.val_images, "training_steps": [short, long]},
        "decode": decode_rate(args.data),
        "training": training_rates(args.data, (short, long), args.batch, args.workers, args.threads),
        "evaluation": evaluation_rates(args.data, args.batch, args.workers),
        **provenance(commit),
    }
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
