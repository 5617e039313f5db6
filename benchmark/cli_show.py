"""``clipbench show``: pictures of what a method does."""

from __future__ import annotations

from pathlib import Path

import click

from .cli_common import check_device, default_cache_dir
from .errors import ClipbenchError


@click.group("show")
def show_group() -> None:
    """Show what a method does (pictures for people)."""


@show_group.command("attack")
@click.argument("name")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="PNG file to write")
@click.option("--preset", default="tiny", show_default=True, help="experiment preset (see 'clipbench list presets')")
@click.option("--model", default=None, help="model architecture (default: the preset's)")
@click.option("--seed", default=0, show_default=True, type=int, help="root seed (the trigger's sub-seed comes from it)")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE", help="override a config value (repeatable)")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="artifact cache [default: ~/.cache/clipbench]")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N")
def show_attack(name, out, preset, model, seed, sets, cache_dir, device) -> None:
    """Write a gallery of clean and triggered evaluation images of attack NAME to --out.

    The trigger is the one the cell's poison stage builds (taken from the cache when present);
    BadCLIP's patch needs the clean model, which is pretrained first if it is not cached.

    \b
    Example:
      clipbench show attack wanet --out wanet.png
    """
    from .cells import CellRequest, resolve_cells
    from .config import parse_set_options

    check_device(device)
    if out.exists() and out.is_dir():
        raise ClipbenchError(f"--out {out} is a directory; give a .png file name")
    if out.suffix.lower() != ".png":
        raise ClipbenchError(f"--out {out}: the gallery is written as PNG; use a .png file name")
    (cell,) = resolve_cells([CellRequest(preset=preset, attack=name, defense="none", seed=seed, model=model,
                                         overrides=parse_set_options(sets))])
    from .cache import ensure_writable

    ensure_writable(out.parent if str(out.parent) else Path("."), "output directory")
    import torch

    from .gallery import one_per_class, write_gallery
    from .stages import Workspace
    from .stages.poison import ready_attack

    ws = Workspace(cache_dir or default_cache_dir(), device=device)
    attack, pipeline = ready_attack(ws, cell)
    scenario = ws.scenario(cell)
    rows = one_per_class(scenario.evaluation.labels, len(scenario.classnames))
    images = ws.images(cell, "evaluation", pipeline)[rows]
    ids = torch.as_tensor(scenario.evaluation.ids[rows])
    title = f"{name} on {preset} ({pipeline.size} px), target '{scenario.target_name}', seed {seed}"
    write_gallery(attack, images, ids, scenario.evaluation.labels[rows], scenario.classnames, out, title,
                  attack.visible_trigger())
    click.echo(f"gallery: {out}")
