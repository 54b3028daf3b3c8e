"""The demo's report: `report.md` with the tables, comparison panels and training curves.

It only formats what the demo hands it (`ReportInputs`: the stages' evaluation JSON, training logs, the
output bag's topics and the networks' predictions on a few test frames); it reads and runs nothing.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adu_depth_core.fileio import atomic_write_bytes
from adu_depth_core.sysinfo import cpu_name

LABELS = {"teacher": "Teacher (stereo)", "baseline": "Baseline student", "student": "ADU-Depth student"}
COMPARED = ("abs_rel", "sq_rel", "rmse", "rmse_log", "d1", "d2", "d3", "ause_abs_rel", "aurg_abs_rel")


@dataclass(frozen=True)
class PanelFrame:
    """One test frame of the comparison figure: the input, its GT and each network's depth (`LABELS` keys)."""

    image: np.ndarray
    gt: np.ndarray | None  # sparse, LiDAR-like
    gt_dense: np.ndarray | None
    depths: dict[str, np.ndarray]
    sigma: np.ndarray | None  # the distilled student's


@dataclass(frozen=True)
class ReportInputs:
    """Everything report.md shows, gathered by the demo's stages."""

    workdir: Path  # report.md and figures/ are written here
    budget: str  # the budget in words (`DemoBudget.describe`)
    image_size: tuple[int, int]
    results: dict[str, dict[str, Any]]  # eval JSON per network (`LABELS` keys)
    seed_results: dict[str, list[dict[str, Any]]]  # eval JSON of each seed (0 first) per student
    sgbm: dict[str, Any] | None  # OpenCV SGBM on the same frames
    bag: dict[str, Any]  # bag-eval JSON of the ONNX student
    bag_dataset: dict[str, Any]  # eval JSON of the same ONNX student on the KITTI tree
    bag_topics: list[tuple[str, str, int]]  # the output bag's (topic, msgtype, messages)
    training_logs: dict[str, list[dict[str, Any]]]  # metrics.jsonl records per network
    panels: list[PanelFrame]
    stage_seconds: dict[str, float]


def _verdict(results: dict[str, dict[str, Any]], prefix: str) -> list[str]:
    """Plain sentences on the paper's claims, for the sparse (prefix '') or dense ('dense_') GT."""
    t, b, s = (results[m] for m in ("teacher", "baseline", "student"))
    lines = []
    for key, name in (("abs_rel", "AbsRel"), ("rmse", "RMSE")):
        k = prefix + key
        sv, bv, tv = s.get(k), b.get(k), t.get(k)
        if None in (sv, bv, tv):
            continue
        better = "beats" if sv < bv else "does NOT beat"
        lines.append(
            f"- {name}: the distilled student ({sv:.4f}) {better} the baseline student ({bv:.4f}); "
            f"the teacher scores {tv:.4f} ({'better' if tv < min(sv, bv) else 'NOT better'} than both)."
        )
    return lines


SGBM_LABEL = "OpenCV SGBM (stereo, untrained)"


def _table(results: dict[str, dict[str, Any]], prefix: str, sgbm: dict[str, Any] | None = None) -> str:
    from adu_depth_core.evaluation import format_table

    rows = {}
    for name in ("teacher", "baseline", "student"):
        r = results[name]
        row = {k[len(prefix) :]: v for k, v in r.items() if k.startswith(prefix) and v is not None}
        if not prefix:  # the sparse table leaves the dense metrics to its own table
            row = {k: v for k, v in row.items() if not k.startswith("dense_")}
        if name != "student":  # only the distilled student's σ is trained (the baseline's UEM gets no loss)
            row = {k: v for k, v in row.items() if not k.startswith(("ause_", "aurg_"))}
        rows[LABELS[name]] = row
    caption = None
    if sgbm is not None:
        rows[SGBM_LABEL + "*"] = {k[len(prefix):]: v for k, v in sgbm.items()
                                  if k.startswith(prefix) and not (not prefix and k.startswith("dense_"))}
        caption = (f"Eigen columns (Table 1), no crop, depth cap 0-80 m. *SGBM is scored only on the GT "
                   f"pixels it matches ({sgbm['coverage']:.0%} of the LiDAR-like ones; holes excluded), "
                   f"the networks on every GT pixel.")
    return format_table(rows, protocol="eigen", crop="none", caption=caption)


