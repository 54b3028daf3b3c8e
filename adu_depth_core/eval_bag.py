"""Typed bag evaluation runs: a model scored on a rosbag2 recording, with an optional output bag of the
depth_node's topics; the library behind `adu-depth bag-eval` and the demo (the command only parses its flags
into a `BagEvalSpec`, as `eval` does into `eval_run.EvalSpec`).

    spec = BagEvalSpec(ScoringSpec(Path("student.onnx")), bag=Path("run1"), lidar_topic="/lidar/points",
                       out_bag=Path("run1_depth"))
    result, extra = evaluate_bag(spec)
    write_result_json(Path("run1.json"), result, extra)

Frames come from the bag frame source (`data.bag_frames`), the reader the rosbag training dataset uses, so
a bag has one geometry in training and evaluation: the image (and a stereo teacher's right image) paired
with the ground truth by header stamp (exact, or nearest within `tolerance_ms`), K and rectification from
the camera_info of each frame (`rectify` auto: raw views are rectified as the dataset does; never: the images
are taken as rectified), a depth image (32FC1 m / 16UC1 mm) or LiDAR PointCloud2 projected into the
rectified camera with /tf_static (or `extrinsic`). Each image goes to the same `DepthEstimator` as
`adu-depth eval` and the ROS node, so depth is focal-aware; metrics come from `adu_depth_core.evaluate`.

`out_bag` gets the depth_node's topics for every frame, each with the input image's header (stamp and
frame_id), so the run replays in RViz or Foxglove: depth/image (32FC1, NaN invalid), depth/camera_info,
depth/uncertainty (32FC1 σ), depth/confident (NaN where σ > `sigma_threshold`), depth/colorized and
depth/uncertainty/colorized (bgr8), plus the input image, its camera_info and /tf_static (unless
`no_passthrough`). The input bag is never modified.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adu_depth_core.data import ros_messages as rm
from adu_depth_core.data import rosbag_io as rb
from adu_depth_core.data.bag_frames import BagFrameSource, FrameSpec
from adu_depth_core.data.camera_info import default_info_topic
from adu_depth_core.data.lidar import read_extrinsic
from adu_depth_core.data.rectification import check_rectify
from adu_depth_core.eval_run import ScoringSpec
from adu_depth_core.evaluate import EvalResult, EvalSample, Evaluator
from adu_depth_core.paths import check_output_dir

log = logging.getLogger("adu_depth.bag_eval")


@dataclass(frozen=True)
class BagEvalSpec:
    """One `bag-eval` run, typed: each field is the flag of the same name (`scoring`: the options shared
    with `eval`). Exactly one of `gt_topic` / `lidar_topic` is the ground truth."""

    scoring: ScoringSpec
    bag: Path
    gt_topic: str | None = None
    lidar_topic: str | None = None
    image_topic: str = rb.LEFT_IMAGE
    camera_info_topic: str | None = None
    right_image_topic: str | None = None
    tolerance_ms: float = 0.0
    extrinsic: Path | None = None
    rectify: str = "auto"
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
        if self.tolerance_ms < 0:
            raise ValueError(f"--tolerance-ms must be >= 0, got {self.tolerance_ms}")
        try:
            check_rectify(self.rectify)
        except ValueError as exc:
            raise ValueError(f"--rectify: {exc}") from None
        self.scoring.validate()
        if not Path(self.bag).exists():
            raise FileNotFoundError(f"rosbag not found: {self.bag}")
        if self.out_bag is not None:
            check_out_bag(Path(self.out_bag), Path(self.bag))


def check_out_bag(out: Path, bag: Path) -> None:
    if out.exists():
        raise FileExistsError(
            f"output bag already exists: {out} (choose a new path; bags are never overwritten)"
        )
    check_output_dir(out, "--out-bag", inputs=[bag])  # not inside the input bag, and creatable


def _storage_of(bag: Path) -> str:
    if bag.is_file():
        return "sqlite3" if bag.suffix.lower() == ".db3" else "mcap"
    return "sqlite3" if any(bag.glob("*.db3")) else "mcap"


def frame_spec(spec: BagEvalSpec) -> FrameSpec:
    """The frame source's spec of a run: the camera_info topics found beside the image topics (unless given),
    the extrinsic file read. LiDAR ground truth needs the camera's calibration; a depth image does not (then
    depth is not rescaled to the camera's focal, with a warning)."""
    with rb.open_bag(spec.bag) as reader:
        topics = rb.bag_topics(reader)
    info = spec.camera_info_topic
    if info is None:
        info = default_info_topic(spec.image_topic)
        if info not in topics:
            if spec.lidar_topic is not None:
                listing = ", ".join(f"{t} [{m}]" for t, m in sorted(topics.items()))
                raise ValueError(f"{spec.bag}: LiDAR ground truth needs the camera's calibration, but there "
                                 f"is no {info}; pass --camera-info-topic (the bag has: {listing})")
            log.warning("%s has no %s: depth is not rescaled to the camera's focal "
                        "(pass --camera-info-topic)", spec.bag, info)
            info = None
    right_info = None
    if spec.right_image_topic:
        right_info = default_info_topic(spec.right_image_topic)
        right_info = right_info if right_info in topics else None
    tolerance_ns = round(float(spec.tolerance_ms) * 1e6)
    return FrameSpec(image_topic=spec.image_topic, info_topic=info, right_topic=spec.right_image_topic,
                     right_info_topic=right_info, gt_topic=spec.gt_topic, lidar_topic=spec.lidar_topic,
                     stereo_tolerance_ns=tolerance_ns, gt_tolerance_ns=tolerance_ns,
                     T_cam_from_lidar=None if spec.extrinsic is None else read_extrinsic(spec.extrinsic),
                     rectify=spec.rectify, extrinsic_hint="pass --extrinsic FILE (a 4x4 T_camera_from_lidar)")


