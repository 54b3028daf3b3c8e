"""Typed evaluation runs: a model file scored on an evaluation dataset, the library behind `adu-depth eval`
and the demo (the command only parses its flags into an `EvalSpec`).

    spec = EvalSpec(ScoringSpec(Path("student.onnx")), EvalDataSpec("kitti", root=Path("kitti_tree")))
    result = evaluate_dataset(spec)
    write_result_json(Path("eval.json"), result)

`ScoringSpec` (which model on which backend, how its depth is scored) is shared with `bag-eval`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from adu_depth_core.data.factory import EvalDataSpec, build_eval_dataset
from adu_depth_core.evaluate import (
    EstimatorPredictor,
    EvalResult,
    dataset_samples,
    evaluate_samples,
    load_predictor,
)
from adu_depth_core.evaluation import MAX_DEPTH, MIN_DEPTH
from adu_depth_core.fileio import atomic_write_bytes

# `--protocol` → the table layout of `EvalResult.table`
PROTOCOLS = {"eigen": "eigen", "kitti-official": "official"}

log = logging.getLogger("adu_depth.eval")


@dataclass(frozen=True)
class ScoringSpec:
    """The model, how it runs (backend, resize/crop policy, device) and how its depth is scored (crop,
    depth range, median scaling, pictures): the options `eval` and `bag-eval` share. `crop` None is
    `default_crop` for a dataset and no crop for a bag."""

    model: Path
    backend: str = "auto"
    policy: str = "resize"
    device: str | None = None
    crop: str | None = None
    min_depth: float = MIN_DEPTH
    max_depth: float = MAX_DEPTH
    median_scaling: bool = False
    save_vis: Path | None = None
    max_vis: int = 20

    def validate(self) -> None:
        if self.max_vis < 0:
            raise ValueError(f"--max-vis must be >= 0, got {self.max_vis}")

    def load_predictor(self) -> EstimatorPredictor:
        return load_predictor(self.model, self.backend, self.policy, self.device)

    def evaluator_options(self, crop: str | None) -> dict[str, Any]:
        """The keywords of `evaluate.Evaluator` / `evaluate_samples` for this scoring (`crop` resolved)."""
        return dict(
            crop=crop,
            min_depth=self.min_depth,
            max_depth=self.max_depth,
            median_scaling=self.median_scaling,
            save_vis_dir=self.save_vis,
            max_vis=self.max_vis,
        )


@dataclass(frozen=True)
class EvalSpec:
    """One `adu-depth eval` run: `scoring.model` on `data`, the first `limit` samples (None: all)."""

    scoring: ScoringSpec
    data: EvalDataSpec
    protocol: Literal["eigen", "kitti-official"] = "eigen"
    flip_tta: bool = False
    limit: int | None = None

    @property
    def crop(self) -> str:
        return self.scoring.crop or default_crop(self.data.kind, self.protocol)

    def validate(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")
        self.scoring.validate()
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"--protocol must be one of {sorted(PROTOCOLS)}, got {self.protocol!r}")


def default_crop(dataset: str, protocol: str) -> str:
    """KITTI's Eigen protocol as the paper's Table 1 (NeWCRFs: Garg crop on the KB crop); none otherwise."""
    return "garg_kb" if dataset == "kitti" and protocol == "eigen" else "none"


def evaluate_dataset(spec: EvalSpec) -> EvalResult:
    """Load the model, build the dataset in eval mode and score every sample (`evaluate.evaluate_samples`);
    the result's meta records the dataset, protocol, data path and split file."""
    spec.validate()
    s = spec.scoring
    predictor = s.load_predictor()
    if spec.flip_tta and predictor.needs_right:
        raise ValueError("--flip-tta is not defined for a stereo teacher (mirroring swaps the views)")
    dataset = build_eval_dataset(spec.data, predictor.needs_right)
    n = len(dataset) if spec.limit is None else min(len(dataset), spec.limit)
    log.info("evaluating %s on %d %s samples (crop %s, protocol %s)", predictor.name, n, spec.data.kind,
             spec.crop, spec.protocol)  # fmt: skip
    meta = {"dataset": spec.data.kind, "protocol": spec.protocol, "data_path": str(spec.data.root or "")}
    if spec.data.split_file is not None:
        meta["split"] = str(spec.data.split_file)
    return evaluate_samples(
        predictor,
        dataset_samples(dataset, spec.limit),
        flip_tta=spec.flip_tta,
        meta=meta,
        **s.evaluator_options(spec.crop),
    )


def write_result_json(path: Path, result: EvalResult, extra: dict[str, Any] | None = None) -> None:
    """The JSON of `eval` / `bag-eval` (docs/EVALUATION.md): `extra` keys first, then the result."""
    payload = {**(extra or {}), **result.to_dict()}
    atomic_write_bytes(path, (json.dumps(payload, indent=2) + "\n").encode())
