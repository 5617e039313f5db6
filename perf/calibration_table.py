"""The calibration table: no-defense CA and ASR of every result in a folder, one row per attack,
setting (its ``--set`` overrides) and seed, with the clean model's CA and what it sends to the
target under the same trigger, and the temperatures of the clean model and the victim.

    python perf/calibration_table.py results/calibration/tiny-none [more folders] [--out table.md]

Only cells without a defense are read; ASR excludes target-class images (clipbench's definition).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SECTIONS = ("scenario", "pretrain", "poison", "victim", "attack")


def setting(config: dict) -> str:
    """How the cell's configuration differs from its preset's current default cell for the same
    attack, as ``section.key=value`` items, or ``preset default``."""
    from clipbench.cells import CellRequest, resolve_cell

    default = resolve_cell(CellRequest(preset=config["preset"], attack=config["attack"]["name"], defense="none")).config_dict()
    items = [f"{section}.{key}={value}" for section in SECTIONS
             for key, value in sorted(config.get(section, {}).items()) if default[section].get(key) != value]
    return " ".join(items) or "preset default"


def rows(folders: list[Path]) -> list[dict]:
    out = []
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            result = json.loads(path.read_text())
            if "cell" not in result or result["cell"].get("defense") != "none" or result.get("status") != "ok":
                continue
            metrics, clean = result["metrics"], result.get("clean_model_metrics", {})
            scales = result.get("logit_scale", {})
            out.append({
                "attack": result["cell"]["attack"], "setting": setting(result["config"]), "seed": result["cell"]["seed"],
                "CA victim": 100 * metrics["ca_top1"]["value"], "ASR victim": 100 * metrics["asr"]["value"],
                "CA clean": 100 * clean["ca_top1"]["value"] if clean else None,
                "ASR clean": 100 * clean["asr"]["value"] if clean else None,
                "T clean": scales.get("clean"), "T victim": scales.get("victim"), "file": path.name,
            })
    return sorted(out, key=lambda r: (r["attack"], r["setting"] != "preset default", r["setting"], r["seed"]))


def markdown(table: list[dict]) -> str:
    head = ("attack", "setting", "seed", "CA victim", "ASR victim", "CA clean", "ASR clean", "T clean", "T victim")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["--:"] * (len(head) - 3)) + "|"]
    for row in table:
        cells = [str(row[k]) if not isinstance(row[k], float) else f"{row[k]:.1f}" for k in head]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="write the markdown table here as well")
    args = parser.parse_args()
    missing = [str(f) for f in args.folders if not f.is_dir()]
    if missing:
        raise SystemExit(f"calibration_table: not a folder: {', '.join(missing)}")
    text = markdown(rows(args.folders))
    print(text, end="")
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
