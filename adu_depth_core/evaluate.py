"""The one evaluation loop: `adu-depth eval`, `adu-depth bag-eval`, the demo, training validation and the
ablation's test rows all score through `Evaluator`.

    predictor = load_predictor("student.onnx", backend="onnxruntime")     # or a teacher checkpoint
    result = evaluate_samples(predictor, samples, crop="garg_kb", flip_tta=True, save_vis_dir="vis")
    print(result.table("ADU-Depth"))
    result.write_json("metrics.json")

The model is always a `runtime.DepthEstimator` (student checkpoint, ONNX graph, TensorRT engine, stereo
teacher checkpoint, or an in-memory `DepthNet` via `DepthEstimator.from_model`), so evaluation runs exactly
what the ROS node runs: its resize/crop policy, and the focal correction f_eff / f_train when K is given
(docs/CAMERAS.md). `EstimatorPredictor` is the thin adapter the loop talks to: it passes the right view to a
teacher (no σ) and tells which camera pixels the network sees.

Samples are `EvalSample`s or stereo-sample dicts of the datasets (docs/ARCHITECTURE.md); `evaluate_samples`
scores each with `evaluation.evaluate_image` (depth metrics + AUSE/AURG on the same pixels) into a
`MetricAccumulator`, averages the sparsification curves, and scores `depth_dense` too when samples carry
it (reported with a ``dense_`` prefix). Frames without ground truth (`has_gt` False, GT None) or without
a valid GT pixel are skipped and counted (`n_skipped`). Pixels the network did not see (outside the KB
crop of the `kb_crop` policy) are left out of the metrics, as the ROS eval node does.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adu_depth_core.evaluation import (
    EIGEN_KEYS,
    MAX_DEPTH,
    MIN_DEPTH,
    OFFICIAL_KEYS,
    UNCERTAINTY_KEYS,
    MetricAccumulator,
    average_curves,
    colorize_depth,
    colorize_uncertainty,
    crop_mask,
    curves_to_lists,
    error_map,
    evaluate_image,
    format_table,
    make_panel,
    normalize_crop_name,
    plot_sparsification,
    prepare,
    save_png,
    sparsification_curves,
)
from adu_depth_core.evaluation import flip_tta as _flip_tta

log = logging.getLogger(__name__)

DENSE_PREFIX = "dense_"
# Keys every summary (and so every JSON report) carries, null when nothing was evaluated.
SUMMARY_KEYS = tuple(dict.fromkeys(EIGEN_KEYS + OFFICIAL_KEYS))
LATENCY_PERCENTILES = (50, 90, 99)


# --------------------------------------------------------------------------------------------------
# the model


def _box_mask(image_hw: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray | None:
    top, left, h, w = box
    if (top, left, h, w) == (0, 0, *image_hw):
        return None
    mask = np.zeros(image_hw, dtype=bool)
    mask[top : top + h, left : left + w] = True
    return mask


class EstimatorPredictor:
    """A `runtime.DepthEstimator` as the evaluation loop sees it: depth (and σ) at camera resolution for
    one frame or a batch, the pixels the network sees, and facts for the report.

    Args:
        estimator: any `DepthEstimator` (`from_path`, `from_model`).
        name: label for logs and reports (default: the model's source).
    """

    def __init__(self, estimator: Any, name: str | None = None):
        self.estimator = estimator
        self.name = name or str(estimator.info.source)
        self.needs_right = bool(estimator.info.needs_right)  # stereo teacher: frames need their right view
        self.has_sigma = bool(estimator.info.has_sigma)

    def predict(
        self, image: np.ndarray, K: np.ndarray | None = None, right: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(depth, σ or None): HxW float32 metres at the image's resolution, NaN where not seen."""
        return self.estimator.estimate(image, K, right=right)

    def predict_batch(
        self,
        images: list[np.ndarray],
        Ks: list[np.ndarray | None],
        rights: list[np.ndarray] | None = None,
    ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """`predict` for several frames in as few network calls as the backend allows."""
        return self.estimator.estimate_batch(images, Ks, rights=rights)

    def seen_mask(self, image_hw: tuple[int, int]) -> np.ndarray | None:
        """Boolean HxW mask of the pixels the network sees (None: all of them)."""
        return _box_mask(tuple(image_hw), self.estimator.mapping(tuple(image_hw)).box)

    def describe(self) -> dict[str, Any]:
        """JSON-friendly facts for the report's `meta` (backend, network input, policy, focal)."""
        info = self.estimator.info
        return {
            "model": str(info.source),
            "stage": info.stage,
            "backend": self.estimator.backend_name,
            "policy": self.estimator.policy,
            "input_size": list(info.input_hw),
            "focal_px": info.focal_px,
            "preset": info.preset,
            "model_sha256": info.source_sha256,
            "sigma_trained": info.sigma_trained,
        }


def load_predictor(
    path: str | Path, backend: str = "auto", policy: str = "resize", device: Any = None
) -> EstimatorPredictor:
    """The predictor of a model file: a student checkpoint, ONNX graph or TensorRT engine, or a stereo
    teacher checkpoint (backend torch only), through `DepthEstimator.from_path`.

    Every failure to load is one `FileNotFoundError` / `ValueError` naming the file.
    """
    from adu_depth_core.runtime import DepthEstimator
    from adu_depth_core.runtime.backends import source_kind

    path = Path(path)
    source_kind(path)  # FileNotFoundError / ValueError for a missing file or unknown suffix
    try:
        return EstimatorPredictor(DepthEstimator.from_path(path, backend, policy, device), name=path.name)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        text = str(exc)
        if "\n" not in text:
            raise
        # torch / ORT messages span lines; the CLI promises one line per error
        kind = next(t for t in (FileNotFoundError, FileExistsError, ValueError) if isinstance(exc, t))
        raise kind(" ".join(text.split())) from None
    except Exception as exc:  # backends raise their own types (TensorRT, ORT, torch): one clear line
        text = " ".join(str(exc).split())
        raise ValueError(f"{path}: the model failed to load ({type(exc).__name__}: {text})") from None


# --------------------------------------------------------------------------------------------------
# samples


@dataclass
class EvalSample:
    """One frame to evaluate.

    Attributes:
        id: name in reports (dataset id, or the header stamp of a bag frame).
        image: RGB uint8 HxWx3, at the camera's full resolution.
        gt: ground-truth depth HxW in metres (0 or NaN = no measurement); None = no GT (skipped).
        K: 3x3 intrinsics of `image` (None: no focal correction).
        right: right RGB uint8 HxWx3 (stereo teacher only).
        gt_dense: optional dense GT (scored as the ``dense_`` metrics).
        stamp_ns: header stamp of a bag frame.
    """

    id: str
    image: np.ndarray
    gt: np.ndarray | None
    K: np.ndarray | None = None
    right: np.ndarray | None = None
    gt_dense: np.ndarray | None = None
    stamp_ns: int | None = None


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _to_uint8_rgb(x: Any, what: str) -> np.ndarray:
    """RGB uint8 HxWx3 from uint8 HxWx3, float HxWx3 in [0, 1], or a (3,H,W) float tensor/array in [0, 1]."""
    a = _to_numpy(x)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[2] != 3:
        a = a.transpose(1, 2, 0)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{what}: expected an RGB image (HxWx3 or 3xHxW), got shape {a.shape}")
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    # float images in [0, 1] hold k/255 (datasets divide uint8 by 255): rounding recovers the bytes exactly
    return np.ascontiguousarray(np.clip(np.rint(a.astype(np.float64) * 255.0), 0, 255).astype(np.uint8))


def _to_depth(x: Any, what: str) -> np.ndarray:
    a = _to_numpy(x).astype(np.float32, copy=False)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"{what}: expected an HxW (or 1xHxW) depth map, got shape {a.shape}")
    return a


def as_eval_sample(sample: EvalSample | Mapping[str, Any], index: int = 0) -> EvalSample:
    """An `EvalSample` from a stereo-sample dict (tensors or the datasets' raw numpy form) or itself."""
    if isinstance(sample, EvalSample):
        return sample
    if not isinstance(sample, Mapping):
        raise ValueError(
            f"sample {index}: expected an EvalSample or a stereo-sample dict, got {type(sample).__name__}"
        )
    sid = str(sample.get("id") or f"sample-{index:06d}")
    try:
        image = _to_uint8_rgb(sample["left"], f"{sid}: left")
    except KeyError:
        raise ValueError(f"sample {sid}: has no 'left' image (keys: {sorted(sample)})") from None
    right = None
    if sample.get("right") is not None and sample.get("has_right", True):
        right = _to_uint8_rgb(sample["right"], f"{sid}: right")
    has_gt = bool(sample.get("has_gt", True))
    gt = _to_depth(sample["depth"], f"{sid}: depth") if has_gt and sample.get("depth") is not None else None
    dense = sample.get("depth_dense")
    dense = _to_depth(dense, f"{sid}: depth_dense") if has_gt and dense is not None else None
    K = sample.get("K")
    K = None if K is None else _to_numpy(K).astype(np.float64)
    return EvalSample(sid, image, gt, K, right, dense, sample.get("stamp_ns"))


def dataset_samples(dataset: Any, limit: int | None = None) -> Iterator[EvalSample]:
    """The frames of a dataset built in eval mode, at full resolution, as `EvalSample`s.

    Readers with `load_raw` (KITTI, DrivingStereo, rosbag) go through their own eval pipeline in numpy
    (`pipeline.raw`: no augmentation, and no crop when built without one) so K stays float64 as read; the
    synthetic rig is rendered directly (uint8 images, float64 K, sparse and dense GT); anything else is
    read with `dataset[i]`.
    """
    from adu_depth_core.data.synthetic import SyntheticStereoDataset

    n = len(dataset) if limit is None else min(len(dataset), int(limit))
    pipeline = getattr(dataset, "pipeline", None)
    untouched = pipeline is not None and not pipeline.train and pipeline.crop_size is None
    for i in range(n):
        if hasattr(dataset, "load_raw") and pipeline is not None:
            yield as_eval_sample(pipeline.raw(dataset.load_raw(i), i), i)
        elif isinstance(dataset, SyntheticStereoDataset) and untouched:
            frame = dataset.rig.render(dataset.seed_of(i))
            yield EvalSample(
                f"seed-{frame.seed:07d}",
                frame.left,
                frame.lidar_depth,
                np.asarray(frame.K),
                frame.right,
                frame.depth,
            )
        else:
            yield as_eval_sample(dataset[i], i)


# --------------------------------------------------------------------------------------------------
# results


def _percentiles(values: list[float]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    arr = np.asarray(values, dtype=np.float64)
    for p in LATENCY_PERCENTILES:
        out[f"latency_p{p}_ms"] = float(np.percentile(arr, p)) if arr.size else None
    out["latency_mean_ms"] = float(arr.mean()) if arr.size else None
    return out


def _json_value(v: Any) -> Any:
    if isinstance(v, float | np.floating):
        return float(v) if math.isfinite(float(v)) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, dict):
        return {k: _json_value(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_value(x) for x in v]
    return v


@dataclass
class FrameResult:
    """What `Evaluator.add` returns for one frame (depth/σ are None when the frame was not predicted)."""

    id: str
    depth: np.ndarray | None
    sigma: np.ndarray | None
    metrics: dict[str, float] | None
    dense_metrics: dict[str, float] | None
    latency_ms: float | None
    skipped: str | None  # reason, or None when scored


@dataclass
class EvalResult:
    """Aggregate and per-image results of one evaluation run."""

    metrics: MetricAccumulator
    dense: MetricAccumulator | None
    curves: dict[str, tuple[np.ndarray, np.ndarray]] | None
    records: list[dict[str, Any]]
    latencies_ms: list[float]
    meta: dict[str, Any] = field(default_factory=dict)
    vis_paths: list[Path] = field(default_factory=list)

    @property
    def n_images(self) -> int:
        return self.metrics.n_images

    @property
    def n_skipped(self) -> int:
        return self.metrics.n_skipped

    def summary(self) -> dict[str, Any]:
        """Flat means: `SUMMARY_KEYS` (None when nothing was scored), AUSE/AURG and ``dense_*`` when
        present, n_images, n_skipped."""
        mean = self.metrics.mean()
        out: dict[str, Any] = {k: mean.get(k) for k in SUMMARY_KEYS}
        out.update({k: v for k, v in mean.items() if k not in out})
        out["n_images"] = self.metrics.n_images
        out["n_skipped"] = self.metrics.n_skipped
        if self.dense is not None:
            dense_mean = self.dense.mean()
            for k in SUMMARY_KEYS:
                out[DENSE_PREFIX + k] = dense_mean.get(k)
            out.update({DENSE_PREFIX + k: v for k, v in dense_mean.items() if k not in SUMMARY_KEYS})
            out[DENSE_PREFIX + "n_images"] = self.dense.n_images
            out[DENSE_PREFIX + "n_skipped"] = self.dense.n_skipped
        return out

    def flat_metrics(self) -> dict[str, float]:
        """The means of the scored images and `n_images`, then ``dense_<key>`` and `dense_n_images` when a
        dense GT image was scored: only numbers, only keys something produced (training validation's
        metrics: hooks, best_metric, the ablation's tables)."""
        out = {**self.metrics.mean(), "n_images": float(self.metrics.n_images)}
        if self.dense is not None and self.dense.n_images:
            out.update({DENSE_PREFIX + k: v for k, v in self.dense.mean().items()})
            out[DENSE_PREFIX + "n_images"] = float(self.dense.n_images)
        return out

    def latency(self) -> dict[str, float | None]:
        """p50/p90/p99/mean milliseconds of the predictor's calls (flip TTA: both passes)."""
        return _percentiles(self.latencies_ms)

    def to_dict(self) -> dict[str, Any]:
        out = {**self.summary(), **self.latency()}
        out["meta"] = self.meta
        out["skipped"] = [{"id": r["id"], "reason": r["skipped"]} for r in self.records if r.get("skipped")]
        out["per_image"] = self.records
        out["sparsification"] = curves_to_lists(self.curves) if self.curves else None
        return _json_value(out)

    def to_json(self, indent: int | None = 2) -> str:
        """Standard JSON (non-finite numbers as null)."""
        return json.dumps(self.to_dict(), indent=indent)

    def write_json(self, path: str | Path) -> Path:
        from adu_depth_core.fileio import atomic_write_bytes

        path = Path(path)
        atomic_write_bytes(path, (self.to_json() + "\n").encode())
        return path

    def table(self, name: str = "model", protocol: str = "eigen") -> str:
        """Markdown table in the layout of the paper's Table 1 (`protocol="eigen"`) or Table 2 (`"official"`);
        a second row scores the dense GT when there is one."""
        rows = {name: {k: v for k, v in self.summary().items() if not k.startswith(DENSE_PREFIX)}}
        if self.dense is not None and self.dense.n_images:
            rows[f"{name} (dense GT)"] = {**self.dense.mean(), "n_images": self.dense.n_images}
        extra = ("silog", "log10", "n_images") if protocol == "eigen" else ("abs_rel", "sq_rel", "n_images")
        return format_table(
            rows,
            protocol=protocol,
            extra=extra,
            crop=self.meta.get("crop"),
            max_depth=self.meta.get("max_depth"),
        )


# --------------------------------------------------------------------------------------------------
# the runner


def _slug(text: str, limit: int = 80) -> str:
    text = re.sub(r"\.(png|jpe?g)$", "", text, flags=re.IGNORECASE)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[-limit:] or "image"


class Evaluator:
    """Frame-by-frame evaluation (`evaluate_samples` is a loop over `add`; `add_batch` predicts several
    frames in one network call); `result()` at any time.

    Args:
        predictor: an `EstimatorPredictor` (`load_predictor`) or a `runtime.DepthEstimator`.
        crop: evaluation crop (`evaluation.CROPS`; None = none), applied to each GT image.
        flip_tta: average with the un-flipped prediction of the mirrored image (monocular models only).
        min_depth, max_depth: evaluation range (GT outside is ignored, predictions are clipped to it).
        median_scaling: scale each prediction by median(gt) / median(pred) (scale-ambiguous baselines).
        save_vis_dir: write a panel per scored image (input, GT, depth, σ, error map; the paper's
            Figures 2-3) for the first `max_vis` images, and the averaged sparsification plot.
        predict_all: also run the model on frames without GT (bag-eval's output bag needs every frame).
        meta: extra facts for the report (dataset, bag, ...).
    """

    def __init__(
        self,
        predictor: EstimatorPredictor | Any,
        *,
        crop: str | None = None,
        flip_tta: bool = False,
        min_depth: float = MIN_DEPTH,
        max_depth: float = MAX_DEPTH,
        median_scaling: bool = False,
        save_vis_dir: str | Path | None = None,
        max_vis: int = 20,
        predict_all: bool = False,
        meta: Mapping[str, Any] | None = None,
    ):
        if not isinstance(predictor, EstimatorPredictor):
            predictor = EstimatorPredictor(predictor)
        if flip_tta and predictor.needs_right:
            raise ValueError(
                "flip test-time augmentation is not defined for a stereo teacher (mirroring swaps the "
                "views); drop --flip-tta"
            )
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth} and {max_depth}")
        self.predictor = predictor
        self.crop = normalize_crop_name(crop)
        self.flip_tta = bool(flip_tta)
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.median_scaling = bool(median_scaling)
        self.save_vis_dir = Path(save_vis_dir) if save_vis_dir is not None else None
        self.max_vis = int(max_vis)
        self.predict_all = bool(predict_all)
        self.meta: dict[str, Any] = {
            **predictor.describe(),
            "crop": self.crop,
            "flip_tta": self.flip_tta,
            "min_depth": self.min_depth,
            "max_depth": self.max_depth,
            "median_scaling": self.median_scaling,
            **dict(meta or {}),
        }
        self.acc = MetricAccumulator(meta=self.meta)
        self.dense_acc: MetricAccumulator | None = None
        self.curves: list[dict[str, tuple[np.ndarray, np.ndarray]]] = []
        self.records: list[dict[str, Any]] = []
        self.latencies_ms: list[float] = []
        self.vis_paths: list[Path] = []
        self._masks: dict[tuple[int, int], np.ndarray | None] = {}
        self._count = 0

    # -- one frame --

    def _predict(self, samples: list[EvalSample]) -> list[tuple[np.ndarray, np.ndarray | None, float]]:
        """(depth, σ, latency ms) of each sample: one batched call, or one call per frame with flip TTA
        (a batch's latency is shared equally by its frames)."""
        p = self.predictor
        for s in samples:
            if p.needs_right and s.right is None:
                raise ValueError(f"{s.id}: the stereo teacher needs the right image, the sample has none")
        out: list[tuple[Any, Any, float]] = []
        if self.flip_tta:
            for s in samples:
                t0 = time.perf_counter()
                depth, sigma = _flip_tta(lambda img, K=s.K: p.predict(img, K), s.image)
                out.append((depth, sigma, (time.perf_counter() - t0) * 1e3))
        elif samples:
            t0 = time.perf_counter()
            rights = [s.right for s in samples] if p.needs_right else None
            depths, sigmas = p.predict_batch([s.image for s in samples], [s.K for s in samples], rights)
            latency = (time.perf_counter() - t0) * 1e3 / len(samples)
            out = [(d, sg, latency) for d, sg in zip(depths, sigmas)]
        results = []
        for s, (depth, sigma, latency) in zip(samples, out):
            depth = np.asarray(depth, dtype=np.float32)
            if depth.shape != s.image.shape[:2]:
                raise ValueError(
                    f"{s.id}: the model returned depth {depth.shape} for a {s.image.shape[:2]} image"
                )
            results.append((depth, None if sigma is None else np.asarray(sigma, dtype=np.float32), latency))
        return results

    def _seen(self, hw: tuple[int, int]) -> np.ndarray | None:
        """The network's field of view in an image of size `hw` (checked once per size, with the crop)."""
        if hw not in self._masks:
            try:
                crop_mask(hw[0], hw[1], self.crop)
            except ValueError as exc:
                raise ValueError(
                    f"evaluation crop {self.crop!r} does not fit a {hw[0]}x{hw[1]} image ({exc}); "
                    "the _kb crops need KITTI-sized images: use crop 'garg', 'eigen' or 'none'"
                ) from None
            mask = self.predictor.seen_mask(hw)
            if mask is not None and self.flip_tta:
                mask = mask & mask[:, ::-1]
            self._masks[hw] = mask
        return self._masks[hw]

    def _score(self, depth, sigma, gt, mask):
        return evaluate_image(
            depth,
            gt,
            sigma,
            self.min_depth,
            self.max_depth,
            mask,
            crop=self.crop,
            median_scaling=self.median_scaling,
        )

    def add(self, sample: EvalSample | Mapping[str, Any]) -> FrameResult:
        """Predict and score one frame; returns its `FrameResult` (also kept for `result()`)."""
        return self.add_batch([sample])[0]

    def add_batch(self, samples: Sequence[EvalSample | Mapping[str, Any]]) -> list[FrameResult]:
        """`add` for several frames, predicted together (`DepthEstimator.estimate_batch`); the same records
        and numbers as adding them one by one."""
        staged = []
        for sample in samples:  # every input checked before anything is predicted or recorded
            s = as_eval_sample(sample, self._count + len(staged))
            gt = None if s.gt is None else _to_depth(s.gt, f"{s.id}: gt")
            if gt is not None and gt.shape != s.image.shape[:2]:
                raise ValueError(f"{s.id}: ground truth is {gt.shape}, the image is {s.image.shape[:2]}")
            staged.append((s, gt))
        to_run = [s for s, gt in staged if gt is not None or self.predict_all]
        predictions = iter(self._predict(to_run))
        results = []
        for s, gt in staged:
            self._count += 1
            run = next(predictions) if gt is not None or self.predict_all else None
            results.append(self._finish(s, gt, run))
        return results

    def _finish(
        self, s: EvalSample, gt: np.ndarray | None, run: tuple[np.ndarray, np.ndarray | None, float] | None
    ) -> FrameResult:
        """Score (or skip) one predicted frame and keep its record."""
        record: dict[str, Any] = {"id": s.id}
        if s.stamp_ns is not None:
            record["stamp_ns"] = int(s.stamp_ns)
        if run is None:
            return self._skip(s.id, record, "no ground truth", None, None, None)
        depth, sigma, latency = run
        self.latencies_ms.append(latency)
        record["latency_ms"] = latency
        if gt is None:
            return self._skip(s.id, record, "no ground truth", depth, sigma, latency)

        mask = self._seen(gt.shape)
        metrics = self._score(depth, sigma, gt, mask)
        dense_metrics = None
        if s.gt_dense is not None:
            dense = _to_depth(s.gt_dense, f"{s.id}: gt_dense")
            if dense.shape != gt.shape:
                raise ValueError(f"{s.id}: dense ground truth is {dense.shape}, the image is {gt.shape}")
            if self.dense_acc is None:
                self.dense_acc = MetricAccumulator(meta={**self.meta, "ground_truth": "dense"})
            dense_metrics = self._score(depth, sigma, dense, mask)
            self.dense_acc.add(dense_metrics, s.id)
            if dense_metrics is not None:
                record.update({DENSE_PREFIX + k: v for k, v in dense_metrics.items()})
        if metrics is None:
            return self._skip(
                s.id, record, "no valid ground-truth pixel", depth, sigma, latency, dense_metrics
            )

        self.acc.add(metrics, s.id)
        record.update(metrics)
        curves = None
        if sigma is not None:
            clipped, valid, _ = prepare(
                depth, gt, self.min_depth, self.max_depth, mask, self.crop, self.median_scaling
            )
            curves = sparsification_curves(clipped, gt, sigma, valid)
            if curves is not None:
                self.curves.append(curves)
        self.records.append(record)
        if self.save_vis_dir is not None and len(self.vis_paths) < self.max_vis:
            self._save_panel(s, gt, depth, sigma, metrics)
        return FrameResult(s.id, depth, sigma, metrics, dense_metrics, latency, None)

    def skip(self, sample_id: str, reason: str, stamp_ns: int | None = None) -> FrameResult:
        """Count a frame that cannot be evaluated at all (e.g. a teacher frame without its right image)."""
        self._count += 1
        record: dict[str, Any] = {"id": str(sample_id)}
        if stamp_ns is not None:
            record["stamp_ns"] = int(stamp_ns)
        return self._skip(str(sample_id), record, reason, None, None, None)

    def _skip(self, sid, record, reason, depth, sigma, latency, dense_metrics=None) -> FrameResult:
        self.acc.add(None, sid)
        record["skipped"] = reason
        self.records.append(record)
        return FrameResult(sid, depth, sigma, None, dense_metrics, latency, reason)

    def _save_panel(self, s: EvalSample, gt, depth, sigma, metrics) -> None:
        vmax = self.max_depth
        rows = [
            ("Input  " + s.id[-60:], s.image),
            ("Ground truth", colorize_depth(np.where(gt < vmax, gt, 0), max_depth=vmax)),
            ("Depth", colorize_depth(depth, max_depth=vmax)),
        ]
        if sigma is not None:
            rows.append(("Uncertainty (sigma)", colorize_uncertainty(sigma)))
        title = (
            f"Error map  AbsRel = {metrics['abs_rel']:.3f}  RMSE = {metrics['rmse']:.2f} m  "
            f"SILog = {metrics['silog']:.2f}"
        )
        rows.append((title, error_map(depth, gt, self.min_depth, self.max_depth)))
        path = self.save_vis_dir / f"{len(self.vis_paths):04d}_{_slug(s.id)}.png"
        # at least 640 px wide so the titles stay legible on small images (enlarged nearest-neighbour)
        self.vis_paths.append(save_png(path, make_panel(rows, width=max(640, s.image.shape[1]))))

    # -- all frames --

    def result(self) -> EvalResult:
        curves = average_curves(self.curves)
        result = EvalResult(
            self.acc, self.dense_acc, curves, self.records, self.latencies_ms, self.meta, list(self.vis_paths)
        )
        return result

    def finish(self) -> EvalResult:
        """`result()`, plus the averaged sparsification plot when pictures are saved."""
        result = self.result()
        if self.save_vis_dir is not None and result.curves is not None:
            title = f"Sparsification, mean of {len(self.curves)} images"
            result.vis_paths.append(
                plot_sparsification(result.curves, self.save_vis_dir / "sparsification.png", title)
            )
        return result


def evaluate_samples(
    predictor: EstimatorPredictor | Any,
    samples: Iterable[EvalSample | Mapping[str, Any]],
    crop: str | None = None,
    flip_tta: bool = False,
    min_depth: float = MIN_DEPTH,
    max_depth: float = MAX_DEPTH,
    median_scaling: bool = False,
    save_vis_dir: str | Path | None = None,
    max_vis: int = 20,
    *,
    meta: Mapping[str, Any] | None = None,
    progress: Callable[[int, FrameResult], None] | None = None,
    log_every: int = 100,
) -> EvalResult:
    """Evaluate `predictor` on `samples` (`EvalSample`s or stereo-sample dicts); see `Evaluator`.

    Returns an `EvalResult`: `summary()` holds the mean metrics (`SUMMARY_KEYS`, AUSE/AURG when the model
    predicts σ, ``dense_*`` when samples carry `depth_dense`), n_images and n_skipped.
    """
    ev = Evaluator(
        predictor,
        crop=crop,
        flip_tta=flip_tta,
        min_depth=min_depth,
        max_depth=max_depth,
        median_scaling=median_scaling,
        save_vis_dir=save_vis_dir,
        max_vis=max_vis,
        meta=meta,
    )
    for i, sample in enumerate(samples):
        frame = ev.add(sample)
        if progress is not None:
            progress(i, frame)
        if log_every and (i + 1) % log_every == 0:
            mean = ev.acc.mean()
            log.info(
                "%d images: abs_rel %.4f, rmse %.3f (%d skipped)",
                i + 1,
                mean.get("abs_rel", math.nan),
                mean.get("rmse", math.nan),
                ev.acc.n_skipped,
            )
    return ev.finish()


__all__ = [
    "DENSE_PREFIX",
    "SUMMARY_KEYS",
    "UNCERTAINTY_KEYS",
    "EstimatorPredictor",
    "EvalResult",
    "EvalSample",
    "Evaluator",
    "FrameResult",
    "as_eval_sample",
    "dataset_samples",
    "evaluate_samples",
    "load_predictor",
]
