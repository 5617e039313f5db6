"""How long must the ``tiny`` clean model pretrain before its temperature and zero-shot accuracy
stop moving? One pretraining run of the preset's clean model (its data, model and seed), with
the temperature ``exp(logit_scale)``, the mean training loss of the epoch and the zero-shot
clean accuracy on the evaluation split recorded after every epoch, written as JSON.

    python perf/pretrain_convergence.py --epochs 40 --lr 5e-4 --out results/calibration/pretrain_convergence.json \
        [--save-checkpoint DIR] [--cache-dir DIR]

The cosine schedule spans the whole run, so epoch ``e`` of a 40-epoch run is not the end of an
``e``-epoch run; the trajectory says where the curve flattens, and a run of that length is then
the clean model.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate [default: the preset's]")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--save-checkpoint", type=Path, default=None, help="write the final model here")
    args = parser.parse_args()

    from clipbench.atomic import write_json
    from clipbench.cells import CellRequest, resolve_cell
    from clipbench.cli_common import default_cache_dir
    from clipbench.config import to_dict
    from clipbench.evaluation import image_logits, zero_shot_classifier
    from clipbench.image_pipeline import ImagePipeline
    from clipbench.models import create_model, save_checkpoint
    from clipbench.stages import Workspace
    from clipbench.training import TrainingData, train_contrastive

    overrides = {"epochs": str(args.epochs)}
    if args.lr is not None:
        overrides["lr"] = str(args.lr)
    if args.batch_size is not None:
        overrides["batch_size"] = str(args.batch_size)
    cell = resolve_cell(CellRequest(preset=args.preset, attack="badnet", defense="none", overrides={"pretrain": overrides}))
    preset = cell.preset
    ws = Workspace(args.cache_dir or default_cache_dir(), device="cpu")
    scenario = ws.scenario(cell)
    clip = create_model(preset.model, None, seed=preset.pretrain.seed)
    pipeline = ImagePipeline.from_model(clip.model)
    data = TrainingData.clean(ws.images(cell, "pretrain", pipeline), scenario.pretrain)
    evaluation = ws.images(cell, "evaluation", pipeline)
    ids = torch.as_tensor(scenario.evaluation.ids)
    labels = np.asarray(scenario.evaluation.labels)
    trajectory: list[dict] = []
    started = time.perf_counter()

    def record(epoch: int) -> None:
        classifier = zero_shot_classifier(clip, tuple(scenario.classnames), tuple(scenario.templates))
        logits = image_logits(clip, pipeline, evaluation, ids, classifier)[0]
        trajectory.append({"epoch": epoch, "logit_scale": float(clip.model.logit_scale.detach().exp()),
                           "ca_top1": float((logits.argmax(1) == labels).mean()),
                           "wall_s": round(time.perf_counter() - started, 1)})
        print(json.dumps(trajectory[-1]), flush=True)
        clip.model.train()

    def on_epoch_start(epoch: int) -> None:
        if epoch > 0:
            record(epoch)

    stats = train_contrastive(clip, pipeline, data, preset.pretrain, on_epoch_start=on_epoch_start,
                              description="pretrain clean model")
    record(args.epochs)
    if args.save_checkpoint is not None:
        save_checkpoint(clip, args.save_checkpoint, {"stage": "clean"})
    write_json(args.out, {
        "what": "tiny clean model pretraining: temperature and zero-shot CA after each epoch",
        "preset": preset.name, "model": preset.model, "pretrain": to_dict(preset.pretrain),
        "pairs": len(data), "evaluation_images": len(labels), "torch_threads": torch.get_num_threads(),
        "train": stats, "trajectory": trajectory,
    })


if __name__ == "__main__":
    main()
