"""Pictures for evaluation: coloured depth and uncertainty, KITTI-style error maps, labelled panels, plots.

RGB uint8 HxWx3 in and out (the ROS layer converts to bgr8). Colour maps come from OpenCV (no matplotlib
needed for images); matplotlib is imported only by `plot_sparsification`.

* `colorize_depth`: near = bright, far = dark, linear in depth up to `max_depth`; invalid (0, NaN, inf,
  negative) is black. Valid pixels use the upper 90 % of the colour map, so even the farthest valid depth
  stays distinguishable from the black of "no value".
* `colorize_uncertainty`: high sigma = bright (as the paper's Figure 3), linear up to `max_sigma`
  (default: 95th percentile of the finite values); NaN/inf/negative is black.
* `error_map`: the KITTI depth devkit's log-colour error image. At every valid GT pixel the error is
  normalised by the devkit's tolerance, ``n = |pred - gt| / max(abs_tol, rel_tol * gt)`` (3 m or 5 %,
  i.e. the devkit's ``min(err / 3, 20 err / gt)``), and coloured by the bins of `ERROR_BINS`:
  n < 1/16, 1/8, 1/4, 1/2, 1 in five blues (correct), 1..2, 2..4, 4..8, 8..16, >= 16 in five
  yellow-to-red tones (wrong). Each GT pixel is drawn as a (2 dilate + 1)^2 square (the worst error wins
  where squares overlap); everything else is black.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from adu_depth_core.depth_traits import valid_depth, valid_sigma
from adu_depth_core.fileio import atomic_write_bytes

from .metrics import MAX_DEPTH, MIN_DEPTH, clip_prediction, valid_mask

COLORMAPS = {
    "magma": cv2.COLORMAP_MAGMA,
    "inferno": cv2.COLORMAP_INFERNO,
    "plasma": cv2.COLORMAP_PLASMA,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "cividis": cv2.COLORMAP_CIVIDIS,
    "turbo": cv2.COLORMAP_TURBO,
    "jet": cv2.COLORMAP_JET,
    "hot": cv2.COLORMAP_HOT,
    "bone": cv2.COLORMAP_BONE,
}
LUT_FLOOR = 26  # first LUT entry used for valid values (~10 % into the map)

# Upper bin edges of the normalised error n and the colour of each bin (ColorBrewer RdYlBu, as the devkit).
ERROR_BINS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0, 4.0, 8.0, 16.0)
ERROR_COLORS = np.array(
    [
        (49, 54, 149),
        (69, 117, 180),
        (116, 173, 209),
        (171, 217, 233),
        (224, 243, 248),
        (254, 224, 144),
        (253, 174, 97),
        (244, 109, 67),
        (215, 48, 39),
        (165, 0, 38),
    ],
    dtype=np.uint8,
)


@cache
def colormap_lut(cmap: str) -> np.ndarray:
    """(256, 3) uint8 RGB lookup table of an OpenCV colour map (names in `COLORMAPS`)."""
    if cmap not in COLORMAPS:
        raise ValueError(f"unknown colour map {cmap!r}; expected one of {tuple(COLORMAPS)}")
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    lut = cv2.applyColorMap(ramp, COLORMAPS[cmap])[:, 0, ::-1]
    lut = np.ascontiguousarray(lut)
    lut.setflags(write=False)
    return lut


def _check_2d(name: str, arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be an HxW array, got shape {arr.shape}")
    return arr


def _apply_lut(t: np.ndarray, valid: np.ndarray, cmap: str) -> np.ndarray:
    """RGB image: t in [0, 1] -> LUT[LUT_FLOOR..255] where valid, black elsewhere."""
    lut = colormap_lut(cmap)
    t = np.where(valid, np.clip(np.nan_to_num(t), 0.0, 1.0), 0.0)
    idx = np.rint(LUT_FLOOR + t * (255 - LUT_FLOOR)).astype(np.intp)
    rgb = lut[idx]
    rgb[~valid] = 0
    return rgb


def colorize_depth(depth: np.ndarray, max_depth: float | None = None, cmap: str = "magma") -> np.ndarray:
    """RGB uint8 image of an HxW depth map in metres: near bright, far dark, invalid (<= 0, NaN, inf) black.

    `max_depth` fixes the scale (use the same value for images you compare); default: the largest valid
    depth of this image.
    """
    depth = _check_2d("depth", depth).astype(np.float64)
    valid = valid_depth(depth)
    if max_depth is None:
        max_depth = float(depth[valid].max()) if valid.any() else 1.0
    if not max_depth > 0:
        raise ValueError(f"max_depth must be > 0, got {max_depth}")
    return _apply_lut(1.0 - depth / max_depth, valid, cmap)


def colorize_uncertainty(
    sigma: np.ndarray, max_sigma: float | None = None, cmap: str = "inferno"
) -> np.ndarray:
    """RGB uint8 image of an HxW uncertainty map (sigma): high = bright, NaN/inf/negative black.

    `max_sigma` default: the 95th percentile of this image's finite values.
    """
    sigma = _check_2d("sigma", sigma).astype(np.float64)
    valid = valid_sigma(sigma)
    if max_sigma is None:
        max_sigma = float(np.percentile(sigma[valid], 95)) if valid.any() else 1.0
        max_sigma = max_sigma if max_sigma > 0 else 1.0
    if not max_sigma > 0:
        raise ValueError(f"max_sigma must be > 0, got {max_sigma}")
    return _apply_lut(sigma / max_sigma, valid, cmap)


def normalized_error(
    pred: np.ndarray,
    gt: np.ndarray,
    min_depth: float = MIN_DEPTH,
    max_depth: float = MAX_DEPTH,
    abs_tol: float | None = 3.0,
    rel_tol: float = 0.05,
) -> np.ndarray:
    """|pred - gt| / max(abs_tol, rel_tol * gt) at valid GT (pred clipped as in the metrics), -1 elsewhere.

    Values < 1 are "correct" by the devkit's 3 m / 5 % rule; ``abs_tol=None`` makes it purely relative.
    """
    pred, gt = _check_2d("pred", pred), _check_2d("gt", gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {pred.shape} does not match gt shape {gt.shape}")
    if not rel_tol > 0:
        raise ValueError(f"rel_tol must be > 0, got {rel_tol}")
    valid = valid_mask(gt, min_depth, max_depth)
    g = np.where(valid, gt, 1.0).astype(np.float64)
    tol = rel_tol * g if abs_tol is None else np.maximum(abs_tol, rel_tol * g)
    err = np.abs(clip_prediction(pred, min_depth, max_depth) - g) / tol
    return np.where(valid, err, -1.0)


def error_map(
    pred: np.ndarray,
    gt: np.ndarray,
    min_depth: float = MIN_DEPTH,
    max_depth: float = MAX_DEPTH,
    abs_tol: float | None = 3.0,
    rel_tol: float = 0.05,
    dilate: int = 1,
) -> np.ndarray:
    """KITTI-devkit-style RGB error image (module docstring): blue = correct, red = wrong, black = no GT."""
    if dilate < 0:
        raise ValueError(f"dilate must be >= 0, got {dilate}")
    n_err = normalized_error(pred, gt, min_depth, max_depth, abs_tol, rel_tol).astype(np.float32)
    if dilate:
        kernel = np.ones((2 * dilate + 1, 2 * dilate + 1), np.uint8)
        n_err = cv2.dilate(n_err, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=-1.0)
    drawn = n_err >= 0
    rgb = ERROR_COLORS[np.searchsorted(np.asarray(ERROR_BINS, np.float32), n_err, side="right")]
    rgb[~drawn] = 0
    return rgb


def _as_rgb(title: str, image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"panel image {title!r} must be uint8 (colorize it first), got {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"panel image {title!r} must be HxW or HxWx3, got shape {image.shape}")
    return image


def _title_bar(text: str, width: int, height: int) -> np.ndarray:
    bar = np.full((height, width, 3), 32, np.uint8)
    ascii_text = text.encode("ascii", "replace").decode("ascii")  # Hershey fonts are ASCII only
    scale = height / 34.0
    thickness = max(1, round(height / 20))
    (_, text_h), _ = cv2.getTextSize(ascii_text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    org = (max(2, height // 4), (height + text_h) // 2)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(bar, ascii_text, org, font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return bar


def make_panel(
    rows: Sequence[tuple[str, np.ndarray]],
    columns: int = 1,
    width: int | None = None,
    title_height: int | None = None,
) -> np.ndarray:
    """Labelled images (title bar above each) in a grid filled row by row, as the paper's Figures 2-3.

    Every image (uint8 HxWx3 RGB, or HxW grey) is scaled to the cell `width` (default: the widest image),
    keeping its aspect ratio (nearest-neighbour when enlarging, so sparse error maps stay crisp).
    Titles are drawn in ASCII (other characters become "?"). Returns RGB uint8.
    """
    if not rows:
        raise ValueError("make_panel needs at least one (title, image) pair")
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    images = [(str(title), _as_rgb(str(title), img)) for title, img in rows]
    cell_w = int(width or max(img.shape[1] for _, img in images))
    bar_h = int(title_height or max(18, round(cell_w / 40)))
    cells = []
    for title, img in images:
        h, w = img.shape[:2]
        new_h = max(1, round(h * cell_w / w))
        if (new_h, cell_w) != (h, w):
            interp = cv2.INTER_AREA if cell_w < w else cv2.INTER_NEAREST
            img = cv2.resize(img, (cell_w, new_h), interpolation=interp)
        cells.append(np.concatenate([_title_bar(title, cell_w, bar_h), img], axis=0))
    grid_rows = []
    for start in range(0, len(cells), columns):
        chunk = cells[start : start + columns]
        row_h = max(c.shape[0] for c in chunk)
        row = np.zeros((row_h, cell_w * columns, 3), np.uint8)
        for i, cell in enumerate(chunk):
            row[: cell.shape[0], i * cell_w : (i + 1) * cell_w] = cell
        grid_rows.append(row)
    return np.concatenate(grid_rows, axis=0)


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an RGB uint8 HxWx3 image, or of an HxW uint8/uint16 single-channel image."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        image = np.ascontiguousarray(image[:, :, ::-1])  # OpenCV writes BGR
    elif not (image.ndim == 2 and image.dtype in (np.uint8, np.uint16)):
        raise ValueError(f"PNG needs RGB uint8 HxWx3 or HxW uint8/uint16, got {image.dtype} {image.shape}")
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"PNG encoding failed for an image of shape {image.shape}")
    return buf.tobytes()


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write `image` (see `encode_png`) atomically to `path`, creating folders; returns the path."""
    path = Path(path)
    atomic_write_bytes(path, encode_png(image))
    return path


