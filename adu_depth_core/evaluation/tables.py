"""Markdown result tables in the layouts of the paper's Table 1 (Eigen protocol) and Table 2 (KITTI official).

``format_table({"ADU-Depth": acc.mean(), "NeWCRFs": {...}}, protocol="eigen", crop="garg_kb")`` ->

    | Method | Sq Rel ↓ | Abs Rel ↓ | RMSE ↓ | RMSE log ↓ | δ<1.25 ↑ | δ<1.25² ↑ | δ<1.25³ ↑ |
    |---|---|---|---|---|---|---|---|
    | ADU-Depth | 0.147 | 0.049 | 2.080 | 0.076 | 0.976 | 0.997 | 0.999 |

    Eigen protocol (NeWCRFs metrics), crop garg_kb, depth cap 0-80 m.

Missing values print as "-" (as in the paper). AUSE/AURG columns are appended when any result has them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

from .crops import normalize_crop_name
from .uncertainty import UNCERTAINTY_KEYS

# (metric key, column header, decimals)
EIGEN_COLUMNS = (
    ("sq_rel", "Sq Rel ↓", 3),
    ("abs_rel", "Abs Rel ↓", 3),
    ("rmse", "RMSE ↓", 3),
    ("rmse_log", "RMSE log ↓", 3),
    ("d1", "δ<1.25 ↑", 3),
    ("d2", "δ<1.25² ↑", 3),
    ("d3", "δ<1.25³ ↑", 3),
)
OFFICIAL_COLUMNS = (
    ("silog", "SILog ↓", 2),
    ("sq_error_rel", "sqErrorRel ↓", 2),
    ("abs_error_rel", "absErrorRel ↓", 2),
    ("irmse", "iRMSE ↓", 2),
    ("rmse", "RMSE ↓", 2),
    ("d1", "δ<1.25 ↑", 3),
    ("d2", "δ<1.25² ↑", 3),
    ("d3", "δ<1.25³ ↑", 3),
)
UNCERTAINTY_COLUMNS = (
    ("ause_abs_rel", "AUSE AbsRel ↓", 4),
    ("aurg_abs_rel", "AURG AbsRel ↑", 4),
    ("ause_rmse", "AUSE RMSE ↓", 4),
    ("aurg_rmse", "AURG RMSE ↑", 4),
    ("ause_a1", "AUSE a1 ↓", 4),
    ("aurg_a1", "AURG a1 ↑", 4),
)
assert {c[0] for c in UNCERTAINTY_COLUMNS} == set(UNCERTAINTY_KEYS)
PROTOCOLS = {
    "eigen": ("Eigen protocol (NeWCRFs metrics)", EIGEN_COLUMNS),
    "official": (
        "KITTI official protocol (SILog x100, sqErrorRel and absErrorRel in %, iRMSE in 1/km)",
        OFFICIAL_COLUMNS,
    ),
}
# Headers for `extra` keys that are not in the protocol's columns.
EXTRA_HEADERS = {
    "silog": ("SILog ↓", 2),
    "log10": ("log10 ↓", 3),
    "abs_rel": ("Abs Rel ↓", 3),
    "sq_rel": ("Sq Rel ↓", 3),
    "rmse_log": ("RMSE log ↓", 3),
    "irmse": ("iRMSE ↓", 2),
    "median_scale": ("median scale", 3),
    "n_images": ("images", 0),
}


def _finite(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)


def _cell(value: object, decimals: int, std: object = None) -> str:
    if not _finite(value):
        return "-"
    text = f"{float(value):.{decimals}f}"  # type: ignore[arg-type]
    return text + f" ± {float(std):.{decimals}f}" if _finite(std) else text  # type: ignore[arg-type]


def format_table(
    results: Mapping[str, Mapping[str, float]],
    protocol: str = "eigen",
    extra: Sequence[str] = (),
    crop: str | None = None,
    max_depth: float | None = 80.0,
    caption: str | None = None,
    spread: Mapping[str, Mapping[str, float]] | None = None,
) -> str:
    """A markdown table, one row per method, then a one-line caption naming protocol, crop and depth cap.

    Args:
        results: {method name: metrics dict} (e.g. `MetricAccumulator.mean()`, optionally with ``n_images``).
        protocol: "eigen" (paper Table 1 columns) or "official" (paper Table 2 columns).
        extra: further metric keys to append as columns (e.g. ``("silog", "log10", "n_images")``).
        crop: the evaluation crop name (`crops.CROPS`), printed in the caption; None prints "no crop".
        max_depth: depth cap printed in the caption (None leaves it out).
        caption: replaces the generated caption when given.
        spread: {method name: metrics dict} of seed-to-seed standard deviations; cells of methods that
            have one read "mean ± std" (`results` then holds the means).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown table protocol {protocol!r}; expected one of {tuple(PROTOCOLS)}")
    title, base_columns = PROTOCOLS[protocol]
    columns = list(base_columns)
    present = {key for metrics in results.values() for key in metrics}
    for key in extra:
        if key not in {c[0] for c in columns}:
            header, decimals = EXTRA_HEADERS.get(key, (key, 3))
            columns.append((key, header, decimals))
    columns += [c for c in UNCERTAINTY_COLUMNS if c[0] in present and c[0] not in {k for k, _, _ in columns}]

    lines = [
        "| Method | " + " | ".join(header for _, header, _ in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for name, metrics in results.items():
        stds = (spread or {}).get(name, {})
        cells = [_cell(metrics.get(key), decimals, stds.get(key)) for key, _, decimals in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if caption is None:
        crop_name = normalize_crop_name(crop)
        parts = [title, "no crop" if crop_name == "none" else f"crop {crop_name}"]
        if max_depth is not None:
            parts.append(f"depth cap 0-{max_depth:g} m")
        caption = ", ".join(parts) + "."
    return "\n".join(lines) + "\n\n" + caption + "\n"


def mean_std(runs: Sequence[Mapping[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Per-metric mean and sample standard deviation (ddof 1; none for a single run) over runs: the
    seed-to-seed spread that `format_table(spread=...)` prints. Keys missing from any run are left out."""
    keys = [k for k in runs[0] if all(k in r for r in runs)]
    mean = {k: float(sum(r[k] for r in runs) / len(runs)) for k in keys}
    if len(runs) < 2:
        return mean, {}
    std = {k: math.sqrt(sum((r[k] - mean[k]) ** 2 for r in runs) / (len(runs) - 1)) for k in keys
           if k != "n_images"}
    return mean, std
