"""Training: the teacher / student engine (hooks, DDP through torchrun, exact resume), the config schema of
the recipes in `training/configs`, and the Table 4 ablation runner.

    from adu_depth_core.train import load_train_config, train
    cfg = load_train_config("training/configs/synthetic_teacher.yaml", ["steps=100"])
    summary = train(cfg)            # {"last": ".../last.pt", "best": ..., "val": {...}, ...}

Names are imported lazily, so `import adu_depth_core.train.config` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AugmentConfig": "config",
    "DataConfig": "config",
    "OptimConfig": "config",
    "TrainConfig": "config",
    "ValConfig": "config",
    "load_train_config": "config",
    "DepthTrainer": "engine",
        "evaluate_model": "validation",
    "load_teacher": "preflight",
    "train": "run",
    "EvalHook": "hooks",
    "EventStorage": "loop",
    "HookBase": "loop",
    "TrainerBase": "loop",
    "LRSchedulerHook": "hooks",
    "MetricsWriter": "hooks",
    "PeriodicCheckpointer": "hooks",
    "PolynomialLR": "hooks",
    "ProgressBar": "hooks",
    "ROW_LABELS": "ablation",
    "parse_rows": "ablation",
    "run_ablation": "ablation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
