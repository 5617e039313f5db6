"""Weights stored as what training changed, for shipping a pretrained model in a few megabytes.

AdamW (Loshchilov & Hutter, ICLR 2019; ``torch.optim.AdamW``) multiplies every decayed weight by
``1 - lr_t * weight_decay`` at every step ``t``, whether or not the weight had a gradient. A row of
a 2-D weight that never had one (above all the token embedding of a word the captions never use)
is therefore its seeded initial value multiplied by those factors one step at a time in float32,
and can be rebuilt exactly from the initialisation and the per-step factors. A compact state
keeps every other tensor as it is, and for each such 2-D weight only the rows that differ from
that replay, with their indices. :func:`expand` rebuilds the full state bit for bit; callers
check that with a sha256 of the rebuilt checkpoint.

On the ``tiny`` preset 6.3M of the model's 7.3M weights are the token embedding (49,408 rows of
128), and 81 of its rows are ever used by the captions, so the compact file is about 4 MB
instead of 29.
"""

from __future__ import annotations

import torch

#: Key of the per-step decay factors (float64, one per optimizer step) in a compact state.
FACTORS_KEY = "decay_factors"
_ROWS, _VALUES = "::rows", "::values"
#: Rows multiplied per pass of the replay: a block this size stays in the CPU cache across steps
#: (one thread: the multiplications are too small to share, 12 s for the tiny token embedding).
_BLOCK_ROWS = 8192


def decay_factors(lr_multipliers: list[float], lr: float, weight_decay: float) -> list[float]:
    """AdamW's per-step decay ``1 - lr * multiplier * weight_decay`` (the order of operations of
    ``LambdaLR`` and ``AdamW``, so that the float rounding matches training's)."""
    return [1 - lr * m * weight_decay for m in lr_multipliers]


def replay_decay(initial: torch.Tensor, factors: list[float]) -> torch.Tensor:
    """``initial`` multiplied in place-order by every factor, as AdamW does to a weight without gradient."""
    out = initial.detach().clone()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for start in range(0, out.shape[0], _BLOCK_ROWS):
            block = out[start : start + _BLOCK_ROWS]
            for factor in factors:
                block.mul_(factor)
    finally:
        torch.set_num_threads(threads)
    return out


def compact(state: dict[str, torch.Tensor], initial: dict[str, torch.Tensor],
            factors: list[float]) -> dict[str, torch.Tensor]:
    """The compact form of ``state``: 2-D float32 weights with fewer than half their rows changed
    from :func:`replay_decay` of ``initial`` keep only those rows; every other tensor is kept whole."""
    out = {FACTORS_KEY: torch.tensor(factors, dtype=torch.float64)}
    for name, value in state.items():
        if value.ndim == 2 and value.dtype == torch.float32 and name in initial:
            replayed = replay_decay(initial[name], factors)
            changed = (replayed != value).any(dim=1).nonzero().flatten()
            if len(changed) < value.shape[0] // 2:
                out[name + _ROWS] = changed.to(torch.int64)
                out[name + _VALUES] = value[changed].contiguous()
                continue
        out[name] = value.contiguous()
    return out


def expand(stored: dict[str, torch.Tensor], initial: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The full state of a :func:`compact` one, given the same seeded ``initial`` state."""
    factors = stored[FACTORS_KEY].tolist()
    state = {}
    for key, value in stored.items():
        if key == FACTORS_KEY or key.endswith(_VALUES):
            continue
        if key.endswith(_ROWS):
            name = key[: -len(_ROWS)]
            if name not in initial:
                raise KeyError(f"{name} is stored as changed rows but the initial state has no such tensor")
            full = replay_decay(initial[name], factors)
            full[value] = stored[name + _VALUES]
            state[name] = full
        else:
            state[key] = value
    return state
