"""Run one training: the process group, the run's log file, log lines above the progress bar, and the
summary `adu-depth train`, the ablation and the demo read."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from adu_depth_core.train import distributed as du
from adu_depth_core.train.config import TrainConfig
from adu_depth_core.train.engine import DepthTrainer
from adu_depth_core.train.loop import HookBase


def train(
    cfg: TrainConfig,
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
    dist_info: du.DistInfo | None = None,
    extra_hooks: list[HookBase] | tuple[HookBase, ...] = (),
) -> dict[str, Any]:
    """Run one training (on this process, or as one rank of a `torchrun` job); returns a summary.

    Without `dist_info` the process group is set up from the environment and torn down at the end; a
    caller that trains several runs in one job (the ablation) sets it up once and passes it in.
    """
    own_dist = dist_info is None
    dist_info = du.setup(cfg.device) if dist_info is None else dist_info
    if not dist_info.is_main:  # one log per job: other ranks report warnings and errors only
        logging.getLogger("adu_depth_core").setLevel(logging.WARNING)
    try:
        trainer = DepthTrainer(
            cfg, resume=resume, overwrite=overwrite, dist_info=dist_info, extra_hooks=extra_hooks
        )
        _attach_file_log(trainer)
        redirect = contextlib.nullcontext()
        if cfg.progress and dist_info.is_main:
            from tqdm.contrib.logging import logging_redirect_tqdm

            redirect = logging_redirect_tqdm()  # log lines above the progress bar, not through it
        try:
            with redirect:
                trainer.train()
        finally:
            trainer.close()
        summary = {
            "rank": dist_info.rank,
            "out_dir": str(trainer.out_dir),
            "steps": trainer.iter,
            "last": str(trainer.last_checkpoint),
            "best": str(trainer.best_checkpoint) if trainer.best_checkpoint else None,
            "best_metric": cfg.best_metric,
            "best_value": trainer.eval_hook.best_value if trainer.eval_hook else None,
            "focal_px": trainer.focal.mean,
            "val": trainer.storage.latest_val,
        }
        du.barrier()
        return summary
    finally:
        if own_dist:
            du.cleanup()


def _attach_file_log(trainer: DepthTrainer) -> None:
    if not trainer.dist.is_main:
        return
    handler = logging.FileHandler(trainer.out_dir / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("adu_depth_core")
    root.addHandler(handler)
    trainer.register_hooks([_RemoveHandler(root, handler)])


class _RemoveHandler(HookBase):
    def __init__(self, logger: logging.Logger, handler: logging.Handler):
        self.logger, self.handler = logger, handler

    def after_train(self) -> None:
        self.logger.removeHandler(self.handler)
        self.handler.close()