class BagEvaluation:
    """Scores a frame source's frames: `frames(evaluator)` streams them through the evaluator."""

    def __init__(self, spec: BagEvalSpec, predictor: Any, source: BagFrameSource):
        if predictor.needs_right and not spec.right_image_topic:
            raise ValueError(f"{spec.scoring.model} is a stereo teacher: pass --right-image-topic "
                             "(the right camera's image topic)")
        self.spec, self.predictor, self.source = spec, predictor, source
        s = source.spec
        self.image_type = rm.COMPRESSED_IMAGE if s.image_topic in source.compressed else rm.IMAGE
        self.n_frames = 0
        log.info("%s: %d frames on %s, %d ground-truth messages on %s -> %d matched (tolerance %g ms)",
                 spec.bag, len(source.stamps), s.image_topic, len(source.gt_stamps), s.gt_source,
                 len(source.gt_of), spec.tolerance_ms)

    def frames(self, evaluator: Evaluator) -> Iterator[tuple[Any, Any, Any]]:
        """Evaluate each image frame; yields (image msg, camera_info msg or None, FrameResult)."""
        source = self.source
        limit = len(source.stamps) if self.spec.limit is None else min(self.spec.limit, len(source.stamps))
        for frame in source.frames(list(range(limit))):
            self.n_frames += 1
            sid = frame.seconds
            try:
                rgb = source.left(frame)
            except rm.CorruptImageError as exc:  # a damaged compressed frame: skipped and counted
                yield frame.msg, None, evaluator.skip(sid, f"corrupt compressed image: {exc}", frame.stamp)
                continue
            info_msg = source.info_msg(frame)
            gt = source.depth(frame, rgb.shape[:2])
            right = None
            if source.spec.right_topic:
                if not frame.paired_right:
                    yield frame.msg, info_msg, evaluator.skip(sid, "no right image", frame.stamp)
                    continue
                try:
                    right = source.right(frame)
                except rm.CorruptImageError as exc:
                    reason = f"corrupt compressed right image: {exc}"
                    yield frame.msg, info_msg, evaluator.skip(sid, reason, frame.stamp)
                    continue
            sample = EvalSample(sid, rgb, gt, source.K(frame), right, None, frame.stamp)
            yield frame.msg, info_msg, evaluator.add(sample)

    def output_messages(self, evaluator: Evaluator, settings: Any) -> Iterator[tuple[str, str, int, Any]]:
        """The output bag's (topic, msgtype, stamp, msg) stream; evaluates the frames as it goes. The depth
        topics are the node's, from the same composer (`runtime.outputs.compose_outputs`)."""
        from adu_depth_core.runtime.outputs import OUTPUTS, compose_outputs

        spec, s = self.spec, self.source.spec
        ns = "/" + spec.out_namespace.strip("/") if spec.out_namespace.strip("/") else ""
        topic = {name: f"{ns}/{o.topic}" for name, o in OUTPUTS.items()}
        passthrough = not spec.no_passthrough
        infos_written: set[int] = set()
        first = True
        for msg, info_msg, frame in self.frames(evaluator):
            stamp = rm.stamp_to_ns(msg.header.stamp)
            if first and passthrough:
                for _, tf in self.source.tf_messages:
                    yield rb.TF_STATIC, rm.TF_MESSAGE, stamp, tf
            first = False
            if passthrough:
                yield s.image_topic, self.image_type, stamp, msg
                if info_msg is not None and id(info_msg) not in infos_written:
                    infos_written.add(id(info_msg))
                    yield s.info_topic or "", rm.CAMERA_INFO, stamp, info_msg
            if frame.depth is None:
                continue
            outputs = compose_outputs(frame.depth, frame.sigma, msg.header, info_msg, settings)
            for name, out in outputs.items():
                yield topic[name], rm.CAMERA_INFO if OUTPUTS[name].encoding is None else rm.IMAGE, stamp, out


