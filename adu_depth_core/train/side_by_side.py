"""Independent trainings at once on a small CPU machine: one process per run, the cores split evenly.

The CPU recipes' networks are small, and PyTorch's intra-op threads scale poorly on them: on 2 cores a
run at 1 thread goes at well over half the speed of the same run at 2 threads, so two runs side by side
finish sooner than the same two one after the other (docs/BENCHMARKS.md). Each run keeps a fixed thread
count from start to end, so its numbers do not depend on when its neighbours finish.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from adu_depth_core.train.config import TrainConfig

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 60.0  # how often the runs' steps are logged (each has no progress bar of its own)


@dataclasses.dataclass(frozen=True)
class TrainJob:
    """One run for `train.run.train`: its config and where it resumes from (None: a fresh run)."""

    cfg: TrainConfig
    resume: Path | None = None
    overwrite: bool = False

    @property
    def name(self) -> str:
        return Path(self.cfg.out_dir).name


def cpu_cores() -> int:
    """The cores this process may use (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def train_side_by_side(jobs: Sequence[TrainJob], cores: int | None = None) -> None:
    """Train `jobs` (in this order, as processes free up), at most one per core at a time.

    With one job or one core the jobs run here, one after the other, with torch's own thread count.
    Otherwise each runs in a fresh process with `cores // workers` threads and no progress bar (two bars
    would garble one terminal); its log lines go to this terminal and to its `train.log`. The first
    failure is raised once the jobs already running have finished; jobs not yet started are not run.
    """
    cores = cpu_cores() if cores is None else cores
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    workers = min(len(jobs), cores)
    if workers <= 1:
        for job in jobs:
            _train(job)
        return
    import multiprocessing
    import time
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = cores // workers
    log.info("training %s side by side, %d thread(s) each", ", ".join(j.name for j in jobs), threads)
    # spawn, not fork: a forked child would inherit this process's torch thread pools and locks
    context = multiprocessing.get_context("spawn")
    start = time.perf_counter()
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_set_threads, initargs=(threads,))
    with pool:
        quiet = (dataclasses.replace(j, cfg=dataclasses.replace(j.cfg, progress=False)) for j in jobs)
        futures = {pool.submit(_train_in_worker, job): job for job in quiet}
        try:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=PROGRESS_EVERY_S, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()
                    log.info("%s finished after %.0f s", futures[future].name, time.perf_counter() - start)
                if pending and not done:  # a minute without news
                    log.info("  %s", ", ".join(_progress(futures[f]) for f in pending))
        except BaseException:
            for future in futures:
                future.cancel()  # the ones not started; the running ones finish (or fail) first
            raise


def _progress(job: TrainJob) -> str:
    """'name step/steps' from the run's `metrics.jsonl` (the last record its writer flushed)."""
    path = Path(job.cfg.out_dir) / "metrics.jsonl"
    step = 0
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        try:
            step = json.loads(lines[-1])["step"] if lines else 0
        except (json.JSONDecodeError, KeyError):  # a line being written
            pass
    return f"{job.name} step {step}/{job.cfg.steps}"


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _train_in_worker(job: TrainJob) -> None:
    """`_train` in a pool process, its log lines to stderr tagged with the run's name."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"%(asctime)s [{job.name}] %(message)s", datefmt="%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    _train(job)


def _train(job: TrainJob) -> None:
    from adu_depth_core.train.run import train

    train(job.cfg, resume=job.resume, overwrite=job.overwrite)
