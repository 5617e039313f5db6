"""ABD Table I (``paper-abd``) on one GPU: each stage's throughput, measured on synthetic
paper-shaped data for a fixed number of steps, and the GPU-hours of the whole table projected
from it.

It writes CC3M-like shards and an ImageNet-style folder (``clipbench data synthetic``), then runs
the nine real cells of Table I (BadNet, Blended, BadCLIP x none, CleanCLIP, ABD; seed 0) through
``clipbench run --preset paper-abd`` with the preset's model (RN50, randomly initialised since
the OpenAI weights need a download), batch sizes, learning rates, triggers and augmentations,
bf16 autocast and channels_last on the GPU, and only the step counts cut:

- victim: ``--victim-steps`` steps of 128 pairs (``poison.count`` keeps the paper's 0.3%);
- BadCLIP's patch: ``--badclip-epochs`` epochs over ``--badclip-images`` images;
- CleanCLIP and ABD: ``--defense-steps`` steps of 64 pairs, ABD's patch ``--craft-steps`` steps;
- evaluation: ``--eval-images`` validation images, clean and triggered.

From the stages' own records (the training loop's wall time and data wait, build times, peak GPU
memory) it reports samples/s per stage and projects Table I at the paper's sizes: 3 victims of
5 epochs x 500,000 pairs, BadCLIP's 50 epochs x 78 batches, 6 defenses of 10 epochs x 100,000
pairs plus ABD's 300 crafting steps, and 12 evaluations (9 cells, 3 clean references) of 50,000
images with a classifier for each of the 10 models. The projection is labelled as such: it
assumes the measured steady rates hold for the whole run.

    python perf/bench_gpu_paper.py --out results/benchmarks/gpu_paper_abd.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ATTACKS = ("badnet", "blended", "badclip")
DEFENSES = ("none", "cleanclip", "abd")
#: Table I at the paper's sizes (ABD, arXiv 2409.15968; the paper-abd preset).
PAPER = {"victim_samples": 5 * 500_000, "defense_samples": 10 * 100_000, "badclip_steps": 50 * (10_000 // 128),
         "craft_steps": 300, "eval_images": 50_000, "victims": 3, "defenses_each": 3, "evaluations": 12, "classifiers": 10}


def run(cmd: list[str], log: Path, timeout: float, env: dict) -> int:
    """Run ``cmd`` with its output appended to ``log``; the return code (124 on timeout)."""
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        try:
            return subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, env=env).returncode
        except subprocess.TimeoutExpired:
            return 124


def loop_rate(stats: dict, batch: int) -> dict:
    """Samples/s of a training loop from its feed clock (the loop's wall time and data wait)."""
    feed = stats.get("feed", {})
    wall = feed.get("wall_s") or 0.0
    return {"steps": stats.get("steps"), "batch": batch, "loop_wall_s": wall,
            "samples_per_s": round(stats["steps"] * batch / wall, 1) if wall else None,
            "data_wait_fraction": feed.get("data_wait_fraction")}


def collect(cache: Path, results: Path, sizes: dict) -> dict:
    """Per-stage measurements from the results and the artifacts' metadata."""
    from clipbench.cache import read_meta

    def meta(stage: str, key: str) -> dict:
        return read_meta(cache / stage / key) or {}

    out: dict = {"cells": {}, "victims": {}, "defenses": {}, "poison": {}, "evaluations": {}, "references": {}, "classifiers": {}}
    for path in sorted(results.glob("*.json")):
        result = json.loads(path.read_text())
        cell = result["cell"]
        name = f"{cell['attack']}/{cell['defense']}"
        out["cells"][name] = {"status": result["status"], "error": (result.get("error") or "")[:300],
                              "metrics": {k: v["value"] for k, v in result.get("metrics", {}).items()}}
        if result["status"] != "ok":
            continue
        artifacts, stages = result["artifacts"], result["stages"]
        victim = meta("victim", artifacts["victim"])
        if victim:
            out["victims"][cell["attack"]] = {**loop_rate(victim["train"], sizes["victim_batch"]),
                                              "build_wall_s": victim["build_stats"]["wall_s"],
                                              "peak_gpu_mib": victim["build_stats"].get("peak_gpu_mib")}
        poison = meta("poison", artifacts["poison"])
        manifest = cache / "poison" / artifacts["poison"] / "manifest.json"
        captions = json.loads(manifest.read_text()).get("captions", []) if manifest.exists() else []
        out["poison"][cell["attack"]] = {"build_wall_s": poison.get("build_stats", {}).get("wall_s"),
                                         "peak_gpu_mib": poison.get("build_stats", {}).get("peak_gpu_mib"),
                                         "poisoned_pairs": len(captions), "captions_first": captions[:4],
                                         "distinct_captions": len(set(captions))}
        if cell["defense"] != "none":
            defense = meta("defense", artifacts["defense"])
            extras = defense.get("extras", {})
            train = (extras.get("training") or [{}])[-1]
            out["defenses"][name] = {**loop_rate(train, sizes["defense_batch"]), "build_wall_s": defense["build_stats"]["wall_s"],
                                     "peak_gpu_mib": defense["build_stats"].get("peak_gpu_mib"), "craft": extras.get("abd_craft")}
        classifier = meta("classifier", artifacts["classifier"])
        out["classifiers"][artifacts["classifier"]] = classifier.get("build_stats", {}).get("wall_s")
        evaluation = stages["evaluation"]
        out["evaluations"][name] = {"wall_s": evaluation["wall_s"], "peak_gpu_mib": evaluation.get("peak_gpu_mib")}
        reference = stages.get("reference", {})
        if not reference.get("cached", True):
            out["references"][artifacts["reference"]] = reference["build"]["wall_s"]
    return out


def mean(values) -> float | None:
    values = [v for v in values if v]
    return sum(values) / len(values) if values else None


def project(measured: dict, sizes: dict) -> dict:
    """GPU-hours of Table I at the paper's sizes from the measured rates (a projection)."""
    victim_rate = mean(v["samples_per_s"] for v in measured["victims"].values())
    rates = {d: mean(v["samples_per_s"] for k, v in measured["defenses"].items() if k.endswith("/" + d)) for d in ("cleanclip", "abd")}
    crafts = [v["craft"] for k, v in measured["defenses"].items() if k.endswith("/abd") and v.get("craft")]
    craft_step_s = mean(c["wall_s"] / c["steps"] for c in crafts if c["steps"])
    classifier_s = mean(measured["classifiers"].values()) or 0.0
    # every classifier was built inside an evaluation or a reference: what is left is scoring images
    evaluations = list(measured["evaluations"].values())
    scoring_s = (sum(v["wall_s"] for v in evaluations) + sum(measured["references"].values())
                 - sum(v for v in measured["classifiers"].values() if v)
                 - (classifier_s if measured["references"] else 0.0))  # the clean model's, built by the first reference
    scored = 2 * sizes["eval_images"] * (len(evaluations) + len(measured["references"]))  # clean and triggered passes
    eval_rate = scored / scoring_s if scoring_s > 0 else None
    # the whole poison stage over its steps: its set-up (loading, embedding the target images) is
    # counted in, so this rate, and the projection from it, is an upper bound
    badclip = measured["poison"].get("badclip", {}).get("build_wall_s")
    badclip_step_s = badclip / sizes["badclip_steps"] if badclip and sizes["badclip_steps"] else None
    seconds = {
        "victims": PAPER["victims"] * PAPER["victim_samples"] / victim_rate if victim_rate else None,
        "badclip_patch": PAPER["badclip_steps"] * badclip_step_s if badclip_step_s else None,
        "cleanclip": PAPER["defenses_each"] * PAPER["defense_samples"] / rates["cleanclip"] if rates["cleanclip"] else None,
        "abd": (PAPER["defenses_each"] * (PAPER["defense_samples"] / rates["abd"] + PAPER["craft_steps"] * (craft_step_s or 0))
                if rates["abd"] else None),
        "evaluation": (PAPER["evaluations"] * 2 * PAPER["eval_images"] / eval_rate + PAPER["classifiers"] * classifier_s
                       if eval_rate else None),
    }
    known = [s for s in seconds.values() if s is not None]
    return {"label": "projected from measured throughput, not measured end to end", "paper_sizes": PAPER,
            "rates": {"victim_samples_per_s": victim_rate, "cleanclip_samples_per_s": rates["cleanclip"],
                      "abd_samples_per_s": rates["abd"], "abd_craft_s_per_step": craft_step_s,
                      "badclip_patch_s_per_step": badclip_step_s, "evaluation_images_per_s": eval_rate,
                      "classifier_build_s": classifier_s},
            "gpu_hours": {k: round(v / 3600, 2) if v is not None else None for k, v in seconds.items()},
            "gpu_hours_total": round(sum(known) / 3600, 2) if len(known) == len(seconds) else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/clipbench-gpu-bench"), help="data, cache and results")
    parser.add_argument("--model", default="RN50")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--victim-steps", type=int, default=150)
    parser.add_argument("--defense-steps", type=int, default=100)
    parser.add_argument("--badclip-epochs", type=int, default=2)
    parser.add_argument("--badclip-images", type=int, default=2560)
    parser.add_argument("--craft-steps", type=int, default=50)
    parser.add_argument("--eval-images", type=int, default=5000)
    parser.add_argument("--victim-batch", type=int, default=128, help="the preset's (paper-abd: 128)")
    parser.add_argument("--defense-batch", type=int, default=64, help="the preset's (paper-abd: 64)")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2), help="decode workers")
    parser.add_argument("--timeout-s", type=float, default=420.0, help="for the cells; what finished is still reported")
    parser.add_argument("--commit", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import torch

    work, log = args.work, args.work / "log.txt"
    for used in (work / "cache", work / "results"):  # cached stages would time nothing; old results would be read
        if used.exists() and any(used.iterdir()):
            raise SystemExit(f"{used} is not empty; give a fresh --work (the synthetic data under {work / 'data'} may stay)")
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CLIPBENCH_WORKERS": str(args.workers), "PYTHONUNBUFFERED": "1"}
    victim_pairs, defense_pairs = args.victim_steps * args.victim_batch, args.defense_steps * args.defense_batch
    clipbench = [sys.executable, "-m", "clipbench.cli"]
    started = time.perf_counter()
    if not (work / "data" / "cc3m").exists():
        code = run(clipbench + ["data", "synthetic", "--out", str(work / "data"), "--pairs", str(victim_pairs + defense_pairs + 64),
                                "--val-images", str(args.eval_images), "--shard-size", "1000"], log, 600, env)
        if code != 0:
            raise SystemExit(f"writing the synthetic data failed (exit {code}); see {log}")
    data_s = time.perf_counter() - started
    sets = {"scenario.train_data": work / "data" / "cc3m", "scenario.eval_data": work / "data" / "imagenet-val",
            "scenario.victim_size": victim_pairs, "scenario.defense_size": defense_pairs, "scenario.eval_size": args.eval_images,
            "poison.count": max(1, round(victim_pairs * 1500 / 500_000)), "victim.epochs": 1,
            "victim.batch_size": args.victim_batch, "cleanclip.epochs": 1, "cleanclip.batch_size": args.defense_batch,
            "abd.epochs": 1, "abd.batch_size": args.defense_batch, "abd.craft_steps": args.craft_steps,
            "badclip.epochs": args.badclip_epochs, "badclip.max_images": args.badclip_images}
    cmd = clipbench + ["run", "--preset", "paper-abd", "--model", args.model, "--pretrained", "", "--attack", ",".join(ATTACKS),
                       "--defense", ",".join(DEFENSES), "--seeds", "0", "--device", args.device,
                       "--cache-dir", str(work / "cache"), "--results-dir", str(work / "results")]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    started = time.perf_counter()
    code = run(cmd, log, args.timeout_s, env)
    cells_s = time.perf_counter() - started
    sizes = {"victim_batch": args.victim_batch, "defense_batch": args.defense_batch, "eval_images": args.eval_images,
             "badclip_steps": args.badclip_epochs * max(1, min(args.badclip_images, victim_pairs) // 128)}
    measured = collect(work / "cache", work / "results", sizes)
    device = {"type": args.device}
    if args.device.startswith("cuda") and torch.cuda.is_available():
        device.update(name=torch.cuda.get_device_name(), memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    gpu = args.device.startswith("cuda")
    report = {
        "setting": {"preset": "paper-abd", "model": args.model, "pretrained": "random init",
                    "precision": ("bf16 autocast in training and evaluation; BadCLIP's patch search and ABD's crafting in fp32"
                                  if gpu else "fp32"),
                    "memory_format": "channels_last" if gpu else "contiguous",
                    "decode_workers": args.workers, "victim_pairs": victim_pairs, "defense_pairs": defense_pairs, **sizes,
                    "craft_steps": args.craft_steps, "sets": {k: str(v) for k, v in sets.items()}},
        "device": device, "cpus": os.cpu_count(), "torch": torch.__version__, "git_commit": args.commit,
        "wall_s": {"synthetic_data": round(data_s, 1), "cells": round(cells_s, 1)}, "run_exit_code": code,
        "measured": measured, "projection_table1": project(measured, sizes),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
