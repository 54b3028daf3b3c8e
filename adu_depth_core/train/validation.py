"""Validation during training and the ablation's test rows: a model's metrics by `adu-depth eval`'s loop
(`evaluate.Evaluator`), so a number here is the number `eval` gives, plus picture panels."""

from __future__ import annotations

import itertools

import numpy as np

from adu_depth_core.evaluate import EvalSample, Evaluator, FrameResult, dataset_samples
from adu_depth_core.evaluation import colorize_depth, colorize_uncertainty, make_panel
from adu_depth_core.runtime import DepthEstimator
from adu_depth_core.train.config import TrainConfig


def evaluate_model(
    estimator: DepthEstimator,
    dataset,
    cfg: TrainConfig,
    *,
    max_images: int | None = None,
    num_vis: int = 0,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Metrics of `estimator` over `dataset` by `adu-depth eval`'s loop (`evaluate.Evaluator`), and panels.

    The dataset's eval frames go at their resolution, `cfg.val.batch_size` per network call, through the
    estimator (its resize policy and focal correction) and are scored with `cfg.val`'s crop and depth
    range, so a number here is the number `adu-depth eval` gives for the checkpoint of the same model on
    the same frames. Keys: the sparse metrics (`abs_rel`, ...; AUSE/AURG for a student), `n_images`, and
    `dense_<name>` / `dense_n_images` when samples carry dense GT (`EvalResult.flat_metrics`). `num_vis`
    panels of the first predicted frames.
    """
    evaluator = Evaluator(
        estimator, crop=cfg.val.crop, min_depth=cfg.val.min_depth, max_depth=cfg.eval_max_depth
    )
    images: dict[str, np.ndarray] = {}
    samples = dataset_samples(dataset, max_images)
    while chunk := list(itertools.islice(samples, cfg.val.batch_size)):
        for sample, frame in zip(chunk, evaluator.add_batch(chunk)):
            if len(images) < num_vis and frame.depth is not None:
                images[f"sample_{len(images)}"] = _panel(sample, frame, cfg.eval_max_depth)
    return evaluator.result().flat_metrics(), images


def _panel(sample: EvalSample, frame: FrameResult, max_depth: float) -> np.ndarray:
    rows = [("left image", sample.image), ("predicted depth", colorize_depth(frame.depth, max_depth))]
    if sample.gt_dense is not None:
        rows.append(("dense GT", colorize_depth(sample.gt_dense, max_depth)))
    if sample.gt is not None:
        rows.append(("sparse GT", colorize_depth(sample.gt, max_depth)))
    if frame.sigma is not None:
        rows.append(("uncertainty sigma", colorize_uncertainty(frame.sigma)))
    return make_panel(rows, columns=2)