SEED_KEYS = ("abs_rel", "rmse", "d1", "aurg_abs_rel")


def seed_section(seed_results: dict[str, list[dict[str, Any]]]) -> str:
    """Both students' mean ± std over their seeds, and whether each gain exceeds twice the spread."""
    from adu_depth_core.evaluation import mean_std

    n = len(seed_results["student"])
    if n < 2:
        return ("One run each (`--seeds 1`): how much of a difference is seed noise is measured over three "
                "seeds in docs/RESULTS.md, or here with `--seeds 3`.")
    lines = [f"## Both students over {n} seeds (mean ± std, the seed-to-seed spread)", "",
             "| Student | GT | " + " | ".join(SEED_KEYS) + " |", "|---|---|" + "---|" * len(SEED_KEYS)]
    stats: dict[tuple[str, str], tuple[dict[str, float], dict[str, float]]] = {}
    for name in ("baseline", "student"):
        for gt, prefix in (("sparse", ""), ("dense", "dense_")):
            runs = [{k: r[prefix + k] for k in SEED_KEYS if r.get(prefix + k) is not None}
                    for r in seed_results[name]]
            mean, std = stats[name, gt] = mean_std(runs)
            # only the distilled student's σ is trained, so only its AURG means something
            shown = [k for k in SEED_KEYS if k in mean and (name == "student" or not k.startswith("aurg_"))]
            cells = [f"{mean[k]:.4f} ± {std[k]:.4f}" if k in shown else "-" for k in SEED_KEYS]
            lines.append(f"| {LABELS[name]} | {gt} | " + " | ".join(cells) + " |")
    lines.append("")
    for gt in ("sparse", "dense"):
        for key in ("abs_rel", "rmse"):
            (bm, bs), (sm, ss) = stats["baseline", gt], stats["student", gt]
            if key not in bm or key not in sm:
                continue
            gap, spread = bm[key] - sm[key], max(bs[key], ss[key])
            verdict = "beyond" if gap > 2 * spread else "NOT beyond"
            lines.append(f"- {gt} {key}: the distilled student is {'ahead' if gap > 0 else 'behind'} by "
                         f"{abs(gap):.4f}, {verdict} twice the larger spread ({2 * spread:.4f}).")
    return "\n".join(lines)


