"""`adu-depth bag-eval`: evaluate a model on a rosbag2 recording and write the depth topics to a new bag.

adu-depth bag-eval --model student.onnx --bag run1 --image-topic /camera/left/image_raw \\
    --lidar-topic /lidar/points --json run1.json --out-bag run1_depth
adu-depth bag-eval --model student.pt --bag rig.mcap --gt-topic /camera/left/depth_gt --tolerance-ms 5
adu-depth bag-eval --model teacher.pt --bag run1 --lidar-topic /lidar/points \\
    --right-image-topic /camera/right/image_raw                                    # a stereo teacher

The bag (MCAP or sqlite3, read with `rosbags`, never modified) is read twice: once for the header stamps
of the image, ground-truth and right-image topics (matched with `rosbag_io.match_by_stamp`: exact, or
nearest within --tolerance-ms), once streaming the frames. Each image goes to the same `DepthEstimator` as
`adu-depth eval` and the ROS node, with K from its camera_info (the rectified P[:3,:3], as the node), so
depth is focal-aware. Ground truth is a depth image (32FC1 metres / 16UC1 millimetres, REP 118) or a
LiDAR PointCloud2 projected into the camera (`data.lidar.lidar_to_depth_image`) with the camera_info and
the extrinsic from /tf_static (or --extrinsic). Metrics, per frame and aggregated, come from
`adu_depth_core.evaluate`; the JSON adds n_frames and latency percentiles of the estimator.

--out-bag writes the depth_node's topics for every frame, each with the input image's header (stamp and
frame_id), so the run replays in RViz or Foxglove: depth/image (32FC1, NaN invalid), depth/camera_info,
depth/uncertainty (32FC1 σ), depth/confident (NaN where σ > --sigma-threshold), depth/colorized and
depth/uncertainty/colorized (bgr8), plus the input image, its camera_info and /tf_static (unless
--no-passthrough).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adu_depth_core.eval_run import ScoringSpec

HELP = "Evaluate a model on a rosbag2 recording and write an output bag with depth topics"

log = logging.getLogger("adu_depth.bag_eval")

# The depth_node's outputs (relative names, resolved under --out-namespace); the teacher has no σ.
SIGMA_OUTPUTS = ("uncertainty", "confident", "uncertainty_colorized")


@dataclass(frozen=True)
class BagEvalSpec:
    """One `bag-eval` run, typed: each field is the flag of the same name (`scoring`: the options shared
    with `eval`). Exactly one of `gt_topic` / `lidar_topic` is the ground truth."""

    scoring: ScoringSpec
    bag: Path
    gt_topic: str | None = None
    lidar_topic: str | None = None
    image_topic: str = "/camera/left/image_raw"
    camera_info_topic: str | None = None
    right_image_topic: str | None = None
    tolerance_ms: float = 0.0
    extrinsic: Path | None = None
    out_bag: Path | None = None
    storage: str | None = None
    sigma_threshold: float = 2.0
    out_namespace: str = ""
    no_passthrough: bool = False
    limit: int | None = None

    def validate(self) -> None:
        """The checks that need no model: numbers, the input bag, a new output bag."""
        if (self.gt_topic is None) == (self.lidar_topic is None):
            raise ValueError("bag-eval needs exactly one of --gt-topic and --lidar-topic")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")
        self.scoring.validate()
        if not Path(self.bag).exists():
            raise FileNotFoundError(f"rosbag not found: {self.bag}")
        if self.out_bag is not None:
            _check_out_bag(Path(self.out_bag), Path(self.bag))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from adu_depth_core.commands.eval import add_model_arguments
    from adu_depth_core.data import rosbag_io as rb

    add_model_arguments(parser)
    parser.add_argument(
        "--bag", required=True, type=Path, help="rosbag2 folder, or a single .mcap / .db3 file"
    )
    parser.add_argument(
        "--image-topic", default=rb.LEFT_IMAGE, help=f"camera image topic (default: {rb.LEFT_IMAGE})"
    )
    gt = parser.add_mutually_exclusive_group(required=True)
    gt.add_argument("--gt-topic", help="ground truth as a depth image topic (32FC1 m or 16UC1 mm)")
    gt.add_argument(
        "--lidar-topic", help="ground truth from a LiDAR PointCloud2 topic projected into the camera"
    )
    parser.add_argument(
        "--camera-info-topic", help="CameraInfo of the image (default: <image topic namespace>/camera_info)"
    )
    parser.add_argument("--right-image-topic", help="right camera image (needed by a stereo teacher)")
    parser.add_argument(
        "--tolerance-ms",
        type=float,
        default=0.0,
        help="stamp matching: 0 = exact (default), else nearest within",
    )
    parser.add_argument(
        "--extrinsic",
        type=Path,
        help="YAML/JSON 4x4 T_camera_from_lidar (a matrix, or a mapping with T_camera_from_lidar / "
        "T_lidar_from_camera) instead of /tf_static",
    )
    parser.add_argument("--out-bag", type=Path, metavar="OUT", help="write the depth topics to this new bag")
    parser.add_argument(
        "--storage", choices=("mcap", "sqlite3"), help="--out-bag storage (default: the input's)"
    )
    parser.add_argument(
        "--sigma-threshold", type=float, default=2.0, help="depth/confident keeps σ <= this (m; default 2.0)"
    )
    parser.add_argument("--out-namespace", default="", help="namespace of the depth/* topics (default: none)")
    parser.add_argument(
        "--no-passthrough", action="store_true", help="do not copy the image, camera_info and /tf_static"
    )
    parser.add_argument("--per-frame", action="store_true", help="print one line of metrics per frame")
    parser.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N image frames")


# --------------------------------------------------------------------------------------------------
# inputs


def read_extrinsic(path: str | Path) -> np.ndarray:
    """4x4 T_camera_from_lidar from a YAML/JSON file: a 4x4 (or 16-number) matrix, or a mapping with
    `T_camera_from_lidar` or `T_lidar_from_camera` (inverted); the matrix must be rigid."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"extrinsic file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML/JSON: {exc}") from None
    invert = False
    if isinstance(data, dict):
        if "T_camera_from_lidar" in data:
            data = data["T_camera_from_lidar"]
        elif "T_lidar_from_camera" in data:
            data, invert = data["T_lidar_from_camera"], True
        else:
            raise ValueError(
                f"{path}: expected a 4x4 matrix or a mapping with 'T_camera_from_lidar' or "
                f"'T_lidar_from_camera', got keys {sorted(data)}"
            )
    try:
        T = np.asarray(data, dtype=np.float64).reshape(4, 4)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: the extrinsic must be 16 numbers (a 4x4 matrix), got {data!r}") from None
    R = T[:3, :3]
    if (
        not np.all(np.isfinite(T))
        or not np.allclose(T[3], [0, 0, 0, 1])
        or not np.allclose(R @ R.T, np.eye(3), atol=1e-4)
        or np.linalg.det(R) < 0
    ):
        raise ValueError(
            f"{path}: not a rigid transform (rotation + translation, last row 0 0 0 1): {T.tolist()}"
        )
    return np.linalg.inv(T) if invert else T


