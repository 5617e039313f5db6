"""Milliseconds per CLIP training step of a clipbench architecture at several ViT patch sizes.

One step is: image and text forward, CLIP loss, backward, AdamW update, on random inputs of the
architecture's resolution (batch 128, context 16). Run it on a quiet machine; it reports the mean
of ``--steps`` steps after ``--warmup`` steps.

    python perf/bench_step.py --model clipbench-tiny-vit --patch-sizes 4,8
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def step_ms(config: dict, batch: int, steps: int, warmup: int) -> float:
    from clipbench.models import _open_clip
    from clipbench.training import clip_loss

    open_clip = _open_clip()
    model = open_clip.model.CLIP(**config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    size = config["vision_cfg"]["image_size"]
    images = torch.randn(batch, 3, size, size)
    tokens = torch.randint(0, config["text_cfg"]["vocab_size"] - 1, (batch, config["text_cfg"]["context_length"]))
    for index in range(warmup + steps):
        if index == warmup:
            start = time.perf_counter()
        loss = clip_loss(model.encode_image(images, normalize=True), model.encode_text(tokens, normalize=True),
                         model.logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return 1000 * (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="clipbench-tiny-vit")
    parser.add_argument("--patch-sizes", default="4,8")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    from clipbench.registry import MODELS

    base = json.loads(MODELS.get(args.model).config_path.read_text())
    report = {"model": args.model, "batch_size": args.batch_size, "threads": torch.get_num_threads(), "ms_per_step": {}}
    for patch in (int(p) for p in args.patch_sizes.split(",")):
        config = json.loads(json.dumps(base))
        config["vision_cfg"]["patch_size"] = patch
        report["ms_per_step"][f"patch {patch}"] = round(step_ms(config, args.batch_size, args.steps, args.warmup), 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
