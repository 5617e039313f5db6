"""The stages of a cell, one module each, with explicit inputs and outputs:

``clean`` (pretrained or pretrained-by-clipbench model) -> ``poison`` (trigger + manifest) ->
``victim`` (poisoned fine-tuning) -> ``defense`` -> ``evaluation`` (CA, ASR, RA; and the clean
model's ``reference`` metrics under the same trigger). Each stage takes a :class:`Workspace` (the
cache, the device, the loaded data) and its parents' :class:`StageRecord` s, and returns its own
record. :mod:`clipbench.cell_runner` chains them for one cell.
"""

from .workspace import StageFailed, StageRecord, Workspace

__all__ = ["StageFailed", "StageRecord", "Workspace"]
