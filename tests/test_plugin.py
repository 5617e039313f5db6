"""A defense from a package installed outside clipbench: found through its entry point, trained on
the preset's schedule (recorded in its result), and recomputed, alone, when its code is edited."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PYPROJECT = """
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "shrinkplug"
version = "0.1"

[project.entry-points."clipbench.defenses"]
shrink = "shrinkplug.defense:Shrink"

[tool.setuptools]
packages = ["shrinkplug"]
"""

DEFENSE = '''
from dataclasses import dataclass

from clipbench.defenses.base import FineTuneConfig, FineTuneDefense

from .weights import SCALE


@dataclass(frozen=True)
class ShrinkConfig(FineTuneConfig):
    scale: float = 0.5

    def validate(self):
        super().validate()
        if self.scale < 0:
            raise ValueError(f"scale must be >= 0, got {self.scale}")


class Shrink(FineTuneDefense):
    Config = ShrinkConfig
    stage = "post_training"
    description = "test plugin"
    source = "tests"

    def objective(self, context):
        from clipbench.training import clip_objective

        return lambda batch: SCALE * self.config.scale * clip_objective(batch)
'''


def _cli(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "clipbench.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory) -> Path:
    """``shrinkplug`` built and installed (pip, no network) into a folder of its own."""
    source = tmp_path_factory.mktemp("plugin-src")
    (source / "pyproject.toml").write_text(PYPROJECT)
    (source / "shrinkplug").mkdir()
    (source / "shrinkplug" / "__init__.py").write_text("")
    (source / "shrinkplug" / "defense.py").write_text(textwrap.dedent(DEFENSE))
    (source / "shrinkplug" / "weights.py").write_text("SCALE = 1.0\n")
    site = tmp_path_factory.mktemp("plugin-site")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(site), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return site


def _results(folder: Path) -> dict[str, dict]:
    return {json.loads(p.read_text())["cell"]["defense"]: json.loads(p.read_text()) for p in folder.glob("*.json")}


def test_edited_plugin_recomputes_its_own_stages_only(installed_plugin, fresh_cache_dir, tmp_path):
    args = ["run", "--preset", "micro", "--attack", "badnet", "--defense", "shrink,finetune", "--device", "cpu",
            "--cache-dir", str(fresh_cache_dir), "--results-dir", str(tmp_path / "results")]
    first = _cli(installed_plugin, tmp_path, *args)
    assert first.returncode == 0, first.stderr
    before = _results(tmp_path / "results")
    shrink = before["shrink"]
    assert shrink["status"] == "ok"
    schedule = shrink["config"]["defense_schedule"]
    assert schedule["source"] == "preset micro, post_training schedule" and schedule["departures"] == {}
    assert schedule["applied"]["epochs"] == 1 and schedule["applied"]["lr"] == 1e-3  # micro's, not the 1e-5 default
    assert shrink["config"]["defense"]["lr"] == 1e-3

    # an unchanged rerun reuses everything
    again = _cli(installed_plugin, tmp_path, *args)
    assert again.returncode == 0 and _results(tmp_path / "results")["shrink"]["timestamp"] == shrink["timestamp"]

    # edit a helper module of the installed plugin: only the plugin's defense stage is recomputed
    weights = installed_plugin / "shrinkplug" / "weights.py"
    weights.write_text("SCALE = 0.0  # edited: no training signal\n")
    edited = _cli(installed_plugin, tmp_path, *args)
    assert edited.returncode == 0, edited.stderr
    after = _results(tmp_path / "results")
    stages = after["shrink"]["stages"]
    assert stages["defense"]["cached"] is False and after["shrink"]["run_key"] != shrink["run_key"]
    assert all(stages[name]["cached"] for name in ("clean", "poison", "reference", "victim"))
    assert after["shrink"]["artifacts"]["victim"] == shrink["artifacts"]["victim"]
    assert after["finetune"]["timestamp"] == before["finetune"]["timestamp"], "the built-in cell was reused"
    assert after["shrink"]["code"]["defense"] != shrink["code"]["defense"]


def test_plugin_value_error_is_one_line_and_exit_2(installed_plugin, tmp_path):
    done = _cli(installed_plugin, tmp_path, "run", "--preset", "micro", "--defense", "shrink", "--set", "shrink.scale=-1",
                "--dry-run")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["clipbench: error: defense shrink: scale must be >= 0, got -1.0"]


def test_new_defense_template_runs(tmp_path, fresh_cache_dir):
    done = subprocess.run([sys.executable, "-m", "clipbench.cli", "new", "defense", "my-guard", "--out", str(tmp_path / "pkg")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "pkg" / "my_guard.py").exists() and (tmp_path / "pkg" / "test_my_guard.py").exists()
    again = subprocess.run([sys.executable, "-m", "clipbench.cli", "new", "defense", "my-guard", "--out", str(tmp_path / "pkg")],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already exists" in again.stderr
    env = {**os.environ, "CLIPBENCH_CACHE": str(fresh_cache_dir)}
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "pkg")],
                           capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert "2 passed" in tests.stdout
