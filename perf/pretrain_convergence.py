"""How long must the ``tiny`` clean model pretrain before its temperature and zero-shot accuracy
stop moving? One pretraining run of the preset's clean model (its data, model and seed), with
the temperature ``exp(logit_scale)``, the mean training loss of the epoch and the zero-shot
clean accuracy on the evaluation split recorded after every epoch, written as JSON.

    python perf/pretrain_convergence.py --epochs 40 --out results/calibration/pretrain_convergence.json \
        [--lr 5e-4] [--set scenario.captions=attributes] [--save-checkpoint DIR] [--ship NAME] [--cache-dir DIR]

``--ship NAME`` writes the final model into ``clipbench/weights`` as ``NAME.safetensors`` with its
manifest (:mod:`clipbench.shipped`): the ``clean`` stage then installs it for every cell whose
clean-model key is this run's, instead of pretraining.

The cosine schedule spans the whole run, so epoch ``e`` of a 40-epoch run is not the end of an
``e``-epoch run; the trajectory says where the curve flattens, and a run of that length is then
the clean model.
"""

from __future__ import annotations

import argparse
import json
import sys
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
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a config override as in 'clipbench run --set' (repeatable)")
    parser.add_argument("--save-checkpoint", type=Path, default=None, help="write the final model here")
    parser.add_argument("--ship", default=None, metavar="NAME", help="ship the final model as clipbench/weights/NAME")
    args = parser.parse_args()

    from clipbench.atomic import write_json
    from clipbench.cells import CellRequest, resolve_cell
    from clipbench.cli_common import default_cache_dir
    from clipbench.config import parse_set_options, to_dict
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
    sets = parse_set_options(args.sets)
    sets["pretrain"] = {**sets.get("pretrain", {}), **overrides}
    cell = resolve_cell(CellRequest(preset=args.preset, attack="badnet", defense="none", overrides=sets))
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

    def write(complete: bool, train: dict | None = None) -> None:
        write_json(args.out, {
            "what": "tiny clean model pretraining: temperature and zero-shot CA after each epoch",
            "preset": preset.name, "model": preset.model, "pretrain": to_dict(preset.pretrain),
            "scenario": to_dict(preset.scenario), "overrides": sets, "complete": complete,
            "pairs": len(data), "evaluation_images": len(labels), "torch_threads": torch.get_num_threads(),
            "train": train or {}, "trajectory": trajectory,
        })

    def record(epoch: int) -> None:
        classifier = zero_shot_classifier(clip, tuple(scenario.classnames), tuple(scenario.templates))
        logits = image_logits(clip, pipeline, evaluation, ids, classifier)[0]
        trajectory.append({"epoch": epoch, "logit_scale": float(clip.model.logit_scale.detach().exp()),
                           "ca_top1": float((logits.argmax(1) == labels).mean()),
                           "wall_s": round(time.perf_counter() - started, 1)})
        print(json.dumps(trajectory[-1]), flush=True)
        write(complete=False)
        clip.model.train()

    def on_epoch_start(epoch: int) -> None:
        if epoch > 0:
            record(epoch)

    stats = train_contrastive(clip, pipeline, data, preset.pretrain, on_epoch_start=on_epoch_start,
                              description="pretrain clean model")
    record(args.epochs)
    if args.save_checkpoint is not None or args.ship:
        folder = args.save_checkpoint or args.out.with_suffix(".checkpoint")
        save_checkpoint(clip, folder, {"stage": "clean"})
    if args.ship:
        from clipbench.compact_weights import decay_factors
        from clipbench.plan import plan_cell
        from clipbench.shipped import ship
        from clipbench.training import schedule_multipliers

        command = "python perf/pretrain_convergence.py " + " ".join(sys.argv[1:])
        config = preset.pretrain
        factors = decay_factors(schedule_multipliers(config, len(data)), config.lr, config.weight_decay)
        shipped = ship(folder, args.ship, plan_cell(cell)["clean"].key, command, trajectory[-1], config.seed, factors)
        print(f"shipped {shipped.weights} (sha256 {shipped.sha256}) for clean key {shipped.clean_key}")
    write(complete=True, train=stats)


if __name__ == "__main__":
    main()
