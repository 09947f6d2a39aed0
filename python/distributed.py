"""torch.distributed for the trainer: process group from torchrun's environment, and collectives that are
identities in a single process.

``python -m python.train`` started by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) calls :func:`setup`;
everything else here asks the default process group for rank and world size, so code that uses these helpers
runs unchanged, with no communication at all, in a single process.

Conventions (see docs/distributed.md):

- A global minibatch of ``total`` rows is cut into ``world_size`` contiguous shards with ``Tensor.tensor_split``
  (sizes differ by at most one); rank r holds shard r. :func:`gather_rows` puts the shards back in rank order, so
  the gathered rows are exactly the global minibatch.
- Each rank back-propagates its *contribution* to the global loss (contributions of all ranks add up to the loss
  one process computes on the global minibatch) and :func:`sync_gradients` sums the gradients over ranks.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")


# ----- process group


def setup(timeout_minutes: float = 60.0) -> bool:
    """Join the process group that ``torchrun`` describes in ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR``/``MASTER_PORT``; returns whether this call started it (then :func:`close` ends it).

    Backend: gloo on CPU-only machines; with CUDA ``cpu:gloo,cuda:nccl`` (NCCL for every CUDA tensor, gloo for
    CPU tensors and objects, so ``--device cpu`` keeps working on a GPU machine). Without torchrun's variables, or
    with ``WORLD_SIZE=1``, nothing is set up and every helper here is an identity.
    """
    if dist.is_available() and dist.is_initialized():
        return False
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch was built without torch.distributed")
    missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE={world} but {', '.join(missing)} not set: start multi-process runs with torchrun")
    local = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        if local < torch.cuda.device_count():
            torch.cuda.set_device(local)
        backend = "cpu:gloo,cuda:nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    return True


def close(*, wait: bool = True) -> None:
    """Leave the process group, after a last barrier when ``wait`` (no rank leaves while another still talks;
    after an error, skip it: the other ranks may never get there)."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def is_distributed() -> bool:
    """Whether a process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    """This process's index on its node (torchrun's ``LOCAL_RANK``); 0 in a single process."""
    return int(os.environ.get("LOCAL_RANK", "0")) if is_distributed() else 0


def is_main() -> bool:
    """Rank 0: the one process that prints, shows progress bars and writes files."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def check_batch_size(batch_size: int) -> None:
    """``batch_size`` is the global minibatch: it must give every rank's shard two samples."""
    if batch_size < 2 * world_size():
        raise ValueError(f"batch_size {batch_size} is the global minibatch, cut into {world_size()} shards (one per "
                         f"process); it must hold at least 2 samples per process ({2 * world_size()})")


def device_for(name: str) -> torch.device:
    """The device of this rank for ``--device name``: ``auto`` and ``cuda`` become ``cuda:LOCAL_RANK`` (one GPU per
    rank) when several processes run; an explicit ``cuda:N`` is refused then, since ranks would share a GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"--device {name}: not a device (give auto, cpu, cuda or cuda:N): {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: this torch has no usable CUDA device (torch.cuda.is_available() is False)")
    if device.type == "cuda" and is_distributed():
        if device.index is not None:
            raise ValueError(f"--device {name}: under torchrun give --device cuda (or auto): each rank uses "
                             "cuda:LOCAL_RANK")
        if local_rank() >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local_rank()} but this node has {torch.cuda.device_count()} GPUs: start "
                             "at most one process per GPU (--nproc-per-node)")
        device = torch.device("cuda", local_rank())
    return device


# ----- running things on one rank


def from_main(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 only, its result (or the exception it raised, even ``SystemExit``) sent to every
    rank, so all ranks go on, or stop, together. Results must be picklable."""
    if not is_distributed():
        return fn()
    payload: list[Any] = [None]
    if is_main():
        try:
            payload = [(True, fn())]
        except BaseException as exc:  # noqa: BLE001 - re-raised on every rank below
            payload = [(False, exc)]
    dist.broadcast_object_list(payload, src=0)
    ok, value = payload[0]
    if not ok:
        if not is_main():
            value.raised_on_main = True  # a copy of rank 0's error: see raised_on_main()
        raise value
    return value


def raised_on_main(exc: BaseException) -> bool:
    """Whether ``exc`` is rank 0's error re-raised here by :func:`from_main` (rank 0 reports it; this rank need not)."""
    return getattr(exc, "raised_on_main", False)


