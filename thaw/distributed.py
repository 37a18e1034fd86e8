"""Data-parallel fine-tuning across processes (``torchrun``/``accelerate launch``).

When the launcher sets ``WORLD_SIZE`` > 1, each process trains on its share of every
epoch's batches and gradients are averaged before each step (gloo on CPU, NCCL on CUDA),
so all processes hold the same weights; only rank 0 writes checkpoints and models.
Without a launcher everything here is a no-op.
"""

from __future__ import annotations

import os


def init_from_environment(device_type: str) -> bool:
    """Join the process group the launcher describes; True when running distributed."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return True


def rank_and_size() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return rank_and_size()[0] == 0


def shard(batches: list) -> list:
    """This process's share of the batches; every process gets the same count."""
    rank, size = rank_and_size()
    if size == 1:
        return batches
    usable = len(batches) // size * size
    return batches[rank:usable:size]


def average_gradients(params) -> None:
    """All-reduce and average the gradients of ``params`` across processes."""
    import torch.distributed as dist

    _, size = rank_and_size()
    if size == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= size


def barrier() -> None:
    import torch.distributed as dist

    if rank_and_size()[1] > 1:
        dist.barrier()


def agree(value: int) -> int:
    """Rank 0's ``value`` in every process (a decision all processes must share)."""
    import torch
    import torch.distributed as dist

    if rank_and_size()[1] == 1:
        return value
    device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([value], dtype=torch.long, device=device)
    dist.broadcast(tensor, src=0)
    return int(tensor.item())
