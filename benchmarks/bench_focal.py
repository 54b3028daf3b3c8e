"""Focal-aware metric depth: the same test scenes of the synthetic rig through 0.6x / 1x / 1.5x the focal.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_focal.py --model runs/student/last.pt \\
        [--model runs/student_zoom/last.pt ...] [--frames 40] [--size HxW] [--json OUT.json]

For every focal factor f (`--focals`, default 0.6,1.0,1.5) the rig renders the test seeds
`split_seed("test", i)`, i < `--frames`, with `RigConfig(fx_scale=f)` at the model's input size (or
`--size`): the scene of a seed does not depend on the focal, so the three sets show the same scenes
through three lenses. `DepthEstimator.estimate(rgb, K, focal_rescale=False)` gives the raw network
output, `focal_rescale=True` the output multiplied by f_eff / f_train (docs/CAMERAS.md). Both are scored
with `depth_metrics` against the sparse LiDAR-like GT and the dense GT (1e-3..80 m, no crop). Per row:
AbsRel, RMSE and δ1 raw and rescaled, the median of pred/GT (averaged over frames; 1 = right scale), and
the median-scaled AbsRel (per-image scale fitted to the GT: what no single factor can fix), and AbsRel
raw / rescaled over the *common field of view* only (the pixels whose rays the longest lens also sees:
the same 3-D content at every focal, so a correct scale makes these agree up to image resolution).

Prints Markdown tables (one per model and GT, then an AbsRel summary over all models) and with `--json`
writes every number. Results and interpretation: docs/benchmarks/focal.md.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy / torch: one core, as the docs report

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from adu_depth_core.config import parse_size
from adu_depth_core.data.synthetic import (
    RigConfig,
    SyntheticRig,
    frames_for_split,
    rig_intrinsics,
    split_seed,
)
from adu_depth_core.evaluation import MetricAccumulator, depth_metrics
from adu_depth_core.fileio import atomic_write_bytes
from adu_depth_core.runtime import DepthEstimator

VARIANTS = ("raw", "rescaled")
GTS = ("sparse", "dense")
TABLE_KEYS = ("abs_rel", "rmse", "d1")


def _focals(text: str) -> list[float]:
    try:
        out = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--focals: expected comma-separated numbers, got {text!r}") from None
    if not out or any(not f > 0 for f in out):
        raise ValueError(f"--focals: factors must be > 0, got {text!r}")
    return out


def _ratio(pred: np.ndarray, gt: np.ndarray, min_depth: float, max_depth: float) -> float:
    """Median of pred/GT over valid GT pixels: 1 when the scale is right, 1/f for a network fooled by f."""
    valid = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth) & np.isfinite(pred) & (pred > 0)
    return float(np.median(pred[valid] / gt[valid])) if valid.any() else float("nan")


def common_fov_mask(K: np.ndarray, K_narrow: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Pixels of an image with intrinsics K whose ray also lies in the image of K_narrow (same size and
    camera centre, longer focal): the field of view every focal sees, i.e. the same 3-D content."""
    h, w = hw
    u = (np.arange(w) - K[0, 2]) / K[0, 0] * K_narrow[0, 0] + K_narrow[0, 2]
    v = (np.arange(h) - K[1, 2]) / K[1, 1] * K_narrow[1, 1] + K_narrow[1, 2]
    return ((v >= -0.5) & (v <= h - 0.5))[:, None] & ((u >= -0.5) & (u <= w - 0.5))[None, :]


def evaluate_model(
    model: str | Path,
    focals: list[float],
    frames: int,
    size: tuple[int, int] | None,
    rig: RigConfig,
    *,
    backend: str = "auto",
    device: str | None = None,
    min_depth: float = 1e-3,
    max_depth: float = 80.0,
) -> dict[str, Any]:
    """{"model", "focal_px", "input_hw", "size", "rows": [{focal, factor, <gt>: {<variant>: metrics}}]}."""
    est = DepthEstimator.from_path(model, backend=backend, device=device)
    hw = tuple(size) if size is not None else tuple(est.input_hw)
    K_narrow = rig_intrinsics(hw, max(focals) * rig.fx_scale)
    rows = []
    for f in focals:
        rig_f = SyntheticRig(dataclasses.replace(rig, fx_scale=f * rig.fx_scale), hw)
        common = common_fov_mask(rig_f.K, K_narrow, hw)
        accs = {(g, v): MetricAccumulator() for g in GTS for v in VARIANTS}
        accs_fov = {(g, v): MetricAccumulator() for g in GTS for v in VARIANTS}
        scaled = {g: MetricAccumulator() for g in GTS}
        ratios: dict[tuple[str, str], list[float]] = {(g, v): [] for g in GTS for v in VARIANTS}
        factor = None
        for frame in frames_for_split(rig_f, "test", frames):
            frame_id = f"seed-{frame.seed:07d}"
            raw, _ = est.estimate(frame.left, frame.K, focal_rescale=False)
            rescaled, _ = est.estimate(frame.left, frame.K, focal_rescale=True)
            factor = est.focal_factor(frame.K, frame.left.shape[:2])
            for g, gt in (("sparse", frame.lidar_depth), ("dense", frame.depth)):
                for v, pred in (("raw", raw), ("rescaled", rescaled)):
                    accs[g, v].add(depth_metrics(pred, gt, min_depth, max_depth, official=False), frame_id)
                    accs_fov[g, v].add(
                        depth_metrics(pred, gt, min_depth, max_depth, common, official=False), frame_id
                    )
                    ratios[g, v].append(_ratio(pred, gt, min_depth, max_depth))
                scaled[g].add(
                    depth_metrics(raw, gt, min_depth, max_depth, median_scaling=True, official=False),
                    frame_id,
                )
        row: dict[str, Any] = {"focal": f, "factor": factor, "fx": float(rig_f.K[0, 0])}
        for g in GTS:
            row[g] = {
                v: {**accs[g, v].mean(), "pred_gt_ratio": float(np.nanmean(ratios[g, v]))} for v in VARIANTS
            }
            row[g]["common_fov"] = {v: accs_fov[g, v].mean() for v in VARIANTS}
            row[g]["median_scaled"] = scaled[g].mean()
            row[g]["n_images"] = accs[g, "raw"].n_images
        rows.append(row)
    return {
        "model": str(model),
        "backend": est.backend_name,
        "focal_px": est.info.focal_px,
        "input_hw": list(est.input_hw),
        "size": list(hw),
        "rows": rows,
    }


