"""The paper presets select the method variants the papers' code runs: every row of the table in
docs/protocol.md ("Method variants of paper-abd") is what a paper-abd cell is configured with."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PROTOCOL = Path(__file__).parent.parent / "docs" / "protocol.md"


def variant_rows(heading: str) -> list[tuple[str, str, str]]:
    text = PROTOCOL.read_text()
    section = text[text.index(heading):]
    section = section[: section.index("\n#", 1)] if "\n#" in section[1:] else section
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("method", "") and not set(cells[0]) <= set("-"):
            rows.append((cells[0], cells[1], cells[2]))
    return rows


ROWS = variant_rows("### Method variants of `paper-abd`")


def test_the_protocol_table_is_read():
    assert len(ROWS) >= 7 and ("cleanclip", "augmentation", "autoaugment") in ROWS


@pytest.mark.parametrize("method,key,value", ROWS, ids=[f"{m}.{k}" for m, k, _ in ROWS])
def test_paper_abd_selects_the_papers_variant(method, key, value):
    from clipbench.cells import CellRequest, resolve_cell
    from clipbench.config import parse_set_options
    from clipbench.registry import ATTACKS

    overrides = parse_set_options(["scenario.train_data=hf:cc3m", "scenario.eval_data=hf:imagenet-1k"])
    is_attack = method in ATTACKS.names()
    cell = resolve_cell(CellRequest(preset="paper-abd", attack=method if is_attack else "badnet",
                                    defense="none" if is_attack else method, seed=0, overrides=overrides))
    config = cell.attack_config if is_attack else cell.defense_config
    actual = getattr(config, key)
    expected = type(actual)(value) if not isinstance(actual, str) else value
    assert actual == expected, f"paper-abd {method}.{key} is {actual!r}; the papers' code: {value!r}"
    assert re.fullmatch(r"[a-z_]+", key)


def test_attacks_a_preset_excludes_leave_all_but_run_when_named(cli_runner, fresh_cache_dir, tmp_path, monkeypatch):
    import dataclasses

    from clipbench.registry import PRESETS

    micro, get = PRESETS.get("micro"), PRESETS.get
    reason = "no-defense ASR 3% on 3 seeds (measured)"
    patched = dataclasses.replace(micro, excluded_attacks={"wanet": reason})
    monkeypatch.setattr(PRESETS, "get", lambda name: patched if name == "micro" else get(name))
    common = ["--preset", "micro", "--defense", "none", "--cache-dir", fresh_cache_dir, "--results-dir", tmp_path, "--dry-run"]
    everything = cli_runner(["run", "--attack", "all", "--seeds", "0,1", *common])
    assert everything.exit_code == 0, everything.output
    assert everything.output.count(f"wanet is left out of '--attack all' on preset micro: {reason}") == 1
    assert "victim wanet" not in everything.output and "victim badnet" in everything.output
    named = cli_runner(["run", "--attack", "wanet", *common])
    assert "victim wanet" in named.output and "left out" not in named.output
    listed = cli_runner(["list", "attacks"])
    assert f"wanet is left out of '--attack all' on preset micro (name it to run it): {reason}" in listed.output
