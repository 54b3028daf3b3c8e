"""The generic training loop (detectron2's `train_loop.py`): `TrainerBase` runs optimiser steps and calls
`HookBase` callbacks around them; `EventStorage` is what a step leaves for the hooks to read.

Nothing here knows about depth, data or checkpoints: `engine.DepthTrainer` fills in `run_step`, and the
hooks in `hooks.py` subclass `HookBase`. Both import this module; it imports neither.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class EventStorage:
    """What the current step produced, read by hooks: loss terms, scalars, the latest validation."""

    def __init__(self) -> None:
        self.latest_losses: dict[str, float] = {}
        self.scalars: dict[str, float] = {}
        self.latest_val: dict[str, float] = {}
        self.val_images: dict[str, np.ndarray] = {}
        self.val_iter = -1
        self.val_history: list[tuple[int, dict[str, float]]] = []

    def put_losses(self, losses: dict[str, float]) -> None:
        self.latest_losses = dict(losses)

    def put_scalar(self, name: str, value: float) -> None:
        self.scalars[name] = float(value)

    def put_val(self, metrics: dict[str, float], images: dict[str, np.ndarray], step: int) -> None:
        self.latest_val = dict(metrics)
        self.val_images = dict(images)
        self.val_iter = step
        self.val_history.append((step, dict(metrics)))


class HookBase:
    """Base class: override any of the four callbacks; `state_dict` goes into checkpoints."""

    trainer: TrainerBase

    def before_train(self) -> None: ...

    def after_train(self) -> None: ...

    def before_step(self) -> None: ...

    def after_step(self) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    @property
    def is_last_step(self) -> bool:
        return self.trainer.iter >= self.trainer.max_iter


class TrainerBase:
    """`iter` counts completed optimiser steps; `train()` runs until `max_iter` calling the hooks."""

    def __init__(self) -> None:
        self._hooks: list[HookBase] = []
        self.iter = 0
        self.start_iter = 0
        self.max_iter = 0
        self.storage = EventStorage()
        self.exception: BaseException | None = None

    def register_hooks(self, hooks: list[HookBase | None]) -> None:
        for h in hooks:
            if h is None:
                continue
            h.trainer = self
            self._hooks.append(h)

    @property
    def hooks(self) -> list[HookBase]:
        return list(self._hooks)

    def train(self) -> None:
        self.start_iter = self.iter
        log.info("training from step %d to %d", self.iter, self.max_iter)
        self.exception = None
        for h in self._hooks:
            h.before_train()
        try:
            while self.iter < self.max_iter:
                for h in self._hooks:
                    h.before_step()
                self.run_step()
                self.iter += 1
                for h in self._hooks:
                    h.after_step()
        except BaseException as exc:
            self.exception = exc  # hooks see it in after_train (e.g. no collective save after a crash)
            raise
        finally:
            for h in self._hooks:
                h.after_train()

    def run_step(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError
