"""`adu-depth predict`: run the student on image files and write depth and uncertainty.

adu-depth predict --model student.onnx frames/*.png --out-dir out/
adu-depth predict --model best.pt img.png --out-dir out/ --policy kb_crop --calib calib_cam_to_cam.txt
adu-depth predict --model student.onnx img.png --out-dir out/ --fx 721.5          # metric for this camera

Per image `<stem>`: `<stem>_depth.png` (uint16, metres·--depth-scale; the default 256 is KITTI's own
convention, read back by `data.image_io.read_depth_png`, and holds 0–255.99 m, beyond any model's max depth;
0 = invalid, and depth beyond the PNG's range is 0 with a counted warning), `<stem>_depth.npy` and
`<stem>_sigma.npy` (float32 metres at full precision, NaN where the network saw nothing),
`<stem>_depth_color.png` and `<stem>_sigma_color.png` (colour maps for viewing).
Without --fx/--calib the depth is not rescaled to the camera (the training focal is assumed).

Every input is read and every output path checked before the model is loaded: an unreadable image, an
image smaller than 32 px on a side, an `--out-dir` that is a file, or existing outputs (without
--overwrite) stop the run with one line and nothing written.
"""

from __future__ import annotations

import argparse
import io
import logging
from pathlib import Path

import numpy as np

from adu_depth_core.data.image_io import DEPTH_SCALE
from adu_depth_core.depth_traits import valid_depth
from adu_depth_core.paths import add_overwrite_argument, check_output_dir
from adu_depth_core.vocab import BACKENDS, POLICIES

HELP = "Run the student on image files: depth and uncertainty PNG/NPY"

log = logging.getLogger(__name__)

OUTPUTS = ("_depth.png", "_depth.npy", "_sigma.npy", "_depth_color.png", "_sigma_color.png")
KITTI_KEYS = ("P_rect_02", "P2", "K_02", "P_rect_00", "P0", "K_00")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="student checkpoint, ONNX file or TensorRT engine")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="input images (PNG/JPEG, 8-bit)")
    parser.add_argument("--out-dir", required=True, type=Path, help="output folder (created if missing)")
    add_overwrite_argument(parser, "output files in --out-dir")
    parser.add_argument("--backend", default="auto", choices=BACKENDS, help="(auto)")
    parser.add_argument("--policy", default="resize", choices=POLICIES, help="frame → network input (resize)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: GPU if present)")
    calib = parser.add_mutually_exclusive_group()
    calib.add_argument("--fx", type=float, help="camera focal length in pixels at the image resolution")
    calib.add_argument(
        "--calib",
        type=Path,
        help="camera matrix file: ROS camera_info YAML, KITTI calib text (P_rect_02/P2/K_02) or 9 numbers",
    )
    parser.add_argument("--fy", type=float, help="vertical focal (pixels; default --fx)")
    parser.add_argument(
        "--depth-scale",
        type=float,
        default=DEPTH_SCALE,
        help=f"uint16 PNG value per metre (default {DEPTH_SCALE:g}: KITTI, up to "
        f"{65535 / DEPTH_SCALE:.2f} m; 1000 = millimetres, up to 65.53 m)",
    )


def read_camera_matrix(path: str | Path) -> np.ndarray:
    """3x3 K from a ROS camera_info YAML/JSON (`camera_matrix.data` or `k`/`K`), a KITTI calibration text
    file (the first of P_rect_02, P2, K_02, P_rect_00, P0, K_00) or a text file of nine numbers."""
    from adu_depth_core.config import load_yaml_file
    from adu_depth_core.data.kitti import calib_matrix, read_calib_txt, read_intrinsics_txt
    from adu_depth_core.geometry import check_intrinsics

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"calibration file not found: {path}")
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        data = load_yaml_file(path, "calibration")
        values = None
        if isinstance(data, dict):
            matrix = data.get("camera_matrix")
            values = matrix.get("data") if isinstance(matrix, dict) else data.get("k", data.get("K"))
        try:
            K = np.asarray(values, dtype=np.float64).reshape(3, 3)
        except (TypeError, ValueError):
            raise ValueError(
                f"{path}: expected camera_matrix: {{data: [9 numbers]}} (ROS camera_info YAML) "
                "or k: [9 numbers]"
            ) from None
        return check_intrinsics(K, str(path))
    if ":" not in path.read_text(errors="replace"):
        return read_intrinsics_txt(path)
    calib = read_calib_txt(path)
    for key in KITTI_KEYS:
        if key in calib:
            shape = (3, 4) if key.startswith("P") else (3, 3)
            return check_intrinsics(calib_matrix(calib, key, shape, path)[:, :3], f"{path}: {key}")
    raise ValueError(f"{path}: none of {list(KITTI_KEYS)} found (keys: {sorted(calib)})")


def camera_matrix(args: argparse.Namespace, image_hw: tuple[int, int]) -> np.ndarray | None:
    if args.calib is not None:
        return read_camera_matrix(args.calib)
    if args.fx is None:
        return None
    h, w = image_hw
    fy = args.fy if args.fy is not None else args.fx
    return np.array([[args.fx, 0.0, (w - 1) / 2], [0.0, fy, (h - 1) / 2], [0.0, 0.0, 1.0]])


