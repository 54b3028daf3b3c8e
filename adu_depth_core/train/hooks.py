"""Training hooks (detectron2 style): the loop calls them; they hold everything that is not a step.

Order matters and is fixed by `default_hooks`: the LR schedule steps first, then validation (which may
save `best.pt`), then periodic checkpoints, then the writers that report what the others produced.
Every hook runs on every rank; hooks that need collective operations (checkpoints gather RNG states and
focal statistics, the writer averages losses over ranks) do them on all ranks and write only on rank 0.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from adu_depth_core.fileio import atomic_write_bytes, remove_stale_temps
from adu_depth_core.paths import naming
from adu_depth_core.train import distributed as du
from adu_depth_core.train.loop import HookBase
from adu_depth_core.train.state import set_determinism

log = logging.getLogger(__name__)

LOG_KEYS = ("abs_rel", "sq_rel", "rmse", "d1", "ause_abs_rel", "dense_abs_rel", "dense_rmse", "n_images")
CHECKPOINT_GLOBS = ("last.pt", "best.pt", "ckpt_*.pt")  # what PeriodicCheckpointer and EvalHook write
HIGHER_IS_BETTER = ("d1", "d2", "d3", "a1", "a2", "a3", "aurg", "delta1", "delta2", "delta3")


def metric_mode(name: str) -> str:
    """'max' for accuracy-like metrics (δ thresholds, AURG), else 'min'."""
    base = name.removeprefix("dense_")
    return "max" if base.startswith(HIGHER_IS_BETTER) else "min"


class PolynomialLR(LRScheduler):
    """NeWCRFs' per-step polynomial decay, lr(t) = (base − end)·(1 − t/T)^power + end, with optional
    linear warm-up over the first `warmup_steps` steps. `t` counts optimiser steps taken so far."""

    def __init__(self, optimizer, total_steps: int, end_lr: float, power: float = 0.9, warmup_steps: int = 0):
        if total_steps <= 0:
            raise ValueError(f"total_steps must be > 0, got {total_steps}")
        self.total_steps = int(total_steps)
        self.end_lr = float(end_lr)
        self.power = float(power)
        self.warmup_steps = int(warmup_steps)
        super().__init__(optimizer)

    def lr_at(self, base_lr: float, step: int) -> float:
        t = min(max(step, 0), self.total_steps)
        lr = (base_lr - self.end_lr) * (1.0 - t / self.total_steps) ** self.power + self.end_lr
        if self.warmup_steps and step < self.warmup_steps:
            lr *= (step + 1) / self.warmup_steps
        return lr

    def get_lr(self) -> list[float]:
        return [self.lr_at(base, self.last_epoch) for base in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        # total_steps comes from the config of the run being resumed, not from the checkpoint
        return {k: v for k, v in super().state_dict().items() if k != "total_steps"}


class LRSchedulerHook(HookBase):
    """Steps the scheduler after every optimiser step and records the learning rate."""

    def __init__(self, scheduler: LRScheduler):
        self.scheduler = scheduler

    def before_step(self) -> None:
        self.trainer.storage.put_scalar("lr", self.scheduler.get_last_lr()[0])

    def after_step(self) -> None:
        self.scheduler.step()


class EvalHook(HookBase):
    """Validation every `every` steps and after the last step; keeps `best.pt` by `metric`.

    `eval_fn()` returns `(metrics, images)` on rank 0 (other ranks may return anything); the metrics are
    broadcast so every rank takes the same best/not-best decision and joins the checkpoint save.
    """

    def __init__(self, every: int, eval_fn, metric: str = "abs_rel", save_best: bool = True):
        self.every = every
        self.eval_fn = eval_fn
        self.metric = metric
        self.mode = metric_mode(metric)
        self.save_best = save_best
        self.best_value: float | None = None
        self.best_step: int | None = None
        self._last_eval_iter = -1

    def _due(self) -> bool:
        it = self.trainer.iter
        return self.is_last_step or (self.every > 0 and it % self.every == 0)

    def after_step(self) -> None:
        if self._due():
            self.evaluate()

    def evaluate(self) -> dict[str, float]:
        t = self.trainer
        if self._last_eval_iter == t.iter:
            return t.storage.latest_val
        start = time.perf_counter()
        if t.dist.is_main:
            metrics, images = self.eval_fn()
        else:
            metrics, images = None, {}
        du.barrier()
        metrics = du.broadcast_object(metrics)
        self._last_eval_iter = t.iter
        t.storage.put_val(metrics, images if t.dist.is_main else {}, t.iter)
        if self.metric not in metrics:  # e.g. no validation image had a valid GT pixel
            log.warning(
                "step %d: validation produced no %r (metrics: %s); best.pt not updated",
                t.iter,
                self.metric,
                sorted(metrics),
            )
        value = float(metrics.get(self.metric, math.nan))
        improved = math.isfinite(value) and (
            self.best_value is None
            or (value < self.best_value if self.mode == "min" else value > self.best_value)
        )
        if t.dist.is_main:
            log.info(
                "step %d validation (%.1fs): %s%s",
                t.iter,
                time.perf_counter() - start,
                ", ".join(f"{k}={metrics[k]:.4g}" for k in LOG_KEYS if k in metrics),
                " (new best)" if improved else "",
            )
        if improved:
            self.best_value, self.best_step = value, t.iter
            if self.save_best:
                t.save_checkpoint("best.pt")
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {"best_value": self.best_value, "best_step": self.best_step, "metric": self.metric}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("metric") == self.metric:
            self.best_value, self.best_step = state.get("best_value"), state.get("best_step")
        else:
            log.warning(
                "best metric changed from %s to %s: best.pt restarts", state.get("metric"), self.metric
            )


class PeriodicCheckpointer(HookBase):
    """`ckpt_XXXXXXX.pt` every `every` steps (also copied to `last.pt`); `last.pt` after the last step."""

    def __init__(self, every: int, out_dir: str | Path | None = None):
        self.every = every
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self._saved_iter = -1

    def before_train(self) -> None:
        """Remove the temp files of checkpoints whose writer was killed (`.best.pt.XXXX.tmp`)."""
        if self.out_dir is not None and self.trainer.dist.is_main and self.out_dir.is_dir():
            for tmp in remove_stale_temps(self.out_dir, CHECKPOINT_GLOBS):
                log.info("removed %s, left by an interrupted checkpoint write", tmp)

    def after_step(self) -> None:
        it = self.trainer.iter
        if self.every > 0 and it % self.every == 0:
            self.trainer.save_checkpoint(f"ckpt_{it:07d}.pt", also_last=True)
            self._saved_iter = it
        elif self.is_last_step:
            self.trainer.save_checkpoint("last.pt")
            self._saved_iter = it

    def after_train(self) -> None:
        """Also saves `last.pt` when a single-process run stops early (Ctrl-C): resumable at that step.
        After an exception in a multi-process run the other ranks may be gone, so nothing is saved."""
        t = self.trainer
        if self._saved_iter == t.iter or t.iter <= t.start_iter:
            return
        if t.exception is not None and (t.dist.distributed or not isinstance(t.exception, KeyboardInterrupt)):
            return
        t.save_checkpoint("last.pt")
        self._saved_iter = t.iter


class MetricsWriter(HookBase):
    """Loss terms (averaged over the last `every` steps and over ranks), lr, throughput and validation
    results to TensorBoard (`<out>/tb`) and `<out>/metrics.jsonl` (one JSON object per line)."""

    def __init__(self, out_dir: str | Path, every: int, tensorboard: bool = True):
        self.out_dir = Path(out_dir)
        self.every = every
        self.tensorboard = tensorboard
        self._writer = None
        self._jsonl = None
        self._sums: dict[str, float] = defaultdict(float)
        self._count = 0
        self._t0 = time.perf_counter()
        self._steps0 = 0
        self._val_written = -1

    def before_train(self) -> None:
        self._t0 = time.perf_counter()
        self._steps0 = self.trainer.iter
        if self.trainer.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            # a resumed run appends after the checkpoint's step; a fresh run (also --overwrite) starts again
            path = self.out_dir / "metrics.jsonl"
            if self.trainer.iter > 0:
                truncate_metrics(path, self.trainer.iter)
            self._jsonl = open(path, "a" if self.trainer.iter > 0 else "w", encoding="utf-8")
            if self.tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.out_dir / "tb"), purge_step=self.trainer.iter + 1)

    def after_step(self) -> None:
        storage = self.trainer.storage
        for k, v in storage.latest_losses.items():
            self._sums[k] += v
        self._count += 1
        if self.every > 0 and (self.trainer.iter % self.every == 0 or self.is_last_step):
            self._write_train()
        if storage.val_iter == self.trainer.iter and self._val_written != storage.val_iter:
            self._write_val()

    def _write_train(self) -> None:
        keys = sorted(self._sums)
        local = torch.tensor([self._sums[k] for k in keys] + [float(self._count)], dtype=torch.float64)
        reduced = du.all_reduce_sum(
            local.to(self.trainer.dist.device) if du.is_distributed() else local
        ).cpu()
        count = max(float(reduced[-1]), 1.0)
        scalars = {f"loss/{k}": float(reduced[i]) / count for i, k in enumerate(keys)}
        self._sums.clear()
        self._count = 0
        now = time.perf_counter()
        steps = self.trainer.iter - self._steps0
        scalars["lr"] = self.trainer.storage.scalars.get("lr", float("nan"))
        if steps > 0:
            scalars["perf/steps_per_s"] = steps / max(now - self._t0, 1e-9)
            scalars["perf/samples_per_s"] = scalars["perf/steps_per_s"] * self.trainer.cfg_batch_size
        if "grad_norm" in self.trainer.storage.scalars:
            scalars["grad_norm"] = self.trainer.storage.scalars["grad_norm"]
        self._t0, self._steps0 = now, self.trainer.iter
        if not self.trainer.dist.is_main:
            return
        it = self.trainer.iter
        if self._writer is not None:
            for k, v in scalars.items():
                self._writer.add_scalar(k, v, it)
        self._emit({"step": it, "epoch": self.trainer.epoch, "kind": "train", **scalars})

    def _write_val(self) -> None:
        storage = self.trainer.storage
        self._val_written = storage.val_iter
        if not self.trainer.dist.is_main:
            return
        it = self.trainer.iter
        numbers = {k: float(v) for k, v in storage.latest_val.items() if isinstance(v, (int, float))}
        if self._writer is not None:
            for k, v in numbers.items():
                self._writer.add_scalar(f"val/{k}", v, it)
            for name, img in storage.val_images.items():
                self._writer.add_image(f"val/{name}", img, it, dataformats="HWC")
            self._writer.flush()
        self._emit({"step": it, "kind": "val", **numbers})

    def _emit(self, record: dict[str, Any]) -> None:
        if self._jsonl is not None:
            with naming(self.out_dir / "metrics.jsonl"):  # a full disk names the file
                self._jsonl.write(json.dumps(record) + "\n")
                self._jsonl.flush()

    def after_train(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None


def truncate_metrics(path: Path, step: int) -> int:
    """Drop the records of `metrics.jsonl` after `step` (written after the checkpoint a run resumes
    from, and written again by the resumed run) and a torn last line; atomic. Returns how many."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] > step:
            dropped += 1
            continue
        kept.append(line)
    if dropped:
        atomic_write_bytes(path, "".join(f"{line}\n" for line in kept).encode("utf-8"))
        log.info("%s: dropped %d record(s) after step %d (the run resumes there)", path, dropped, step)
    return dropped


