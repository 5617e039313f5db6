"""Resumable training stages: the state of a build's training runs, saved as it goes.

While a stage is built (:meth:`clipbench.stages.workspace.Workspace.artifact`), a
:class:`ResumePlan` is active: each call of the training loop in that build takes the next
:class:`ResumeSlot` (phase 0, 1, ...; SafeCLIP trains in many phases). A slot saves the model,
optimizer, scheduler, the loop's generator, the epoch's row order, the loss history, torch's RNG
and every RNG stream the defense registered, every ``every_steps`` steps or ``every_seconds``
seconds (for a loop with an epoch hook, at epoch ends only, where the hook's work is redone), and
once more when the phase completes. A killed or preempted build run again continues from the
newest state: completed phases load their final weights and streams and are not retrained, and
the interrupted phase continues at its step, so the final weights equal an uninterrupted run's.

A state is loaded only when its fingerprint matches: the stage and key (which hash the config and
the method's code), the phase's training config, the data size, and a digest of the training
loop's own code. Any other state is ignored, with a one-line warning, and replaced. The folder
``<cache>/<stage>/.resume-<key>/`` is removed once the artifact is complete.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch

from .atomic import atomic_file

STATE_FORMAT = 1
#: Default cadence of saved states.
DEFAULT_EVERY_SECONDS = 600.0

_active: contextvars.ContextVar[Optional["ResumePlan"]] = contextvars.ContextVar("clipbench_resume", default=None)


def _loop_code_digest() -> str:
    """sha256 of the training loop's and this module's source: a state from other code is not loaded."""
    from . import training

    digest = hashlib.sha256()
    for module in (training, __import__(__name__, fromlist=["_"])):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


# ------------------------------------------------------------------------------------ streams
def capture(stream: Any) -> Any:
    """The state of an RNG stream (torch/numpy/python generator, or anything with ``state_dict``)."""
    if isinstance(stream, torch.Generator):
        return stream.get_state()
    if isinstance(stream, np.random.Generator):
        return stream.bit_generator.state
    if isinstance(stream, random.Random):
        return stream.getstate()
    return stream.state_dict()


def restore(stream: Any, state: Any) -> None:
    """Put ``stream`` back in a state from :func:`capture`."""
    if isinstance(stream, torch.Generator):
        stream.set_state(state)
    elif isinstance(stream, np.random.Generator):
        stream.bit_generator.state = state
    elif isinstance(stream, random.Random):
        stream.setstate(_tuples(state))
    else:
        stream.load_state_dict(state)


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def global_rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------ slots
@dataclass
class ResumeSlot:
    """Where one training phase of a build saves its state, and when."""

    path: Path
    fingerprint: str
    every_steps: int = 0
    every_seconds: float = DEFAULT_EVERY_SECONDS
    last_saved: float = field(default_factory=time.monotonic)

    def load(self) -> Optional[dict]:
        """The saved state when it exists and matches this phase's fingerprint, else ``None``."""
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as error:  # a truncated or foreign file: ignored and replaced
            from .cache import warn

            warn(f"resume state {self.path} is unreadable ({type(error).__name__}); starting the phase again")
            return None
        if not isinstance(state, dict) or state.get("fingerprint") != self.fingerprint or state.get("format") != STATE_FORMAT:
            from .cache import warn

            warn(f"resume state {self.path} is from another config or code version; ignoring it")
            return None
        return state

    def due(self, step: int) -> bool:
        """Whether a state should be saved after ``step`` steps."""
        if self.every_steps > 0 and step % self.every_steps == 0:
            return True
        return self.every_seconds > 0 and time.monotonic() - self.last_saved >= self.every_seconds

    def save(self, state: dict) -> None:
        with atomic_file(self.path) as tmp:
            torch.save({**state, "fingerprint": self.fingerprint, "format": STATE_FORMAT}, tmp)
        self.last_saved = time.monotonic()


class ResumePlan:
    """The resume folder of one build; hands out a slot per training phase, in call order."""

    def __init__(self, folder: Path, fingerprint: str, every_steps: int = 0, every_seconds: float = DEFAULT_EVERY_SECONDS):
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.every_steps = every_steps
        self.every_seconds = every_seconds
        self.phases = 0

    def next_slot(self, description: str, config: Any, size: int) -> ResumeSlot:
        index, self.phases = self.phases, self.phases + 1
        from .config import stable_hash, to_dict

        fingerprint = stable_hash(self.fingerprint, index, description, to_dict(config), size, _loop_code_digest())
        return ResumeSlot(self.folder / f"phase-{index:04d}.pt", fingerprint, self.every_steps, self.every_seconds)


def current_slot(description: str, config: Any, size: int) -> Optional[ResumeSlot]:
    """The next slot of the active build's plan (``None`` outside a build, e.g. in library use)."""
    plan = _active.get()
    return plan.next_slot(description, config, size) if plan is not None else None


@contextlib.contextmanager
def resumable(folder: Path, fingerprint: str, every_steps: int = 0,
              every_seconds: float = DEFAULT_EVERY_SECONDS) -> Iterator[ResumePlan]:
    """Make the training runs inside the block resumable from ``folder`` (the caller removes the
    folder once the artifact is complete; a failed or killed build keeps it)."""
    plan = ResumePlan(folder, fingerprint, every_steps, every_seconds)
    token = _active.set(plan)
    try:
        yield plan
    finally:
        _active.reset(token)


def parse_every(text: str) -> tuple[int, float]:
    """``"500"`` -> every 500 steps; ``"10min"``/``"30s"`` -> every so many seconds; ``"0"`` -> never."""
    from .errors import ClipbenchError

    value = text.strip().lower()
    try:
        if value.endswith("min"):
            return 0, float(value[:-3]) * 60
        if value.endswith("s"):
            return 0, float(value[:-1])
        steps = int(value)
    except ValueError:
        raise ClipbenchError(f"--save-every {text!r}: expected a step count (500) or a time (10min, 30s)") from None
    if steps < 0:
        raise ClipbenchError(f"--save-every must not be negative, got {text!r}")
    return steps, 0.0