def depth_png_values(depth: np.ndarray, scale: float) -> tuple[np.ndarray, int]:
    """Depth for a uint16 PNG: NaN → 0, depth whose rounded PNG value exceeds 65535 → 0 (invalid); also
    returns how many were beyond. The test is on the rounded value in float64, the one the writer stores."""
    finite = np.nan_to_num(depth.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    over = np.rint(finite * scale) > 65535
    finite[over | (finite < 0)] = 0.0
    return finite, int(over.sum())


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=np.float32))
    return buf.getvalue()


def _existing_outputs(out_dir: Path, stems: dict[str, Path], overwrite: bool) -> None:
    """Refuse to replace outputs without --overwrite, and folders in the way of an output even with it."""
    existing = [out_dir / f"{stem}{suffix}" for stem in stems for suffix in OUTPUTS]
    existing = [p for p in existing if p.exists() or p.is_symlink()]
    for path in existing:
        if path.is_dir():
            raise ValueError(
                f"{path} is a folder where an output file goes; move it or choose another --out-dir"
            )
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more output(s)" if len(existing) > 1 else ""
        raise FileExistsError(
            f"{existing[0]} already exists{more}; pass --overwrite to replace them, or choose another "
            "--out-dir"
        )


def run(args: argparse.Namespace) -> int:
    from adu_depth_core.data.image_io import read_rgb, write_depth_png
    from adu_depth_core.evaluation.visualize import colorize_depth, colorize_uncertainty, save_png
    from adu_depth_core.fileio import atomic_write_bytes
    from adu_depth_core.runtime.estimator import DepthEstimator
    from adu_depth_core.runtime.preprocess import check_frame_size, frame_warning, plan_input

    if args.fy is not None and args.fx is None:
        raise ValueError("--fy needs --fx (with --calib the file gives both)")
    if not (np.isfinite(args.depth_scale) and args.depth_scale > 0):
        raise ValueError(f"--depth-scale must be a finite number > 0, got {args.depth_scale}")
    images = [Path(p) for p in args.images]
    for image in images:
        if not image.is_file():
            raise FileNotFoundError(f"image file not found: {image}")
    stems: dict[str, Path] = {}
    for image in images:
        if image.stem in stems:
            raise ValueError(f"{image} and {stems[image.stem]} would write the same outputs ({image.stem}_*)")
        stems[image.stem] = image
    inputs = {p.resolve() for p in images} | {Path(args.model).resolve()}
    for stem in stems:
        for suffix in OUTPUTS:
            if (args.out_dir / f"{stem}{suffix}").resolve() in inputs:
                raise ValueError(f"{args.out_dir / (stem + suffix)} is an input; choose another --out-dir")
    check_output_dir(args.out_dir, "--out-dir", overwrite=True)  # a folder (new or not) we can write in
    _existing_outputs(args.out_dir, stems, args.overwrite)
    if args.calib is not None:
        read_camera_matrix(args.calib)
    sizes = {}
    for image in images:  # every input is readable and large enough before the model is loaded
        sizes[image] = read_rgb(image).shape[:2]
        check_frame_size(sizes[image], str(image))

    estimator = DepthEstimator.from_path(
        args.model, backend=args.backend, policy=args.policy, device=args.device
    ).require_monocular("`predict`")
    max_depth = estimator.info.max_depth
    for image in images:
        plan = plan_input(sizes[image], estimator.info.input_hw, args.policy)
        warning = frame_warning(plan)
        if warning:
            log.warning("%s: %s", image, warning)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for image in images:
        rgb = read_rgb(image)
        K = camera_matrix(args, rgb.shape[:2])
        depth, sigma = estimator.estimate(rgb, K)
        out = args.out_dir / image.stem
        png_depth, over = depth_png_values(depth, args.depth_scale)
        if over:
            log.warning(
                "%s: %d pixels beyond %.2f m are 0 in the uint16 PNG at --depth-scale %g (the .npy "
                "keeps them)",
                image, over, 65535 / args.depth_scale, args.depth_scale,
            )  # fmt: skip
        write_depth_png(f"{out}_depth.png", png_depth, scale=args.depth_scale)
        atomic_write_bytes(f"{out}_depth.npy", _npy_bytes(depth))
        atomic_write_bytes(f"{out}_sigma.npy", _npy_bytes(sigma))
        save_png(f"{out}_depth_color.png", colorize_depth(depth, max_depth=max_depth))
        save_png(f"{out}_sigma_color.png", colorize_uncertainty(sigma))
        valid = valid_depth(depth)
        print(
            f"{image}: depth {np.nanmin(depth):.2f}–{np.nanmax(depth):.2f} m, median σ "
            f"{np.nanmedian(sigma):.3f} m, {valid.mean() * 100:.0f}% of pixels seen → {out}_*"
        )
    return 0