class ProgressBar(HookBase):
    """tqdm bar on rank 0 with the smoothed loss terms, lr and ETA."""

    def __init__(self, enabled: bool = True, smoothing: int = 20):
        self.enabled = enabled
        self.smoothing = smoothing
        self._bar = None
        self._ema: dict[str, float] = {}

    def before_train(self) -> None:
        if not (self.enabled and self.trainer.dist.is_main):
            return
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=self.trainer.max_iter,
            initial=self.trainer.iter,
            desc=f"train {self.trainer.stage}",
            unit="step",
            dynamic_ncols=True,
            mininterval=1.0,
        )

    def after_step(self) -> None:
        if self._bar is None:
            return
        alpha = 2.0 / (self.smoothing + 1)
        for k, v in self.trainer.storage.latest_losses.items():
            self._ema[k] = v if k not in self._ema else (1 - alpha) * self._ema[k] + alpha * v
        post = {k: f"{v:.3g}" for k, v in self._ema.items()}
        post["lr"] = f"{self.trainer.storage.scalars.get('lr', float('nan')):.2e}"
        self._bar.set_postfix(post, refresh=False)
        self._bar.update(1)

    def after_train(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class DeterminismHook(HookBase):
    """Deterministic kernels while this trainer runs; the previous global setting is restored after."""

    def before_train(self) -> None:
        self._saved = (
            torch.are_deterministic_algorithms_enabled(),
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark,
        )
        set_determinism(True)

    def after_train(self) -> None:
        enabled, cudnn_det, bench = self._saved
        torch.use_deterministic_algorithms(enabled)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn_det, bench