def plot_sparsification(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str | None = None
) -> Path:
    """Save a PNG with one panel per metric: model and oracle sparsification curves, AUSE/AURG in the title.

    `curves` as returned by `uncertainty.sparsification_curves` or `uncertainty.average_curves`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .uncertainty import FRACTIONS, uncertainty_metrics_from_curves

    if not curves:
        raise ValueError("plot_sparsification needs at least one metric's curves")
    scores = uncertainty_metrics_from_curves(dict(curves)) or {}
    fig = Figure(figsize=(4.0 * len(curves), 3.4), dpi=100)
    FigureCanvasAgg(fig)
    for i, (metric, (model, oracle)) in enumerate(curves.items()):
        model, oracle = np.asarray(model), np.asarray(oracle)
        if model.shape != FRACTIONS.shape or oracle.shape != FRACTIONS.shape:
            raise ValueError(
                f"curves[{metric!r}] must hold two arrays of shape {FRACTIONS.shape}, "
                f"got {model.shape} and {oracle.shape}"
            )
        ax = fig.add_subplot(1, len(curves), i + 1)
        ax.plot(FRACTIONS, model, label="model", color="tab:blue")
        ax.plot(FRACTIONS, oracle, label="oracle", color="tab:green", linestyle="--")
        ax.axhline(model[0], label="all pixels", color="tab:gray", linestyle=":", linewidth=1)
        ause, aurg = scores[f"ause_{metric}"], scores[f"aurg_{metric}"]
        ax.set_title(f"{metric}: AUSE {ause:.4f}, AURG {aurg:.4f}", fontsize=9)
        ax.set_xlabel("fraction of pixels removed")
        ax.set_xlim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path
