"""``clipbench checkpoint``: import the papers' training checkpoints and export ours in their format.

Registered on the main command line with ``cli.add_command(checkpoint_group)``. Heavy modules are
imported inside the commands so that ``clipbench --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group("checkpoint")
def checkpoint_group() -> None:
    """Convert checkpoints between clipbench and the papers' code (CleanCLIP, CyCLIP, ...)."""


@checkpoint_group.command("import")
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--arch", required=True, help="architecture the weights belong to, e.g. RN50 or ViT-B-32")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="clipbench checkpoint folder to write (must not exist or be empty)")
@click.option("--allow-pickle", is_flag=True,
              help="read a .pt/.pth pickle (with torch.load weights_only=True); only for files you trust")
def import_command(src: Path, arch: str, out: Path, allow_pickle: bool) -> None:
    """Import SRC as a clipbench checkpoint folder.

    SRC is a torch.save checkpoint of the papers' code (keys 'module.' + OpenAI CLIP names, under
    'state_dict' or bare) or a safetensors file with OpenAI CLIP key names.

    \b
    Example:
      clipbench checkpoint import cleanclip_epoch_10.pt --arch RN50 --out ckpt/cleanclip --allow-pickle
      clipbench run --preset paper-abd --pretrained ckpt/cleanclip ...
    """
    from .checkpoints import import_checkpoint

    clip = import_checkpoint(src, arch, out, allow_pickle=allow_pickle)
    click.echo(f"imported {src} as {arch} into {out} (sha256 {clip.weights_sha256})")


@checkpoint_group.command("export")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="file to write (must not exist)")
@click.option("--format", "fmt", type=click.Choice(["openai", "safetensors"]), default="openai", show_default=True,
              help="openai: torch.save({'state_dict': {'module.'+key: ...}}) as the papers' code saves; "
                   "safetensors: OpenAI key names without 'module.'")
def export_command(folder: Path, out: Path, fmt: str) -> None:
    """Export FOLDER to a file the papers' code loads.

    \b
    Example:
      clipbench checkpoint export ~/.cache/clipbench/victim/<key> --out victim.pt
    """
    from .checkpoints import export_checkpoint
    from .digests import file_sha256

    written = export_checkpoint(folder, out, fmt=fmt)
    click.echo(f"exported {folder} as {fmt} to {written} (sha256 {file_sha256(written)})")
