"""DDP plumbing: one entry point for 1 or N processes (`torchrun` sets WORLD_SIZE/RANK/LOCAL_RANK).

`setup()` initialises the default process group only when WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA);
everything else here degrades to a no-op in a single process. The sampler gives every rank a disjoint
shard of one permutation that is a pure function of (seed, epoch), and can start mid-epoch so a resumed
run consumes exactly the batches an uninterrupted run would have.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from adu_depth_core.train.state import derive_seed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def setup(device: str = "auto") -> DistInfo:
    """Pick the device and join the process group when launched by torchrun with several processes.

    Args:
        device: "auto" (CUDA when available), "cpu" or "cuda".
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda requested but CUDA is not available (use device=auto or cpu)")
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        kwargs = {"device_id": dev} if use_cuda else {}
        # long timeout: validation runs on rank 0 while the other ranks wait in a barrier
        dist.init_process_group(
            backend=backend, rank=rank, world_size=world_size, timeout=timedelta(minutes=60), **kwargs
        )
        log.info("rank %d/%d joined the %s process group on %s", rank, world_size, backend, dev)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (identity in one process); returns a new tensor."""
    out = values.detach().clone()
    if is_distributed():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_reduce_min_max(lo: float, hi: float, device: torch.device) -> tuple[float, float]:
    if not is_distributed():
        return lo, hi
    t = torch.tensor([-lo, hi], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return -float(t[0]), float(t[1])


def broadcast_object(obj, src: int = 0):
    """Send a picklable object from `src` to every rank (identity in one process)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class ResumableShardedSampler(Sampler):
    """Shuffled (or sequential) indices for one rank; the order is a function of (seed, epoch) only.

    Each epoch draws one permutation of the dataset from `seed` and `epoch`, pads it by wrapping so
    every rank gets the same number of samples, and hands rank r the items r, r+W, r+2W, ...
    `set_epoch(e, start=k)` skips the first k samples of this rank's shard (used after a resume).

    Every item is `(index, epoch, sample_seed)`: `SeededDataset` tells the dataset the epoch (its
    augmentation is a function of (seed, epoch, index)) and seeds the global RNGs with `sample_seed`, so
    random augmentation does not depend on which worker or process loads the sample.
    """

    def __init__(
        self, length: int, *, rank: int = 0, world_size: int = 1, seed: int = 0, shuffle: bool = True
    ):
        if length <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.length = length
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.start = 0
        self.per_rank = math.ceil(length / world_size)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        if not 0 <= start <= self.per_rank:
            raise ValueError(f"start {start} outside this rank's shard of {self.per_rank}")
        self.epoch = epoch
        self.start = start

    def order(self, epoch: int) -> list[int]:
        """The global (all ranks) order of epoch `epoch`, padded to a multiple of the world size."""
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(derive_seed(self.seed, epoch, 0x5A3))
            perm = torch.randperm(self.length, generator=g).tolist()
        else:
            perm = list(range(self.length))
        total = self.per_rank * self.world_size
        while len(perm) < total:
            perm += perm[: total - len(perm)]
        return perm

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        shard = self.order(self.epoch)[self.rank :: self.world_size]
        for pos in range(self.start, len(shard)):
            global_pos = pos * self.world_size + self.rank
            yield shard[pos], self.epoch, derive_seed(self.seed, self.epoch, global_pos, 0xA46)

    def __len__(self) -> int:
        return self.per_rank - self.start


class SeededDataset(torch.utils.data.Dataset):
    """Wraps a dataset so item `(index, epoch, seed)` loads `dataset[index]` after `dataset.set_epoch(epoch)`
    (when it has one) with python/numpy/torch seeded from `seed`; plain indices pass through."""

    def __init__(self, dataset):
        self.dataset = dataset
        self._epoch: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        if not isinstance(item, tuple):
            return self.dataset[item]
        index, epoch, seed = item
        if epoch != self._epoch and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self._epoch = epoch
        in_worker = torch.utils.data.get_worker_info() is not None
        saved = None if in_worker else (random.getstate(), np.random.get_state(), torch.get_rng_state())
        random.seed(seed)
        np.random.seed(seed % (1 << 32))
        torch.manual_seed(seed)
        try:
            return self.dataset[index]
        finally:
            if saved is not None:  # in the main process, leave the training RNG streams untouched
                random.setstate(saved[0])
                np.random.set_state(saved[1])
                torch.set_rng_state(saved[2])


def seed_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: derive python/numpy seeds from the worker's torch seed."""
    seed = torch.initial_seed() % (1 << 32)
    random.seed(seed)
    np.random.seed(seed)