@contextlib.contextmanager
def node_main_first() -> Iterator[None]:
    """The body runs on each node's local rank 0 first, then on that node's other ranks (so one process per node
    fills a shared cache before the others read it)."""
    first = local_rank() == 0
    if not first:
        barrier()
    try:
        yield
    finally:
        if first:
            barrier()


# ----- tensors


def shard_sizes(total: int) -> list[int]:
    """Rows of each rank's shard of a global minibatch of ``total`` rows (``tensor_split``: the first
    ``total % world`` ranks hold one more)."""
    k = world_size()
    return [total // k + (r < total % k) for r in range(k)]


def shard(rows: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous piece of ``rows (total, ...)`` (all of it in a single process)."""
    return rows.tensor_split(world_size())[rank()] if is_distributed() else rows


def gather_rows(x: torch.Tensor, total: int) -> torch.Tensor:
    """Rows of every rank's shard, in rank order: ``x (n_rank, ...) -> (total, ...)``, the global minibatch.

    Differentiable when ``x`` requires grad (``torch.distributed.nn.functional.all_gather``): the backward sums,
    over ranks, the gradient that each rank's copy of the result sends back to this rank's rows. A loss that every
    rank computes in full on the gathered rows must therefore be divided by the world size (see
    :func:`replicated`) for the summed parameter gradients to be those of one process.
    """
    if not is_distributed():
        if len(x) != total:
            raise ValueError(f"gather_rows: {len(x)} rows in a single process, expected total={total}")
        return x
    sizes = shard_sizes(total)
    if len(x) != sizes[rank()]:
        raise ValueError(f"gather_rows: rank {rank()} holds {len(x)} rows, its shard of {total} has {sizes[rank()]}")
    pad = sizes[0] - len(x)
    padded = torch.cat([x, x.new_zeros((pad, *x.shape[1:]))]) if pad else x.contiguous()
    if x.requires_grad and torch.is_grad_enabled():
        with warnings.catch_warnings():  # deprecated in favour of a private API, still the differentiable one
            warnings.filterwarnings("ignore", message=".*all_gather is deprecated", category=FutureWarning)
            parts = torch.distributed.nn.functional.all_gather(padded)
    else:
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)])


def replicated(loss: torch.Tensor) -> torch.Tensor:
    """This rank's contribution to a loss that every rank computes in full (on gathered rows): ``loss / world``."""
    return loss / world_size() if is_distributed() else loss


def sync_gradients(params: Iterable[torch.Tensor]) -> None:
    """Sum the gradients of ``params`` over ranks, in one all-reduce per (device, dtype).

    A parameter with no gradient on this rank takes part with zeros and keeps ``grad=None`` (every rank builds
    the same graph, so the same parameters have gradients everywhere).
    """
    if not is_distributed():
        return
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for p in params:
        groups.setdefault((p.device, p.dtype), []).append(p)
    for group in groups.values():
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in group])
        dist.all_reduce(flat)
        offset = 0
        for p in group:
            if p.grad is not None:
                p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()


def sum_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """``values`` summed key by key over ranks (every rank must pass the same keys); unchanged in one process."""
    if not is_distributed():
        return values
    keys = sorted(values)
    flat = torch.tensor([values[k] for k in keys], dtype=torch.float64)  # CPU: gloo carries it under both setups
    dist.all_reduce(flat)
    return dict(zip(keys, flat.tolist(), strict=True))


def broadcast_module(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers into every rank's ``module`` (as DDP does when it wraps one)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def average_batchnorm_stats(module: nn.Module) -> None:
    """Average BatchNorm running means and variances over ranks. Ranks normalise with their own shard's statistics
    where ``nn.SyncBatchNorm`` cannot run (CPU), so their running statistics drift apart; the trainer calls this at
    the end of every epoch so that evaluation and checkpoints see one model."""
    if not is_distributed():
        return
    with torch.no_grad():
        for m in module.modules():
            # frozen BatchNorms (eval mode inside a training net) keep their statistics: nothing to average
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm) and m.training:
                for buffer in (m.running_mean, m.running_var):
                    if buffer is not None:
                        dist.all_reduce(buffer)
                        buffer.div_(world_size())