def _storage_of(bag: Path) -> str:
    if bag.is_file():
        return "sqlite3" if bag.suffix.lower() == ".db3" else "mcap"
    return "sqlite3" if any(bag.glob("*.db3")) else "mcap"


def _default_info_topic(image_topic: str) -> str:
    """camera_info beside the image's base topic (as image_transport names them:
    `/cam/image_raw` and `/cam/image_raw/compressed` both -> `/cam/camera_info`)."""
    base = image_topic.removesuffix("/compressed")
    return base.rsplit("/", 1)[0] + "/camera_info"


class _Stream:
    """One topic's messages by index, read forward once through its own reader (bounded buffer)."""

    def __init__(self, reader: Any, topic: str, wanted: set[int]):
        from adu_depth_core.data import rosbag_io as rb

        self._it = rb.iter_topic(reader, topic)
        self._wanted = wanted
        self._buf: dict[int, Any] = {}
        self._next = 0
        self.topic = topic

    def get(self, index: int) -> Any:
        while index not in self._buf:
            try:
                _, msg = next(self._it)
            except StopIteration:
                raise ValueError(f"{self.topic}: message {index} vanished between the two passes") from None
            if self._next in self._wanted:
                self._buf[self._next] = msg
            self._next += 1
        return self._buf.pop(index)


