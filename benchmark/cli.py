"""The ``clipbench`` command line (click). Errors in input print one line and exit with status 2."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .errors import ClipbenchError

DEFAULT_RESULTS = Path("clipbench-results")


def default_cache_dir() -> Path:
    """``$CLIPBENCH_CACHE``, else ``$XDG_CACHE_HOME/clipbench``, else ``~/.cache/clipbench``."""
    if os.environ.get("CLIPBENCH_CACHE"):
        return Path(os.environ["CLIPBENCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clipbench"


def _int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ClipbenchError(f"{what}: expected comma-separated integers, got {text!r}") from None
    if not values:
        raise ClipbenchError(f"{what}: empty list")
    return values


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="clipbench")
def cli() -> None:
    """Benchmark backdoor defenses for CLIP models: poison, defend, measure CA and ASR."""


@cli.command("list")
@click.argument("what", type=click.Choice(["attacks", "defenses", "models", "presets"]))
def list_command(what: str) -> None:
    """List registered attacks, defenses, models or presets."""
    from tabulate import tabulate

    from .registry import ATTACKS, DEFENSES, MODELS, PRESETS

    rows = []
    if what == "attacks":
        for name in ATTACKS.names():
            cls = ATTACKS.get(name)
            rows.append((name, cls.description, cls.source))
        headers = ("attack", "description", "source")
    elif what == "defenses":
        for name in DEFENSES.names():
            cls = DEFENSES.get(name)
            rows.append((name, cls.stage, cls.provenance, cls.description, cls.source))
        headers = ("defense", "stage", "provenance", "description", "source")
    elif what == "models":
        rows = [(name, MODELS.get(name).description) for name in MODELS.names()]
        rows.append(("<any open_clip name>", "e.g. RN50 with --pretrained openai (weights downloaded by open_clip)"))
        headers = ("model", "description")
    else:
        for name in PRESETS.names():
            preset = PRESETS.get(name)
            rows.append((name, preset.model, preset.description))
        headers = ("preset", "model", "description")
    click.echo(tabulate(rows, headers=headers, tablefmt="simple"))


@cli.command("run")
@click.option("--attack", "attacks", default="badnet", show_default=True, help="attack name(s), comma-separated, or 'all'")
@click.option("--defense", "defenses", default="none", show_default=True, help="defense name(s), comma-separated, or 'all'")
@click.option("--preset", default="tiny", show_default=True, help="experiment preset (see 'clipbench list presets')")
@click.option("--model", default=None, help="model architecture (default: the preset's)")
@click.option("--pretrained", default=None, help="open_clip pretrained tag for --model, e.g. openai")
@click.option("--seed", "--seeds", "seeds", default="0", show_default=True, help="root seed(s), comma-separated")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE",
              help="override a config value, e.g. victim.epochs=3 or attack.patch_size=32 (repeatable)")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="artifact cache [default: ~/.cache/clipbench]")
@click.option("--results-dir", type=click.Path(path_type=Path), default=DEFAULT_RESULTS, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N")
@click.option("--force", is_flag=True, help="recompute every stage even when cached")
def run_command(attacks, defenses, preset, model, pretrained, seeds, sets, cache_dir, results_dir, device, force) -> None:
    """Run cells: clean model -> poison -> victim -> defense -> evaluation, each stage cached."""
    from .cells import CellRequest, resolve_cell
    from .config import parse_set_options
    from .registry import ATTACKS, DEFENSES

    overrides = parse_set_options(sets)
    cells = [
        resolve_cell(CellRequest(preset=preset, attack=a, defense=d, seed=s, model=model, pretrained=pretrained, overrides=overrides))
        for s in _int_list(seeds, "--seed")
        for a in ATTACKS.resolve_list(attacks)
        for d in DEFENSES.resolve_list(defenses)
    ]
    from .runner import Runner
    from .summary import cell_table

    runner = Runner(cache_dir or default_cache_dir(), results_dir, device=device, force=force)
    results = []
    for cell in cells:
        click.echo(f"cell {cell.name}", err=True)
        results.append(runner.run_cell(cell))
    click.echo(cell_table(results))
    click.echo(f"results: {runner.results_dir}")
    if any(r["status"] != "ok" for r in results):
        sys.exit(1)


@cli.group("show")
def show_group() -> None:
    """Show what a method does (pictures for people)."""


@show_group.command("attack")
@click.argument("name")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="PNG file to write")
@click.option("--preset", default="tiny", show_default=True)
@click.option("--model", default=None, help="model architecture (default: the preset's)")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE", help="override a config value (repeatable)")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None)
@click.option("--device", default="auto", show_default=True)
def show_attack(name, out, preset, model, seed, sets, cache_dir, device) -> None:
    """Write a gallery of clean and triggered evaluation images of attack NAME to --out."""
    from .cells import CellRequest, resolve_cell
    from .config import parse_set_options

    if out.suffix.lower() != ".png":
        raise ClipbenchError(f"--out {out}: the gallery is written as PNG; use a .png file name")
    cell = resolve_cell(CellRequest(preset=preset, attack=name, defense="none", seed=seed, model=model,
                                    overrides=parse_set_options(sets)))
    from .cache import ensure_writable

    ensure_writable(out.parent if str(out.parent) else Path("."), "output directory")
    from .gallery import one_per_class, write_gallery
    from .runner import Runner

    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        runner = Runner(cache_dir or default_cache_dir(), Path(scratch), device=device)
        clean = runner.clean_model(cell)
        poison = runner.poison(cell, clean)
        attack, _ = runner.load_attack(cell, poison)
        scenario = runner.scenario(cell)
        from .image_pipeline import ImagePipeline
        from .models import load_checkpoint

        pipeline = ImagePipeline.from_model(load_checkpoint(clean.path).model)
        rows = one_per_class(scenario.evaluation.labels, len(scenario.classnames))
        images = runner.images(cell, "evaluation", pipeline)[rows]
        import torch

        ids = torch.as_tensor(scenario.evaluation.ids[rows])
        title = f"{name} on {preset} ({pipeline.size} px), target '{scenario.target_name}', seed {seed}"
        write_gallery(attack, images, ids, scenario.evaluation.labels[rows], scenario.classnames, out, title,
                      attack.visible_trigger())
    click.echo(f"gallery: {out}")


@cli.command("report")
@click.option("--results-dir", type=click.Path(path_type=Path), default=DEFAULT_RESULTS, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="output folder [default: RESULTS_DIR/report]")
def report_command(results_dir: Path, out: Path | None) -> None:
    """Build tables (CSV, Markdown, LaTeX) from the stored result JSONs."""
    from .cache import ensure_writable
    from .report import write_report

    if not results_dir.is_dir():
        raise ClipbenchError(f"--results-dir {results_dir} does not exist")
    import warnings

    out = ensure_writable(out or results_dir / "report", "report directory")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = write_report(results_dir, out)
    for warning in caught:
        click.echo(f"clipbench: warning: {warning.message}", err=True)
    for path in written:
        click.echo(path)


def main() -> None:
    """Console entry point: one line and exit status 2 for input errors, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("clipbench: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        click.echo(f"clipbench: error: {error.format_message()}", err=True)
        sys.exit(error.exit_code)
    except ClipbenchError as error:
        click.echo(f"clipbench: error: {error}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("clipbench: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
