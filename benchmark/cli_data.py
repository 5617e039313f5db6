"""``clipbench data synthetic``: write paper-size data without the paper's data."""

from __future__ import annotations

import os
from pathlib import Path

import click


@click.group("data")
def data_group() -> None:
    """Data for runs without the real datasets."""


@data_group.command("synthetic")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="folder for cc3m/ (shards) and imagenet-val/")
@click.option("--pairs", type=int, default=50000, show_default=True, help="CC3M-like image-caption pairs")
@click.option("--val-images", type=int, default=1000, show_default=True, help="images of the ImageNet-style validation folder")
@click.option("--classes", type=int, default=1000, show_default=True, help="ImageNet classes drawn from (1-1000)")
@click.option("--target", default="banana", show_default=True, help="class some captions name (BadCLIP's natural captions)")
@click.option("--target-share", type=float, default=0.01, show_default=True, help="fraction of pairs showing and naming the target")
@click.option("--shard-size", type=int, default=5000, show_default=True, help="pairs per tar shard")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the images, captions and class choices")
@click.option("--workers", type=int, default=None, help="processes writing shards  [default: one per CPU core]")
def synthetic_command(out: Path, pairs: int, val_images: int, classes: int, target: str, target_share: float,
                      shard_size: int, seed: int, workers: int | None) -> None:
    """Write CC3M-like webdataset shards (the pixparse/cc3m-wds layout) and an ImageNet-style
    validation folder (WordNet-id folders) of any size, for the paper-abd preset.

    \b
    Example (then run paper-abd on it with a model small enough for the machine):
      clipbench data synthetic --out data/synth --pairs 50000 --val-images 1000
      clipbench run --preset paper-abd --pretrained '' \\
        --set scenario.train_data=data/synth/cc3m --set scenario.eval_data=data/synth/imagenet-val ...
    """
    from .data.synthetic import SyntheticSpec, write_synthetic
    from .errors import ClipbenchError
    from .progress import progress

    spec = SyntheticSpec(pairs=pairs, val_images=val_images, classes=classes, target=target,
                         target_share=target_share, shard_size=shard_size, seed=seed)
    spec.validate()
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ClipbenchError(f"synthetic data: --workers must be >= 1, got {workers}")
    with progress(total=pairs + val_images, desc="synthetic data", unit="image", mininterval=1.0) as bar:
        written = write_synthetic(out, spec, bar.update, workers=workers)
    for name, path in written.items():
        click.echo(f"{name}: {path}")