class _Calibrations:
    """camera_info messages by stamp: the one with the image's stamp, else the nearest in time."""

    def __init__(self, messages: list[tuple[int, Any]], topic: str):
        from adu_depth_core.data.camera_info import camera_info_geometry

        self.topic = topic
        messages = sorted(messages, key=lambda m: m[0])  # header stamps need not follow bag order
        self.stamps = np.array([t for t, _ in messages], dtype=np.int64)
        self.msgs = [m for _, m in messages]
        self._geometry = camera_info_geometry
        self._cache: dict[int, tuple[np.ndarray, tuple[int, int], np.ndarray]] = {}
        self._warned = False

    def index_for(self, stamp: int) -> int:
        k = int(np.searchsorted(self.stamps, stamp))
        candidates = [c for c in (k - 1, k) if 0 <= c < len(self.stamps)]
        return min(candidates, key=lambda c: abs(int(self.stamps[c]) - stamp))

    def get(self, index: int) -> tuple[np.ndarray, tuple[int, int], np.ndarray]:
        """(K of the rectified image, (H, W), 4x4 rotation camera → rectified frame) of message `index`."""
        if index not in self._cache:
            from adu_depth_core.data import ros_messages as rm

            msg = self.msgs[index]
            try:
                K, hw = self._geometry(msg)
                calib = rm.camera_info_to_calibration(msg)
            except ValueError as exc:
                raise ValueError(f"{self.topic}: {exc}") from None
            R = calib.R if np.any(calib.R) else np.eye(3)  # all-zero R: an unrectified mono driver
            if not np.allclose(R @ R.T, np.eye(3), atol=1e-5):
                raise ValueError(f"{self.topic}: the rectification matrix R is not a rotation: {R.tolist()}")
            if np.any(calib.D) and not self._warned:
                log.warning(
                    "%s has distortion coefficients: the image topic is taken as rectified (K = P[:3,:3]); "
                    "evaluate an image_rect topic for a faithful LiDAR projection",
                    self.topic,
                )
                self._warned = True
            T_rect = np.eye(4)
            T_rect[:3, :3] = R
            self._cache[index] = (K, hw, T_rect)
        return self._cache[index]


# --------------------------------------------------------------------------------------------------
# the run


