"""Checks before a run reads data or builds networks: everything a user can get wrong in `out_dir`,
`--resume`, `init_from` and `teacher_checkpoint` fails here with one error naming the fix.

Each check is a function of the config and the checkpoint it reads; `engine.DepthTrainer` calls them in
order and keeps what they return (the checkpoint, and the provenance its checkpoints will record).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from adu_depth_core.checkpoint import load_checkpoint
from adu_depth_core.config import to_dict
from adu_depth_core.models import DepthNet, load_model
from adu_depth_core.train.config import TrainConfig
from adu_depth_core.train.hooks import CHECKPOINT_GLOBS

log = logging.getLogger(__name__)


def load_teacher(path: str | Path, device: torch.device | str = "cpu") -> tuple[DepthNet, dict[str, Any]]:
    """The frozen stereo teacher (eval mode, requires_grad off) and its checkpoint.

    Raises FileNotFoundError for a missing file and ValueError for a file that is not an adu_depth
    checkpoint or not a teacher.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"teacher checkpoint not found: {path} (train one with a *_teacher.yaml recipe, or fix "
            "teacher_checkpoint)"
        )
    ckpt = load_checkpoint(path)
    if ckpt.get("stage") != "teacher":
        raise ValueError(
            f"{path}: teacher_checkpoint must come from a teacher run (stage 'teacher'), "
            f"got stage {ckpt.get('stage')!r}"
        )
    teacher = load_model(ckpt).to(device)
    if teacher.in_chans != 6:
        raise ValueError(f"{path}: the teacher must take 6 input channels (stereo), got {teacher.in_chans}")
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher, ckpt


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """A fresh run may not start in a directory that holds checkpoints, unless `overwrite`."""
    if overwrite or not out_dir.is_dir():
        return
    found = sorted({p.name for g in CHECKPOINT_GLOBS for p in out_dir.glob(g)})
    if found:
        raise FileExistsError(
            f"{out_dir} already holds checkpoints ({', '.join(found[:3])}); resume with "
            f"--resume {out_dir / 'last.pt'}, choose another --out, or pass --overwrite"
        )


def check_resume(path: str | Path, cfg: TrainConfig) -> dict[str, Any]:
    """The checkpoint to resume from, checked against this run: same stage, model and distillation."""
    ckpt = load_checkpoint(path)
    if ckpt.get("stage") != cfg.stage:
        raise ValueError(f"{path}: is a {ckpt.get('stage')!r} checkpoint, this run trains the {cfg.stage}")
    missing = [k for k in ("optimizer", "scheduler", "step", "data_state", "rng") if k not in ckpt]
    if missing:
        raise ValueError(f"{path}: has no training state ({missing}); it cannot be resumed (export-only?)")
    mine, theirs = to_dict(cfg.model), to_dict(ckpt["model_config"])
    if mine != theirs:
        keys = set(mine) | set(theirs)
        diff = {k: (theirs.get(k), mine.get(k)) for k in keys if mine.get(k) != theirs.get(k)}
        raise ValueError(f"{path}: model config differs from this run's (checkpoint, config): {diff}")
    if cfg.stage == "student":
        mine_d = to_dict(cfg.distill)
        theirs_d = ckpt.get("config", {}).get("distill", mine_d)
        if mine_d != theirs_d:
            raise ValueError(
                f"{path}: the distillation config differs from this run's; adapters would not fit"
            )
    return ckpt


def check_init(path: str, cfg: TrainConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `init_from` checkpoint, checked against this run (same stage and architecture), and the
    provenance (`meta.init_from`) this run's checkpoints record."""
    ckpt = load_checkpoint(path)
    if ckpt.get("stage") != cfg.stage:
        raise ValueError(
            f"init_from {path}: is a {ckpt.get('stage')!r} checkpoint, this run trains the {cfg.stage}"
        )
    theirs = to_dict(ckpt["model_config"])
    for key in ("preset", "backbone"):
        if theirs.get(key) != getattr(cfg.model, key):
            raise ValueError(
                f"init_from {path}: model.{key} is {theirs.get(key)!r} there and "
                f"{getattr(cfg.model, key)!r} here; set model.{key}: {theirs.get(key)!r}"
            )
    if float(theirs.get("max_depth", 0)) != float(cfg.model.max_depth):
        log.warning("init_from %s was trained with max_depth %s, this run uses %s",
                    path, theirs.get("max_depth"), cfg.model.max_depth)
    meta = {"path": str(path), "git_commit": ckpt.get("meta", {}).get("git_commit"),
            "sigma_trained": ckpt.get("meta", {}).get("sigma_trained", True) is not False}
    return ckpt, meta


def load_init_weights(model: DepthNet, ckpt: dict[str, Any], cfg: TrainConfig) -> None:
    """Seed a fresh run's network with the `init_from` weights; ValueError when they do not fit."""
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        msg = f"init_from {cfg.init_from}: weights do not fit this run's model ({first})"
        raise ValueError(msg) from None
    log.info("network initialised from %s", cfg.init_from)


def check_teacher(tckpt: dict[str, Any], cfg: TrainConfig) -> dict[str, Any]:
    """The teacher checkpoint against the student's config; the provenance (`meta.teacher`) to record."""
    t_cfg = tckpt["model_config"]
    if tuple(t_cfg.get("input_size", ())) != tuple(cfg.model.input_size):
        raise ValueError(
            f"{cfg.teacher_checkpoint}: the teacher was built for input "
            f"{t_cfg.get('input_size')} but "
            f"the student for {list(cfg.model.input_size)}; distillation compares feature maps of "
            "the same size"
        )
    if float(t_cfg.get("max_depth", 0)) != float(cfg.model.max_depth):
        log.warning("teacher max_depth %s differs from the student's %s",
                    t_cfg.get("max_depth"), cfg.model.max_depth)
    return {
        "path": str(cfg.teacher_checkpoint),
        "step": tckpt.get("step"),
        "git_commit": tckpt.get("meta", {}).get("git_commit"),
    }
