"""The ``clipbench`` command line (click). Errors in input print one line and exit with status 2."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .cli_common import DEFAULT_RESULTS, check_device, default_cache_dir
from .errors import ClipbenchError


def _int_list(text: str, what: str) -> list[int]:
    """Comma-separated integers, each once (``0,1,2``); an empty item or a repeat is an error."""
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        raise ClipbenchError(f"{what}: empty list")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        raise ClipbenchError(f"{what}: expected comma-separated integers, got {text!r}") from None
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ClipbenchError(f"{what} {text!r}: {', '.join(map(str, repeated))} listed twice")
    return values


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True, no_args_is_help=False)
@click.version_option(package_name="clipbench")
@click.option("--quiet", "-q", is_flag=True, help="no progress output: errors, warnings and results only")
@click.option("--verbose", "-v", is_flag=True, help="progress lines every 5 s outside a terminal, and the libraries' log messages")
@click.pass_context
def cli(ctx: click.Context, quiet: bool, verbose: bool) -> None:
    """Benchmark backdoor defenses for CLIP models: poison, defend, measure CA and ASR.

    \b
    Examples:
      clipbench run --attack badnet --defense cleanclip      # one cell of the embedded default
      clipbench list defenses
      clipbench report --results-dir clipbench-results
    """
    import logging
    import os

    if quiet and verbose:
        raise ClipbenchError("--quiet and --verbose exclude each other")
    if quiet:  # through the environment, so worker processes and cluster jobs follow it too
        os.environ["CLIPBENCH_PROGRESS"] = "off"
    if verbose:
        os.environ.setdefault("CLIPBENCH_PROGRESS_INTERVAL", "5")
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@cli.command("list")
@click.argument("what", type=click.Choice(["attacks", "defenses", "detectors", "models", "presets", "reproductions"]))
def list_command(what: str) -> None:
    """List registered attacks, defenses, detectors, models, presets or paper reproductions.

    \b
    Examples:
      clipbench list defenses
      clipbench list detectors
      clipbench list reproductions
    """
    from tabulate import tabulate

    from .registry import ATTACKS, DEFENSES, MODELS, PRESETS

    rows = []
    if what == "attacks":
        for name in ATTACKS.names():
            cls = ATTACKS.get(name)
            rows.append((name, cls.description, cls.source))
        headers = ("attack", "description", "source")
        excluded = [(name, preset, reason) for preset in PRESETS.names()
                    for name, reason in PRESETS.get(preset).excluded_attacks.items()]
        click.echo(tabulate(rows, headers=headers, tablefmt="simple"))
        for name, preset, reason in excluded:
            click.echo(f"\n{name} is left out of '--attack all' on preset {preset} (name it to run it): {reason}")
        return
    elif what == "defenses":
        for name in DEFENSES.names() + DEFENSES.family_names():
            cls = DEFENSES.get(name)
            rows.append((name, cls.stage, cls.provenance, cls.description, cls.source))
        headers = ("defense", "stage", "provenance", "description", "source")
    elif what == "detectors":
        from .registry import DETECTORS

        for name in DETECTORS.names():
            cls = DETECTORS.get(name)
            embeds = f" ({cls.embedding_model} model)" if cls.level == "data" else ""
            rows.append((name, cls.level + embeds, cls.provenance, cls.description, cls.source))
        headers = ("detector", "level", "provenance", "description", "source")
    elif what == "models":
        rows = [(name, MODELS.get(name).description) for name in MODELS.names()]
        rows.append(("<any open_clip name>", "e.g. RN50 with --pretrained openai (weights downloaded by open_clip)"))
        headers = ("model", "description")
    elif what == "reproductions":
        from .registry import REPRODUCTIONS

        for name in REPRODUCTIONS.names():
            item = REPRODUCTIONS.get(name)
            rows.append((name, f"{item.source}, {item.table}", item.description))
        headers = ("reproduction", "published in", "what")
    else:
        for name in PRESETS.names():
            preset = PRESETS.get(name)
            rows.append((name, preset.model, preset.description))
        headers = ("preset", "model", "description")
    click.echo(tabulate(rows, headers=headers, tablefmt="simple"))


_MATRIX_OPTIONS = (
    click.option("--model", default=None, help="model architecture (default: the preset's)"),
    click.option("--pretrained", default=None,
                 help="open_clip pretrained tag for --model (e.g. openai), a clipbench checkpoint folder, or '' for none"),
    click.option("--seed", "--seeds", "seeds", default="0", show_default=True, help="root seed(s), comma-separated"),
    click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE",
                 help="override a config value, e.g. victim.epochs=3, attack.patch_size=32 or roclip.pool_size=500 (repeatable)"),
    click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="artifact cache [default: ~/.cache/clipbench]"),
    click.option("--results-dir", type=click.Path(path_type=Path), default=DEFAULT_RESULTS, show_default=True,
                 help="where the cells' result JSONs go"),
    click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N"),
    click.option("--force", is_flag=True, help="recompute every stage of the requested cells"),
    click.option("--dry-run", is_flag=True, help="print the stage plan (cached or to compute) and exit"),
    click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1), help="cells run in parallel processes"),
    click.option("--executor", type=click.Choice(["local", "slurm", "submitit-local"]), default="local", show_default=True,
                 help="where cells run: this machine, SLURM through submitit, or submitit's local executor"),
    click.option("--slurm-partition", default=None, help="SLURM partition (with --executor slurm)"),
    click.option("--timeout-min", default=240, show_default=True, type=click.IntRange(min=1),
                 help="time limit of a training job on a cluster (evaluation jobs: 60 min)"),
    click.option("--gpus-per-job", default=1, show_default=True, type=click.IntRange(min=1),
                 help="GPUs of a training job on SLURM: one task per GPU, the stage trains data-parallel"),
    click.option("--lock", "lock_mode", type=click.Choice(["flock", "soft"]), default=None,
                 help="cache locks: flock (local disks) or soft (leases, for caches on NFS/Lustre) [default: $CLIPBENCH_LOCK or flock]"),
    click.option("--save-every", default="10min", show_default=True,
                 help="how often a training stage saves its resume state: a step count (500) or a time (10min, 30s); 0: never"),
)


def matrix_options(func):
    """The options every command that runs cells shares (``run``, ``reproduce``)."""
    for option in reversed(_MATRIX_OPTIONS):
        func = option(func)
    return func


def _attack_names(spec: str, preset_name: str) -> list[str]:
    """The attacks of ``--attack``; ``all`` leaves out those the preset excludes, saying why."""
    from .registry import ATTACKS, PRESETS

    names = ATTACKS.resolve_list(spec)
    if spec.strip() != "all":
        return names
    excluded = PRESETS.get(preset_name).excluded_attacks
    for name in names:
        if name in excluded:
            click.echo(f"note: {name} is left out of '--attack all' on preset {preset_name}: {excluded[name]} "
                       f"(--attack {name} runs it)", err=True)
    return [name for name in names if name not in excluded]


@cli.command("run")
@click.option("--attack", "attacks", default="badnet", show_default=True, help="attack name(s), comma-separated, or 'all'")
@click.option("--defense", "defenses", default="none", show_default=True, help="defense name(s), comma-separated, or 'all'")
@click.option("--preset", default="tiny", show_default=True, help="experiment preset (see 'clipbench list presets')")
@click.option("--sweep", "sweep_text", default=None, metavar="SECTION.KEY=V1,V2,...",
              help="run each defense that has the key once per value, a CA-ASR curve over its budget "
                   "(e.g. defense.lr=1e-5,1e-4,5e-4 or cleanclip.epochs=5,10,20); 'clipbench report' draws the curves")
@matrix_options
def run_command(attacks, defenses, preset, sweep_text, model, pretrained, seeds, sets, cache_dir, results_dir, device,
                force, dry_run, workers, executor, slurm_partition, timeout_min, gpus_per_job, lock_mode, save_every) -> None:
    """Run cells: clean model -> poison -> victim -> defense -> evaluation, each stage cached.

    \b
    Examples:
      clipbench run --attack badnet --defense cleanclip
      clipbench run --attack all --defense all --seeds 0,1,2 --results-dir results/tiny
      clipbench run --attack blended --defense finetune,cleanclip --sweep defense.lr=1e-5,1e-4,5e-4
    """
    from .cells import CellRequest, resolve_cells
    from .config import parse_set_options
    from .registry import DEFENSES
    from .sweep import expand, parse_sweep

    overrides = parse_set_options(sets)
    sweep = parse_sweep(sweep_text) if sweep_text else None
    attack_names = _attack_names(attacks, preset)
    defense_names = DEFENSES.resolve_list(defenses)
    if defenses.strip() == "all":
        defense_names = _defenses_of_threat_model(defense_names, preset, attack_names[0], model, pretrained, overrides)
    requests = [
        CellRequest(preset=preset, attack=a, defense=d, seed=s, model=model, pretrained=pretrained, overrides=overrides)
        for s in _int_list(seeds, "--seed")
        for a in attack_names
        for d in defense_names
    ]
    cells = resolve_cells(expand(requests, sweep))
    results = _run_cells(cells, cache_dir, results_dir, device, force, dry_run, workers, executor, slurm_partition,
                         timeout_min, gpus_per_job, lock_mode, save_every)
    if results is None:
        return
    from .distributed import is_main
    from .summary import cell_table

    if is_main():
        click.echo(cell_table(results))
        click.echo(f"results: {results_dir}")
    if any(r["status"] != "ok" for r in results):
        sys.exit(1)


def _defenses_of_threat_model(names: list[str], preset: str, attack: str, model, pretrained, overrides) -> list[str]:
    """``--defense all`` under the pre-training threat model leaves out the defenses that need the
    model a victim was fine-tuned from (ABD), with a note."""
    from .cells import CellRequest, resolve_cell
    from .registry import DEFENSES

    scenario = resolve_cell(CellRequest(preset=preset, attack=attack, defense="none", model=model, pretrained=pretrained,
                                        overrides=overrides)).preset.scenario
    left_out = [name for name in names if DEFENSES.get(name).lacks_origin(scenario)]
    for name in left_out:
        click.echo(f"note: {name} is left out of '--defense all' under scenario.threat_model=pretrain: it works "
                   "against the model its victim was fine-tuned from, which a victim trained from scratch lacks", err=True)
    return [name for name in names if name not in left_out]


def _run_cells(cells, cache_dir, results_dir, device, force, dry_run, workers, executor, slurm_partition,
               timeout_min, gpus_per_job, lock_mode, save_every) -> list[dict] | None:
    """Plan resolved cells, print the plan (and stop there with ``dry_run``), else run them."""
    from tabulate import tabulate

    from .cache import ensure_writable
    from .matrix import RunnerSettings, check_data, plan_matrix, run_matrix

    check_device(device)
    from .resume import parse_every

    parse_every(save_every)
    cache = ensure_writable(cache_dir or default_cache_dir(), "cache directory")
    plan = plan_matrix(cells, cache)
    summary = plan.summary(len(cells))
    settings = RunnerSettings(str(cache), str(results_dir), device, force, lock_mode=lock_mode, save_every=save_every)
    options = {"timeout_min": timeout_min, "gpus": gpus_per_job}
    if slurm_partition:
        options["slurm_partition"] = slurm_partition
    if dry_run:
        if executor == "local":
            click.echo(tabulate(plan.rows(), headers=("stage", "key", "status", "what", "cells"), tablefmt="simple"))
        else:
            from .matrix import cluster_graph

            graph, _ = cluster_graph(cells, settings, options)
            click.echo(tabulate(graph.rows(), headers=("job", "stage", "after", "resources", "what", "cells"),
                                tablefmt="simple"))
            click.echo(f"{executor}: {graph.summary()}, each after the jobs it depends on (afterok)")
        click.echo(summary)
        return None
    check_data(cells, cache)  # reads the evaluation split (targeted poisoning); after --dry-run, which needs no data
    if executor != "local":
        from .cluster import check_executor

        check_executor(executor)
    from .distributed import init_from_env, is_main, local_device

    rank, world_size = init_from_env(device)  # launched by torchrun: every stage data-parallel
    if world_size > 1:
        from .matrix import check_world

        if executor != "local" or workers > 1:
            raise ClipbenchError(f"launched with {world_size} ranks (torchrun): use the local executor and one worker")
        check_world(cells, world_size)
        device = local_device(device)
        settings = RunnerSettings(str(cache), str(results_dir), device, force, lock_mode=lock_mode, save_every=save_every)
    results_dir = ensure_writable(results_dir, "results directory")
    if is_main():
        click.echo(summary, err=True)
    from .progress import progress as progress_bar

    with progress_bar(total=len(cells), desc="matrix", unit="cell", disable=len(cells) == 1 or not is_main()) as progress:
        def on_result(result: dict) -> None:
            progress.update(1)
            progress.set_postfix_str(f"{result['cell']['name']}: {result['status']}")

        return run_matrix(cells, settings, workers=workers, executor=executor, on_result=on_result,
                          submitit_options=options)


@cli.command("reproduce")
@click.argument("table")
@click.option("--preset", default=None,
              help="experiment preset [default: the table's own: tiny for the ABD tables, tiny-pretrain for roclip]; "
                   "the paper settings are paper-abd and paper-roclip (user data)")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="folder for the table (Markdown, CSV, figure) [default: RESULTS_DIR/reproduce/TABLE-PRESET]")
@matrix_options
def reproduce_command(table, preset, model, pretrained, seeds, sets, cache_dir, results_dir, out, device, force, dry_run,
                      workers, executor, slurm_partition, timeout_min, gpus_per_job, lock_mode, save_every) -> None:
    """Run a paper table's cells and print measured beside published numbers.

    TABLE is one of: abd-table1 (ABD Table I: no defense, RoCLIP, CleanCLIP and ABD against three
    attacks), abd-table2 (Table II: fine-tuning, the adversarial patch alone, EDA alone, ABD),
    abd-table3 (Table III: a plain UAP without the backdoor loss, and ABD), roclip (CLIP vs RoCLIP
    and SafeCLIP pre-trained from scratch on poisoned data: targeted poisoning, BadNet, CA and
    linear probe, beside the claims of their abstracts); 'clipbench list reproductions' lists them
    with their sources.

    \b
    Examples:
      clipbench reproduce abd-table1                        # the embedded tiny setting, CPU
      clipbench reproduce roclip --seeds 0,1,2              # tiny-pretrain, CPU
      clipbench reproduce abd-table1 --preset paper-abd --set scenario.train_data=cc3m.csv \\
          --set scenario.eval_data=imagenet/val --device cuda
    """
    from .cells import resolve_cells
    from .config import parse_set_options
    from .registry import REPRODUCTIONS

    reproduction = REPRODUCTIONS.get(table)
    preset = preset or reproduction.default_preset
    requests = reproduction.requests(preset, _int_list(seeds, "--seed"), model, pretrained, parse_set_options(sets))
    cells = resolve_cells(requests)
    results = _run_cells(cells, cache_dir, results_dir, device, force, dry_run, workers, executor, slurm_partition,
                         timeout_min, gpus_per_job, lock_mode, save_every)
    from .distributed import is_main

    if results is None or not is_main():
        return
    measured = reproduction.compare(results)
    setting = f"preset {cells[0].preset.name}, model {cells[0].preset.model}" + (
        f" ({cells[0].preset.pretrained})" if cells[0].preset.pretrained else "") + f", seeds {seeds}"
    out = out or Path(results_dir) / "reproduce" / f"{table}-{cells[0].preset.name}"
    paths = reproduction.write(measured, setting, out)
    click.echo(f"{reproduction.name} — {setting}")
    click.echo(reproduction.terminal(measured))
    click.echo(f"written: {paths['markdown']}, {paths['csv']}, {paths['figure']}")
    if any(r["status"] != "ok" for r in results):
        sys.exit(1)


@cli.command("report")
@click.option("--results-dir", type=click.Path(path_type=Path), default=DEFAULT_RESULTS, show_default=True,
              help="folder of result JSONs (searched recursively)")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="output folder [default: RESULTS_DIR/report]")
@click.option("--ca-loss", default=1.0, show_default=True, type=click.FloatRange(min=0, max=100),
              help="matched-budget view of budget sweeps: ASR where CA is at most this many points below the victim's")
def report_command(results_dir: Path, out: Path | None, ca_loss: float) -> None:
    """Build tables (CSV, Markdown, LaTeX), figures and a page from the stored result JSONs, with
    the detection tables and ROC curves of any 'clipbench detect' results among them (a folder of
    detection results alone gets those tables and curves, without a page).

    \b
    Examples:
      clipbench report --results-dir results/tiny --out results/tiny/report
      clipbench report --results-dir sweeps --ca-loss 2
    """
    import warnings

    from .cache import ensure_writable
    from .report import load_results, write_report

    if not results_dir.is_dir():
        raise ClipbenchError(f"--results-dir {results_dir} does not exist")

    def echo_warnings(caught: list) -> None:
        for warning in caught:
            click.echo(f"clipbench: warning: {warning.message}", err=True)

    from .detection_report import load_detections

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = load_results(results_dir) + load_detections(results_dir)
    echo_warnings(caught)
    if not found:
        raise ClipbenchError(f"--results-dir {results_dir} holds no readable clipbench result; nothing written")
    out = ensure_writable(out or results_dir / "report", "report directory")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the files skipped were named above
        written = write_report(results_dir, out, ca_loss=ca_loss / 100)
    if out / "incomplete_cells.md" in written:
        click.echo(f"clipbench: warning: some cells failed or are missing; listed in {out / 'incomplete_cells.md'} "
                   "and on the page", err=True)
    for path in written:
        click.echo(path)


from .cli_cache import cache_group  # noqa: E402  (command groups of their own modules)
from .cli_checkpoint import checkpoint_group  # noqa: E402
from .cli_config import config_group  # noqa: E402
from .cli_data import data_group  # noqa: E402
from .cli_detect import detect_command  # noqa: E402
from .cli_new import new_group  # noqa: E402
from .cli_show import show_group  # noqa: E402

for _group in (cache_group, checkpoint_group, config_group, data_group, detect_command, new_group, show_group):
    cli.add_command(_group)


def describe_os_error(error: OSError) -> str:
    """One line for a file-system error: what happened to which file, in words."""
    import errno

    where = error.filename or "a file"
    reasons = {errno.ENOSPC: f"no space left on the device holding {where}",
               errno.EACCES: f"permission denied: {where}", errno.EROFS: f"{where} is on a read-only file system",
               errno.EDQUOT: f"disk quota exceeded writing {where}", errno.ENOENT: f"{where} does not exist"}
    return reasons.get(error.errno, f"{where}: {error.strerror or error}")


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
    except OSError as error:  # the file system: name the file and say what went wrong in words
        click.echo(f"clipbench: error: {describe_os_error(error)}", err=True)
        sys.exit(1)
    except Exception as error:  # a bug or an environment problem: still one line, with its kind
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        click.echo(f"clipbench: error: {type(error).__name__}: {first}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