class BagEvaluation:
    """Pass 1 (stamps, calibration, transforms) at construction; `frames()` streams pass 2."""

    def __init__(self, args: BagEvalSpec, predictor: Any):
        from adu_depth_core.data import ros_messages as rm
        from adu_depth_core.data import rosbag_io as rb

        self.args = args
        self.predictor = predictor
        self.bag = Path(args.bag)
        self.tolerance_ns = round(float(args.tolerance_ms) * 1e6)
        if self.tolerance_ns < 0:
            raise ValueError(f"--tolerance-ms must be >= 0, got {args.tolerance_ms}")
        self.gt_topic = args.gt_topic or args.lidar_topic
        self.lidar = args.lidar_topic is not None
        self.right_topic = args.right_image_topic
        if predictor.needs_right and not self.right_topic:
            raise ValueError(
                f"{args.scoring.model} is a stereo teacher: pass --right-image-topic "
                "(the right camera's image topic)"
            )
        with rb.open_bag(self.bag) as reader:
            topics = rb.bag_topics(reader)
            # camera topics may carry CompressedImage (image_transport's `.../compressed`)
            self.image_type = (
                rm.COMPRESSED_IMAGE if topics.get(args.image_topic) == rm.COMPRESSED_IMAGE else rm.IMAGE
            )
            required = {
                args.image_topic: self.image_type,
                self.gt_topic: rm.POINT_CLOUD2 if self.lidar else rm.IMAGE,
            }
            if self.right_topic:
                right_compressed = topics.get(self.right_topic) == rm.COMPRESSED_IMAGE
                required[self.right_topic] = rm.COMPRESSED_IMAGE if right_compressed else rm.IMAGE
            info_topic = args.camera_info_topic
            if info_topic is not None:
                required[info_topic] = rm.CAMERA_INFO
            elif _default_info_topic(args.image_topic) in topics:
                info_topic = _default_info_topic(args.image_topic)
            elif self.lidar:
                listing = ", ".join(f"{t} [{m}]" for t, m in sorted(topics.items()))
                raise ValueError(
                    f"{self.bag}: LiDAR ground truth needs the camera's calibration, but there is no "
                    f"{_default_info_topic(args.image_topic)}; pass --camera-info-topic "
                    f"(the bag has: {listing})"
                )
            else:
                log.warning(
                    "%s has no %s: depth is not rescaled to the camera's focal (pass --camera-info-topic)",
                    self.bag, _default_info_topic(args.image_topic),
                )  # fmt: skip
            rb.require_topics(reader, required)
            self.info_topic = info_topic

            self.image_stamps = [t for t, _ in rb.iter_topic(reader, args.image_topic)]
            gt_stamps = [t for t, _ in rb.iter_topic(reader, self.gt_topic)]
            self.gt_match = rb.match_by_stamp(self.image_stamps, gt_stamps, self.tolerance_ns)
            self.right_match = None
            if self.right_topic:
                right_stamps = [t for t, _ in rb.iter_topic(reader, self.right_topic)]
                self.right_match = rb.match_by_stamp(self.image_stamps, right_stamps, self.tolerance_ns)
            self.calibs = None
            if info_topic is not None:
                infos = list(rb.iter_topic(reader, info_topic))
                if not infos:
                    raise ValueError(f"{self.bag}: {info_topic} has no messages")
                self.calibs = _Calibrations(infos, info_topic)
            self.tf_messages = list(rb.iter_topic(reader, rb.TF_STATIC)) if rb.TF_STATIC in topics else []
            self.extrinsic = None
            self.tfs: dict[tuple[str, str], np.ndarray] = {}
            if self.lidar:
                if args.extrinsic is not None:
                    self.extrinsic = read_extrinsic(args.extrinsic)
                else:
                    self.tfs = rb.read_static_transforms(reader)
        if not self.image_stamps:
            raise ValueError(f"{self.bag}: {args.image_topic} has no messages")
        self.gt_of = dict(self.gt_match.pairs)
        self.right_of = dict(self.right_match.pairs) if self.right_match else {}
        log.info(
            "%s: %d frames on %s, %d ground-truth messages on %s -> %d matched (tolerance %g ms)",
            self.bag, len(self.image_stamps), args.image_topic, len(gt_stamps), self.gt_topic,
            len(self.gt_match.pairs), args.tolerance_ms,
        )  # fmt: skip
        self.n_frames = 0
        self._T_cache: dict[tuple[str, str], np.ndarray] = {}

    # -- ground truth --

    def _T_cam_from_lidar(self, camera_frame: str, lidar_frame: str) -> np.ndarray:
        from adu_depth_core.data import rosbag_io as rb

        if self.extrinsic is not None:
            return self.extrinsic
        key = (camera_frame.lstrip("/"), lidar_frame.lstrip("/"))
        if key not in self._T_cache:
            if not self.tfs:
                raise ValueError(
                    f"{self.bag}: no /tf_static to place {key[1]!r} in {key[0]!r}; pass --extrinsic FILE "
                    "(a 4x4 T_camera_from_lidar)"
                )
            try:
                self._T_cache[key] = rb.lookup_transform(self.tfs, key[0], key[1])
            except ValueError as exc:
                raise ValueError(f"{self.bag}: {exc}; pass --extrinsic FILE to give it directly") from None
        return self._T_cache[key]

    def _ground_truth(self, msg: Any, hw: tuple[int, int], frame_id: str, calib, where: str) -> np.ndarray:
        from adu_depth_core.data import ros_messages as rm
        from adu_depth_core.data.lidar import lidar_to_depth_image

        try:
            if not self.lidar:
                gt = rm.msg_to_depth(msg)
                if gt.shape != hw:
                    raise ValueError(
                        f"depth image is {gt.shape[0]}x{gt.shape[1]}, the camera image is {hw[0]}x{hw[1]}"
                    )
                return gt
            K, _, T_rect = calib
            points = rm.pointcloud2_to_xyz(msg)
            T = T_rect @ self._T_cam_from_lidar(frame_id, str(msg.header.frame_id))
            return lidar_to_depth_image(points, T, K, hw[0], hw[1])
        except ValueError as exc:
            raise ValueError(f"{self.gt_topic} {where}: {exc}") from None

    # -- frames --

    def frames(self, evaluator: Any) -> Iterator[tuple[Any, Any, Any, Any]]:
        """Evaluate each image frame; yields (image msg, camera_info msg or None, FrameResult, calib)."""
        from adu_depth_core.data import ros_messages as rm
        from adu_depth_core.data import rosbag_io as rb
        from adu_depth_core.evaluate import EvalSample

        args = self.args
        limit = args.limit if args.limit is not None else len(self.image_stamps)
        with ExitStack() as stack:
            image_reader = stack.enter_context(rb.open_bag(self.bag))
            gt_reader = stack.enter_context(rb.open_bag(self.bag))
            gt_stream = _Stream(gt_reader, self.gt_topic, {j for i, j in self.gt_match.pairs if i < limit})
            right_stream = None
            if self.right_topic:
                right_reader = stack.enter_context(rb.open_bag(self.bag))
                right_stream = _Stream(
                    right_reader, self.right_topic, {j for i, j in self.right_of.items() if i < limit}
                )
            for i, (stamp, msg) in enumerate(rb.iter_topic(image_reader, args.image_topic)):
                if i >= limit:
                    break
                self.n_frames += 1
                frame_id = str(msg.header.frame_id)
                where = f"at {stamp // 1_000_000_000}.{stamp % 1_000_000_000:09d} s"
                sid = f"{stamp // 1_000_000_000}.{stamp % 1_000_000_000:09d}"
                try:
                    rgb = rm.msg_to_rgb(msg)
                except rm.CorruptImageError as exc:  # a damaged compressed frame: skipped and counted
                    yield msg, None, evaluator.skip(sid, f"corrupt compressed image: {exc}", stamp), None
                    continue
                except ValueError as exc:
                    raise ValueError(f"{args.image_topic} {where}: {exc}") from None
                hw = rgb.shape[:2]
                info_msg, calib, K = None, None, None
                if self.calibs is not None:
                    k = self.calibs.index_for(stamp)
                    info_msg, calib = self.calibs.msgs[k], self.calibs.get(k)
                    K = calib[0]
                    if calib[1] != hw:
                        raise ValueError(
                            f"{self.info_topic} describes a {calib[1][0]}x{calib[1][1]} image but "
                            f"{args.image_topic} {where} is {hw[0]}x{hw[1]}"
                        )
                gt = None
                if i in self.gt_of:
                    gt = self._ground_truth(gt_stream.get(self.gt_of[i]), hw, frame_id, calib, where)
                right = None
                if right_stream is not None:
                    if i not in self.right_of:
                        yield msg, info_msg, evaluator.skip(sid, "no right image", stamp), calib
                        continue
                    try:
                        right = rm.msg_to_rgb(right_stream.get(self.right_of[i]))
                    except rm.CorruptImageError as exc:
                        reason = f"corrupt compressed right image: {exc}"
                        yield msg, info_msg, evaluator.skip(sid, reason, stamp), calib
                        continue
                    except ValueError as exc:
                        raise ValueError(f"{self.right_topic} {where}: {exc}") from None
                sample = EvalSample(sid, rgb, gt, K, right, None, stamp)
                yield msg, info_msg, evaluator.add(sample), calib