def _bag_comparison(bag: dict[str, Any], ds: dict[str, Any]) -> tuple[str, float]:
    keys = ("abs_rel", "sq_rel", "rmse", "rmse_log", "d1", "ause_abs_rel")
    lines = ["| source | frames | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for name, r in (("bag-eval (rosbag2, LiDAR GT via /tf_static)", bag), ("eval (KITTI tree)", ds)):
        cells = " | ".join("-" if r.get(k) is None else f"{r[k]:.4f}" for k in keys)
        lines.append(f"| {name} | {r.get('n_images')} | {cells} |")
    diff = max(abs(bag[k] - ds[k]) for k in keys if bag.get(k) is not None and ds.get(k) is not None)
    return "\n".join(lines), diff


def _curves(logs: dict[str, list[dict[str, Any]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for name in ("teacher", "baseline", "student"):
        records = logs.get(name, [])
        train = [
            (r["step"], r["loss/silog"]) for r in records if r.get("kind") == "train" and "loss/silog" in r
        ]
        val = [(r["step"], r["abs_rel"]) for r in records if r.get("kind") == "val" and "abs_rel" in r]
        if train:
            steps, values = zip(*train)
            kernel = max(1, len(values) // 30)
            smooth = np.convolve(values, np.ones(kernel) / kernel, mode="valid")
            axes[0].plot(steps[kernel - 1 :], smooth, label=LABELS[name])
        if val:
            axes[1].plot(*zip(*val), marker="o", label=LABELS[name])
    axes[0].set(title="training SILog (L_b, smoothed)", xlabel="step")
    axes[1].set(title="validation AbsRel (val seeds)", xlabel="step")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())


def _panels(frames: list[PanelFrame], out: Path) -> None:
    """Rows of input | GT | teacher | baseline | student | σ | student error, like the paper's Figs. 2-3."""
    from adu_depth_core.evaluation import visualize as vis

    rows = []
    for f in frames:
        gt = f.gt_dense if f.gt_dense is not None else f.gt
        top = float(np.nanmax(gt)) if gt is not None and np.any(gt > 0) else 80.0
        tiles = [("input", f.image), ("GT (dense)", vis.colorize_depth(gt, max_depth=top))]
        tiles += [(LABELS[n], vis.colorize_depth(d, max_depth=top)) for n, d in f.depths.items()]
        tiles.append(("student sigma", vis.colorize_uncertainty(f.sigma)))
        tiles.append(("student error (LiDAR GT)", vis.error_map(f.depths["student"], f.gt)))
        rows.append(vis.make_panel(tiles, columns=len(tiles)))
    vis.save_png(out, np.concatenate(rows, axis=0))


def write_report(inputs: ReportInputs) -> Path:
    """Write `report.md` and its figures into `inputs.workdir`; returns the report's path."""
    results, sgbm = inputs.results, inputs.sgbm
    figures = inputs.workdir / "figures"
    figures.mkdir(exist_ok=True)
    _panels(inputs.panels, figures / "comparison.png")
    _curves(inputs.training_logs, figures / "training_curves.png")
    bag_table, bag_diff = _bag_comparison(inputs.bag, inputs.bag_dataset)
    total = sum(inputs.stage_seconds.values())
    stage_rows = "\n".join(f"| {k} | {v:.0f} |" for k, v in inputs.stage_seconds.items())
    topics = [f"`{t}` ({msgtype}, {n} msgs)" for t, msgtype, n in inputs.bag_topics]
    size = f"{inputs.image_size[0]}x{inputs.image_size[1]}"
    text = f"""# ADU-Depth demo report

Generated {time.strftime("%Y-%m-%d %H:%M")} on {cpu_name()} ({platform.machine()}), CPU only.
Budget: {inputs.budget} The teacher sees
left+right and matches them in a correlation cost volume (`teacher_fusion: cost_volume`); both students
see only the left image and have the same network (`ghostnet_nano`) and budget; the distilled student adds
the ADU-Depth losses (Eq. 9) from the frozen teacher, also on unlabeled stereo frames (`data.unlabeled`),
the baseline only SILog on the labeled frames. The tables below are the seed-0 runs; the section after them
gives the spread over seeds.

## Held-out test frames, sparse LiDAR-like GT (as KITTI)

{_table(results, "", sgbm)}

{chr(10).join(_verdict(results, ""))}

## The same frames, dense GT (every pixel up to 80 m)

{_table(results, "dense_", sgbm)}

{chr(10).join(_verdict(results, "dense_"))}

{seed_section(inputs.seed_results)}

AUSE / AURG (Poggi et al. 2020) rate the distilled student's σ: AUSE 0 would be an oracle ranking of its
errors, AURG > 0 means σ ranks errors better than chance. The baseline student's uncertainty branch receives
no loss, so it is not scored.

![comparison](figures/comparison.png)

*Per row: input, dense GT, teacher, baseline student, distilled student (same colour scale), the student's σ,
and the student's error on the LiDAR-like GT (KITTI devkit colours: blue correct, red wrong).*

![training curves](figures/training_curves.png)

## Deployment path: ONNX and rosbag replay

`student.onnx` ({size}, normalisation inside, outputs depth and σ in metres) passed the export
check against PyTorch in ONNX Runtime (relative error ≤ 1e-4). `bag-eval` ran it on the test rosbag2
(`data/test_bag`, the same seeds as the KITTI tree) with LiDAR ground truth projected through `/tf_static`:

{bag_table}

Largest difference between the two paths: {bag_diff:.2e} (the KITTI tree stores GT as uint16 metres·256,
rounding each depth by up to 1/512 m; the bag's LiDAR points are float32).
Output bag `bag_eval/student_depth_bag` (replay it in RViz or Foxglove):
{chr(10).join("- " + t for t in topics)}

## Stage times

| stage | seconds |
|---|---|
{stage_rows}
| report | (this page) |

Stages before the report: {total:.0f} s. Files: `eval/*.json` (every metric, per image), `eval/vis_*/`
(per-image panels and sparsification plots), `*/metrics.jsonl` and `*/tb` (TensorBoard), checkpoints
`teacher/`, `student/`, `baseline/`.
"""
    path = inputs.workdir / "report.md"
    atomic_write_bytes(path, text.encode())
    return path
