"""``clipbench detect``: detectors of poisoned pairs, triggered inputs and backdoored models on the
cells of a preset, scored against the ground truth only the harness holds."""

from __future__ import annotations

from pathlib import Path

import click

from .cli_common import check_device, default_cache_dir


@click.command("detect")
@click.option("--attack", "attacks", default="badnet", show_default=True, help="attack name(s), comma-separated, or 'all'")
@click.option("--detector", "detectors", default="all", show_default=True,
              help="detector name(s) of any level, comma-separated, or 'all' (see 'clipbench list detectors')")
@click.option("--preset", default="tiny", show_default=True, help="experiment preset (see 'clipbench list presets')")
@click.option("--seed", "--seeds", "seeds", default="0", show_default=True, help="root seed(s), comma-separated")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE",
              help="override a config value (repeatable), e.g. detector.k=32 or poison.count=100")
@click.option("--results-dir", type=click.Path(path_type=Path), default=Path("clipbench-results"), show_default=True,
              help="folder of the result JSONs (one per attack, detector and seed)")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="artifact cache [default: ~/.cache/clipbench]")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N")
def detect_command(attacks, detectors, preset, seeds, sets, results_dir, cache_dir, device) -> None:
    """Score every training pair of each attack's poisoned victim split with data-level detectors,
    clean and triggered evaluation images with input-level ones, or the clean model and each victim
    with model-level ones; measure AUROC, AUPRC and TPR at 1% / 5% FPR against the poison manifest
    or the trigger (model level: the report pools the scores over models).

    The victim split is embedded as the victim trained on it (its triggers and poisoned captions
    in place) by the victim model, or by the clean model for detectors that use it; the clean
    model, poison and victim come from the cache or are computed as 'clipbench run' would. A
    finished result is reused when its detector config, the keys of the stages it read and the
    detector's code digest all match.

    \b
    Examples:
      clipbench detect --attack badnet --detector kdistance
      clipbench detect --attack all --detector all --seeds 0,1,2 --results-dir results/tiny-detect
      clipbench detect --attack blended --detector slof --set detector.k=32
    """
    from tabulate import tabulate

    from .atomic import write_json
    from .cache import ensure_writable
    from .cells import CellRequest, resolve_cells
    from .cli import _attack_names, _int_list
    from .config import parse_set_options, to_dict
    from .detection import DetectionRun, detection_name, detector_configs, provenance, stored_detection
    from .detectors.base import check_embedding_model
    from .errors import ClipbenchError
    from .progress import progress as progress_bar
    from .registry import ATTACKS, DETECTORS
    from .stages import Workspace

    check_device(device)
    overrides = parse_set_options(sets)
    detector_overrides = overrides.pop("detector", {})
    names = DETECTORS.resolve_list(detectors)
    configs = detector_configs(names, detector_overrides)
    attack_names = _attack_names(attacks, preset)
    if attacks.strip() == "all":  # targeted poisoning has no trigger for input- or model-level detection
        attack_names = [a for a in attack_names if ATTACKS.get(a).kind == "backdoor"]
    cells = resolve_cells([CellRequest(preset=preset, attack=attack, defense="none", seed=seed, overrides=overrides)
                           for attack in attack_names for seed in _int_list(seeds, "--seed")])
    for cell in cells:
        for name in names:
            detector_cls = DETECTORS.get(name)
            if cell.attack_cls.kind != "backdoor" and detector_cls.level != "data":
                raise ClipbenchError(f"detector {name} ({detector_cls.level} level) needs a trigger; {cell.request.attack} "
                                     f"is {cell.attack_cls.kind} poisoning, which has none (data-level detectors score its pairs)")
            check_embedding_model(detector_cls, cell.preset.scenario)
            detector_cls.check_scenario(configs[name], cell.preset.scenario)
    ensure_writable(results_dir, "results directory")
    ws = Workspace(cache_dir or default_cache_dir(), device=device)
    run = DetectionRun(ws)
    rows = []
    bar = progress_bar(total=len(cells) * len(names), desc="detect", unit="result")
    for cell in cells:
        for name in names:
            path = results_dir / f"{detection_name(cell, name)}.json"
            result, origin = stored_detection(path), provenance(cell, DETECTORS.get(name))
            if result is None or result["detector"]["config"] != to_dict(configs[name]) or result.get("provenance") != origin:
                result = run.run(cell, name, DETECTORS.get(name), configs[name], origin)
                write_json(path, result)
            rows.append(_summary_row(result))
            bar.update(1)
    bar.close()
    click.echo(tabulate(rows, headers=("attack", "detector", "seed", "positives", "items", "AUROC % [95% CI]",
                                       "TPR@5%FPR %", "scores (model level)"), tablefmt="simple"))
    click.echo(f"results: {results_dir}")


def _summary_row(result: dict) -> tuple:
    """One printed row: counts and AUROC for data and input level, the two models' scores for model level."""
    cell = result["cell"]
    if cell["level"] == "model":
        scores = ", ".join(f"{m['role']} {m['score']:.3f}" for m in result["models"])
        return (cell["attack"], cell["detector"], cell["seed"], 1, len(result["models"]), "-", "-", scores)
    auroc = result["metrics"]["auroc"]
    positives, items = (result["poisoned"], result["pairs"]) if "pairs" in result else (result["triggered"], result["images"])
    return (cell["attack"], cell["detector"], cell["seed"], positives, items,
            f"{100 * auroc['value']:.1f} [{100 * auroc['ci95'][0]:.1f}, {100 * auroc['ci95'][1]:.1f}]",
            f"{100 * result['metrics']['tpr_at_fpr_5']['value']:.1f}", "")