def _output_messages(
    args: BagEvalSpec, run: BagEvaluation, evaluator: Any, settings: Any
) -> Iterator[tuple[str, str, int, Any]]:
    """The output bag's (topic, msgtype, stamp, msg) stream; evaluates the frames as it goes. The depth
    topics are the node's, from the same composer (`runtime.outputs.compose_outputs`)."""
    from adu_depth_core.data import ros_messages as rm
    from adu_depth_core.data import rosbag_io as rb
    from adu_depth_core.runtime.outputs import OUTPUTS, compose_outputs

    ns = "/" + args.out_namespace.strip("/") if args.out_namespace.strip("/") else ""
    topic = {name: f"{ns}/{spec.topic}" for name, spec in OUTPUTS.items()}
    passthrough = not args.no_passthrough
    infos_written: set[int] = set()
    first = True
    for msg, info_msg, frame, _ in run.frames(evaluator):
        stamp = rm.stamp_to_ns(msg.header.stamp)
        if first and passthrough:
            for _, tf in run.tf_messages:
                yield rb.TF_STATIC, rm.TF_MESSAGE, stamp, tf
        first = False
        if passthrough:
            yield args.image_topic, run.image_type, stamp, msg
            if info_msg is not None and id(info_msg) not in infos_written:
                infos_written.add(id(info_msg))
                yield run.info_topic, rm.CAMERA_INFO, stamp, info_msg
        if frame.depth is None:
            continue
        for name, out in compose_outputs(frame.depth, frame.sigma, msg.header, info_msg, settings).items():
            yield topic[name], rm.CAMERA_INFO if OUTPUTS[name].encoding is None else rm.IMAGE, stamp, out


