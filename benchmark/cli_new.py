"""``clipbench new defense NAME``: write a working defense module and a test for it.

The module is a complete :class:`~clipbench.defenses.base.FineTuneDefense` (CLIP loss plus a
weighted example term) that runs as it is; the test runs it on one cell of the ``micro`` preset.
Both are starting points for the user's own package.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

import click

from .errors import ClipbenchError

MODULE_TEMPLATE = '''"""{name}: one line on what the defense does (cite the paper, e.g. "Author et al., arXiv XXXX.XXXXX").

Written with ``clipbench new defense {name}``. Its schedule (epochs, batch size, learning rate,
warmup, ...) comes from the preset, as for every built-in defense of its stage; its own knobs are
the fields of :class:`{cls}Config`, each with the paper's default and a citation.
"""

from __future__ import annotations

from dataclasses import dataclass

from clipbench.config import require
from clipbench.defenses.base import DefenseContext, FineTuneConfig, FineTuneDefense
from clipbench.registry import register_defense


@dataclass(frozen=True)
class {cls}Config(FineTuneConfig):
    """Knobs of {name}; the schedule fields are inherited from :class:`FineTuneConfig`."""

    anchor_weight: float = 0.5  # weight of the example term below (cite where a default comes from)

    def validate(self) -> None:
        super().validate()
        require(self.anchor_weight >= 0, f"defense.anchor_weight must be >= 0, got {{self.anchor_weight}}")


@register_defense("{name}")
class {cls}(FineTuneDefense):
    """CLIP loss on the clean pairs plus an example term that keeps image embeddings near those
    of the model the defense starts from (replace it with your method)."""

    Config = {cls}Config
    stage = "post_training"  # or "training_time": then the context holds the poisoned training pairs
    provenance = "reimplementation"
    description = "fine-tune with the CLIP loss plus a weighted anchor term (template)"
    source = "your paper here"

    def objective(self, context: DefenseContext):
        import copy

        import torch

        from clipbench.training import clip_loss

        config = self.config
        start = copy.deepcopy(context.model.model).eval()  # frozen copy of the model handed over

        def objective(batch):
            images, texts = batch.encode_images(), batch.encode_texts()
            loss = clip_loss(images, texts, batch.logit_scale)
            if config.anchor_weight > 0:
                with torch.no_grad():
                    pixels = batch.pipeline.normalize(batch.images).to(batch.device)
                    reference = torch.nn.functional.normalize(start.encode_image(pixels).float(), dim=-1)
                loss = loss + config.anchor_weight * (1 - (images * reference).sum(-1)).mean()
            return loss

        return objective
'''

TEST_TEMPLATE = '''"""{name} on one cell of clipbench's ``micro`` preset (a few hundred pairs, seconds on a CPU)."""

import pytest

import {module}  # noqa: F401  (registers the defense)
from clipbench.cells import CellRequest, resolve_cell
from clipbench.errors import ClipbenchError
from clipbench.matrix import RunnerSettings


def test_{module}_runs_a_micro_cell(tmp_path):
    cell = resolve_cell(CellRequest(preset="micro", attack="badnet", defense="{name}", seed=0))
    runner = RunnerSettings(str(tmp_path / "cache"), str(tmp_path / "results"), "cpu", False).cell_runner()
    result = runner.run_cell(cell)
    assert result["status"] == "ok", result["error"]
    assert 0.0 <= result["metrics"]["asr"]["value"] <= 1.0
    assert result["config"]["defense_schedule"]["source"] == "preset micro, post_training schedule"


def test_{module}_rejects_a_negative_weight():
    with pytest.raises(ClipbenchError, match="anchor_weight"):
        resolve_cell(CellRequest(preset="micro", attack="badnet", defense="{name}",
                                 overrides={{"{name}": {{"anchor_weight": "-1"}}}}))
'''


def _module_name(name: str) -> str:
    module = name.replace("-", "_")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", module) or keyword.iskeyword(module):
        raise ClipbenchError(f"defense name {name!r}: use lower-case letters, digits, '-' or '_', starting with a letter")
    return module


@click.group("new")
def new_group() -> None:
    """Start a new method from a working template."""


@new_group.command("defense")
@click.argument("name")
@click.option("--out", type=click.Path(path_type=Path), default=Path("."), show_default=True,
              help="folder for NAME.py and test_NAME.py (your package's folder)")
def new_defense(name: str, out: Path) -> None:
    """Write NAME.py, a working defense, and test_NAME.py, a test that runs it on the micro preset.

    \b
    Example:
      clipbench new defense mine --out src/mypackage
      pytest src/mypackage/test_mine.py
    """
    from .atomic import write_text
    from .registry import DEFENSES

    module = _module_name(name)
    if name in DEFENSES.names():
        raise ClipbenchError(f"a defense named {name!r} is already registered; choose another name")
    cls = "".join(part.capitalize() for part in module.split("_"))
    files = {out / f"{module}.py": MODULE_TEMPLATE.format(name=name, cls=cls),
             out / f"test_{module}.py": TEST_TEMPLATE.format(name=name, module=module)}
    if out.exists() and not out.is_dir():
        raise ClipbenchError(f"--out {out} is a file, not a folder")
    for path in files:
        if path.exists():
            raise ClipbenchError(f"{path} already exists; remove it or choose another name or --out")
    for path, text in files.items():
        write_text(path, text)
        click.echo(f"wrote {path}")
    click.echo("register it from your package's pyproject.toml:\n\n"
               f'  [project.entry-points."clipbench.defenses"]\n  {name} = "YOURPACKAGE.{module}:{cls}"\n')
