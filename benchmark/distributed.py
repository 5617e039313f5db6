"""Data-parallel stages: several processes (one per GPU) train one stage together.

Launched by ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``) or
by SLURM with one task per GPU (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``; the
first node of the job is the rendezvous). Every rank runs the same cells with the same seeds, so
every rank draws the same batch order and the same poisoned rows; each rank trains on its
contiguous shard of every global batch. :func:`gather` collects the shards' features with their
gradients, so CLIP's loss is computed over the global batch
in the same order as on one process; :func:`average_gradients` averages the ranks' gradients,
which makes each step the single-process step of the global batch (each rank's loss is the whole
batch's, so the sum over ranks counts every term ``world`` times). Only rank 0 writes artifacts,
resume states and results (:meth:`clipbench.stages.workspace.Workspace.artifact`).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from .errors import ClipbenchError


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` when not distributed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def _launch_env() -> dict[str, str]:
    """torchrun's variables, or SLURM's translated to them (empty when neither launched us)."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return {k: env[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK") if k in env}
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        nodes = env.get("SLURM_JOB_NODELIST", "localhost")
        if "MASTER_ADDR" not in env:
            try:
                from submitit.slurm.slurm import _parse_node_list

                os.environ["MASTER_ADDR"] = _parse_node_list(nodes)[0]
            except Exception:  # noqa: BLE001 - a plain host name
                os.environ["MASTER_ADDR"] = nodes.split(",")[0]
        os.environ.setdefault("MASTER_PORT", str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000))
        return {"RANK": env["SLURM_PROCID"], "WORLD_SIZE": env["SLURM_NTASKS"], "LOCAL_RANK": env.get("SLURM_LOCALID", "0")}
    return {}


def init_from_env(device: str = "auto") -> tuple[int, int]:
    """Join the process group this process was launched into (nothing when launched alone).

    NCCL on CUDA, gloo on CPU. Returns ``(rank, world_size)``. With CUDA, each rank takes the GPU
    of its local rank."""
    import torch.distributed as dist

    launch = _launch_env()
    if not launch or int(launch["WORLD_SIZE"]) <= 1 or dist.is_initialized():
        return world()
    os.environ.update(launch)
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(launch.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return world()


def local_device(device: str) -> str:
    """The device string of this rank: ``cuda:<local rank>`` for CUDA under several ranks."""
    rank, size = world()
    if size > 1 and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{torch.cuda.current_device()}"
    return device


def shard(rows: Any, batch_size: int) -> Any:
    """This rank's contiguous share of a global batch's ``rows``."""
    rank, size = world()
    if size == 1:
        return rows
    if batch_size % size:
        raise ClipbenchError(f"batch_size {batch_size} does not split over {size} ranks: use a multiple of {size}")
    per = batch_size // size
    return rows[rank * per : (rank + 1) * per]


def gather(features: torch.Tensor) -> torch.Tensor:
    """Every rank's ``features`` concatenated in rank order, gradients flowing back to each rank's
    own shard; ``features`` itself on one process."""
    if world()[1] == 1:
        return features
    return _Gather.apply(features)


class _Gather(torch.autograd.Function):
    """All-gather whose backward sums every rank's gradient of the gathered tensor and returns
    this rank's slice (an all-reduce, which NCCL and gloo both implement)."""

    @staticmethod
    def forward(ctx, features: torch.Tensor) -> torch.Tensor:  # noqa: D102
        import torch.distributed as dist

        parts = [torch.empty_like(features) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, features.contiguous())
        ctx.rows = features.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def average_gradients(model: torch.nn.Module) -> None:
    """Average the gradients of ``model`` over the ranks (one flat all-reduce)."""
    import torch.distributed as dist

    rank, size = world()
    if size == 1:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    import torch.distributed as dist

    if world()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    import torch.distributed as dist

    if world()[1] > 1:
        dist.barrier()