def _check_out_bag(out: Path, bag: Path) -> None:
    if out.exists():
        raise FileExistsError(
            f"output bag already exists: {out} (choose a new path; bags are never overwritten)"
        )
    from adu_depth_core.paths import check_output_dir

    check_output_dir(out, "--out-bag", inputs=[bag])  # not inside the input bag, and creatable


def evaluate_bag(spec: BagEvalSpec) -> tuple[Any, dict[str, Any]]:
    """Evaluate `spec.scoring.model` on the bag, writing `spec.out_bag` when set; returns the
    `EvalResult` and the JSON's bag facts (frames, GT messages, unmatched frames, output bag)."""
    from adu_depth_core.data import rosbag_io as rb
    from adu_depth_core.evaluate import Evaluator
    from adu_depth_core.runtime.outputs import OutputSettings

    spec.validate()
    try:  # the node's defaults for everything but the threshold: per-frame colour range, every output
        settings = OutputSettings(sigma_threshold=spec.sigma_threshold)
    except ValueError as exc:
        raise ValueError(f"--sigma-threshold: {exc}") from None
    s = spec.scoring
    predictor = s.load_predictor()
    evaluation = BagEvaluation(spec, predictor)
    meta = {
        "bag": str(spec.bag),
        "image_topic": spec.image_topic,
        "gt_topic": evaluation.gt_topic,
        "gt_source": "lidar" if evaluation.lidar else "depth_image",
        "camera_info_topic": evaluation.info_topic,
        "right_image_topic": evaluation.right_topic,
        "tolerance_ms": float(spec.tolerance_ms),
    }
    evaluator = Evaluator(
        predictor, predict_all=spec.out_bag is not None, meta=meta, **s.evaluator_options(s.crop)
    )
    messages = _output_messages(spec, evaluation, evaluator, settings)
    if spec.out_bag is not None:
        storage = spec.storage or _storage_of(Path(spec.bag))
        rb.write_topics_bag(spec.out_bag, messages, storage)
        log.info("wrote %s (%s)", spec.out_bag, storage)
    else:
        for _ in messages:
            pass
    extra = {
        "n_frames": evaluation.n_frames,
        "n_gt_messages": len(evaluation.gt_match.pairs) + evaluation.gt_match.unmatched_b,
        "n_unmatched_frames": evaluation.gt_match.unmatched_a,
        "out_bag": None if spec.out_bag is None else str(spec.out_bag),
    }
    return evaluator.finish(), extra


def bag_eval_spec(args: argparse.Namespace) -> BagEvalSpec:
    from adu_depth_core.commands.eval import scoring_spec

    fields = {f.name for f in dataclasses.fields(BagEvalSpec)} - {"scoring"}
    return BagEvalSpec(scoring=scoring_spec(args), **{name: getattr(args, name) for name in fields})


def run(args: argparse.Namespace) -> int:
    from adu_depth_core.commands.eval import check_report_outputs, report

    spec = bag_eval_spec(args)
    spec.validate()  # the bag and --out-bag before the report outputs, those before the model
    check_report_outputs(args, [args.model, args.bag, args.extrinsic, args.out_bag])
    result, extra = evaluate_bag(spec)
    if args.per_frame:
        for r in result.records:
            latency = f"  {r['latency_ms']:.1f} ms" if "latency_ms" in r else ""
            if r.get("skipped"):
                print(f"{r['id']}  skipped: {r['skipped']}{latency}")
            else:
                print(
                    f"{r['id']}  abs_rel {r['abs_rel']:.4f}  rmse {r['rmse']:.3f}  d1 {r['d1']:.3f}{latency}"
                )
    report(result, args, "eigen", extra)
    return 0