def model_table(result: dict[str, Any], gt: str) -> str:
    head = (
        "| focal | f_eff/f_train | AbsRel raw | AbsRel rescaled | RMSE raw | RMSE rescaled | δ1 raw | "
        "δ1 rescaled | pred/GT raw | pred/GT rescaled | AbsRel median-scaled | AbsRel raw, common FOV | "
        "AbsRel rescaled, common FOV |"
    )
    lines = [head, "|" + "---|" * 13]
    for row in result["rows"]:
        m = row[gt]
        r, s = m["raw"], m["rescaled"]
        lines.append(
            f"| {row['focal']:g}x | {row['factor']:.3f} | {r['abs_rel']:.3f} | {s['abs_rel']:.3f} | "
            f"{r['rmse']:.2f} | {s['rmse']:.2f} | {r['d1']:.3f} | {s['d1']:.3f} | "
            f"{r['pred_gt_ratio']:.3f} | {s['pred_gt_ratio']:.3f} | {m['median_scaled']['abs_rel']:.3f} | "
            f"{m['common_fov']['raw']['abs_rel']:.3f} | {m['common_fov']['rescaled']['abs_rel']:.3f} |"
        )
    return "\n".join(lines)


def summary_table(results: list[dict[str, Any]], names: list[str], gt: str) -> str:
    """AbsRel per focal (rows) for every model raw and rescaled (columns)."""
    cols = [f"{n} {v}" for n in names for v in VARIANTS]
    lines = ["| focal | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for i, row in enumerate(results[0]["rows"]):
        cells = [f"{res['rows'][i][gt][v]['abs_rel']:.3f}" for res in results for v in VARIANTS]
        lines.append(f"| {row['focal']:g}x | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", action="append", required=True, help="checkpoint / ONNX / engine; repeatable"
    )
    parser.add_argument("--name", action="append", help="display name per --model (default: run folder)")
    parser.add_argument("--frames", type=int, default=40, help="test seeds per focal (default 40)")
    parser.add_argument("--size", default=None, help="render size HxW (default: the model's input size)")
    parser.add_argument("--focals", default="0.6,1.0,1.5", help="focal factors (default 0.6,1.0,1.5)")
    parser.add_argument("--preset", default="vehicle", help="rig preset (default vehicle)")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--device", default=None, help="cpu / cuda (default: the backend's choice)")
    parser.add_argument("--json", default=None, help="write every number here")
    args = parser.parse_args(argv)
    if args.frames <= 0:
        raise SystemExit("--frames must be > 0")
    names = args.name or []
    if names and len(names) != len(args.model):
        raise SystemExit(f"--name given {len(names)} times for {len(args.model)} --model")
    # default name: the run folder for OUT/last.pt / OUT/best.pt, else the file name
    names = names or [
        Path(m).parent.name if Path(m).stem in ("last", "best") else Path(m).stem for m in args.model
    ]
    focals = _focals(args.focals)
    size = parse_size(args.size) if args.size else None
    rig = RigConfig.preset(args.preset)

    t0 = time.perf_counter()
    results = [
        evaluate_model(m, focals, args.frames, size, rig, backend=args.backend, device=args.device)
        for m in args.model
    ]
    seeds = [split_seed("test", 0), split_seed("test", args.frames - 1)]
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "frames": args.frames,
        "test_seeds": seeds,
        "focals": focals,
        "preset": args.preset,
        "seconds": round(time.perf_counter() - t0, 1),
        "gt_range_m": [1e-3, 80.0],
    }
    print(
        f"# {args.frames} test seeds {seeds[0]}..{seeds[1]} per focal, preset {args.preset}, "
        f"{meta['machine']}, {meta['date']}"
    )
    for name, res in zip(names, results):
        for gt in GTS:
            print(
                f"\n## {name} ({res['model']}, f_train = {res['focal_px']:.2f} px at "
                f"{res['input_hw'][0]}x{res['input_hw'][1]}, rendered {res['size'][0]}x{res['size'][1]}), "
                f"{gt} GT\n"
            )
            print(model_table(res, gt))
    for gt in GTS:
        print(f"\n## AbsRel summary, {gt} GT\n")
        print(summary_table(results, names, gt))
    if args.json:
        payload = {"meta": meta, "models": dict(zip(names, results))}
        atomic_write_bytes(Path(args.json), json.dumps(payload, indent=2).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