def evaluate_bag(spec: BagEvalSpec) -> tuple[EvalResult, dict[str, Any]]:
    """Evaluate `spec.scoring.model` on the bag, writing `spec.out_bag` when set; returns the
    `EvalResult` and the JSON's bag facts (frames, GT messages, unmatched frames, output bag)."""
    from adu_depth_core.runtime.outputs import OutputSettings

    spec.validate()
    try:  # the node's defaults for everything but the threshold: per-frame colour range, every output
        settings = OutputSettings(sigma_threshold=spec.sigma_threshold)
    except ValueError as exc:
        raise ValueError(f"--sigma-threshold: {exc}") from None
    s = spec.scoring
    predictor = s.load_predictor()
    with BagFrameSource(spec.bag, frame_spec(spec)) as source:
        evaluation = BagEvaluation(spec, predictor, source)
        meta = {
            "bag": str(spec.bag),
            "image_topic": spec.image_topic,
            "gt_topic": source.spec.gt_source,
            "gt_source": "lidar" if spec.lidar_topic else "depth_image",
            "camera_info_topic": source.spec.info_topic,
            "right_image_topic": spec.right_image_topic,
            "tolerance_ms": float(spec.tolerance_ms),
        }
        evaluator = Evaluator(
            predictor, predict_all=spec.out_bag is not None, meta=meta, **s.evaluator_options(s.crop)
        )
        messages = evaluation.output_messages(evaluator, settings)
        if spec.out_bag is not None:
            storage = spec.storage or _storage_of(Path(spec.bag))
            rb.write_topics_bag(spec.out_bag, messages, storage)
            log.info("wrote %s (%s)", spec.out_bag, storage)
        else:
            for _ in messages:
                pass
    extra = {
        "n_frames": evaluation.n_frames,
        "n_gt_messages": len(source.gt_stamps),
        "n_unmatched_frames": len(source.stamps) - len(source.gt_of),
        "out_bag": None if spec.out_bag is None else str(spec.out_bag),
    }
    return evaluator.finish(), extra
