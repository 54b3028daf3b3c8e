"""`DepthEstimator`: metric depth and σ at the camera's resolution from any model the project makes.

    est = DepthEstimator.from_path("student.onnx", policy="resize")
    depth, sigma = est.estimate(rgb, K)          # HxW float32 metres, NaN where the network saw nothing
    teacher = DepthEstimator.from_path("teacher.pt")                 # stereo: sigma is None
    depth, _ = teacher.estimate(rgb, K, right=rgb_right)
    val = DepthEstimator.from_model(trainer.model, focal_px=f_train)  # in memory, where it is

The estimator owns everything between a camera frame and the network: input checks, the resize/crop
policy (`preprocess.py`), batching, the stereo input of a teacher (both views through the same mapping),
mapping outputs back to the frame, and the focal correction f_eff / f_train (docs/CAMERAS.md). Backends
only run the graph. No ROS here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from adu_depth_core.checkpoint import load_checkpoint
from adu_depth_core.geometry import check_intrinsics
from adu_depth_core.runtime.backends import ModelInfo, OnnxRuntimeBackend, TorchBackend, source_kind
from adu_depth_core.runtime.preprocess import (
    InputMapping,
    check_image,
    plan_input,
    prepare_batch,
    prepare_batch_torch,
    restore,
    restore_torch,
)
from adu_depth_core.vocab import BACKENDS, POLICIES

logger = logging.getLogger(__name__)


def _checkpoint_stage(path: Path) -> str | None:
    """The stage a checkpoint records (None when it cannot be read: the load error comes later)."""
    try:
        return load_checkpoint(path).get("stage")
    except ValueError:
        return None


class DepthEstimator:
    """Depth (+ uncertainty) for camera frames through one backend and one resize/crop policy.

    `info.stage` / `info.needs_right` / `info.has_sigma` tell a student (σ) from a stereo teacher (the right
    view is passed to `estimate`, no σ).

    Args:
        backend: a backend object (`TorchBackend`, `OnnxRuntimeBackend`, `TensorRTBackend`).
        policy: 'resize' (whole frame to the network size) or 'kb_crop' (bottom-centre crop, NaN outside).
    """

    def __init__(self, backend, policy: str = "resize"):
        if policy not in POLICIES:
            raise ValueError(f"unknown resize/crop policy {policy!r}; expected one of {list(POLICIES)}")
        self.backend = backend
        self.policy = policy
        self._said_no_k = False
        self._said_no_focal = False

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        backend: str = "auto",
        policy: str = "resize",
        device: str | torch.device | None = None,
        *,
        fp16: bool = False,
        workspace_gb: float = 4.0,
        threads: int | None = None,
        input_size: tuple[int, int] | None = None,
    ) -> DepthEstimator:
        """Open a checkpoint (.pt/.pth/.ckpt: a student, or a stereo teacher), an exported ONNX file or a
        TensorRT engine.

        `auto`: an engine → TensorRT; an ONNX file → TensorRT when tensorrt and a GPU are present (the
        engine is built once and cached next to the ONNX), else ONNX Runtime (CUDA provider if present);
        a checkpoint → PyTorch (CUDA if present; the only backend of a teacher, which is never exported).
        `device` ('cpu', 'cuda', 'cuda:1') restricts the choice.
        `fp16` / `workspace_gb` apply to TensorRT builds, `threads` to ONNX Runtime, `input_size` (H, W)
        rebuilds a checkpoint's network at another size.
        """
        from adu_depth_core.runtime import tensorrt_backend as trtb

        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {list(BACKENDS)}")
        path = Path(path)
        kind = source_kind(path)
        wants_cpu = device is not None and torch.device(device).type == "cpu"
        if kind == "checkpoint":
            if backend not in ("auto", "torch"):
                if _checkpoint_stage(path) == "teacher":
                    raise ValueError(
                        f"{path} is a stereo teacher checkpoint; it runs on backend 'torch' only "
                        f"(got {backend!r})"
                    )
                raise ValueError(
                    f"{path} is a checkpoint; backend {backend!r} runs exported graphs: run "
                    f"`adu-depth export --model {path} --onnx OUT.onnx` first, or use backend 'torch'"
                )
            impl = TorchBackend.from_checkpoint(path, device, input_size)
            reason = "checkpoint"
        elif kind == "onnx":
            if backend == "torch":
                raise ValueError(
                    f"{path} is an ONNX graph; backend 'torch' needs a checkpoint (.pt/.pth/.ckpt)"
                )
            if backend == "tensorrt" or (backend == "auto" and not wants_cpu and trtb.tensorrt_available()):
                impl = trtb.TensorRTBackend.from_onnx(path, fp16, workspace_gb, device)
                reason = "ONNX graph, TensorRT and a GPU present" if backend == "auto" else "asked for"
            else:
                impl = OnnxRuntimeBackend(path, device, threads)
                reason = f"providers {impl.providers}"
                if backend == "auto":
                    reason += "; TensorRT not used: " + (
                        "CPU asked for" if wants_cpu else "tensorrt or CUDA not available"
                    )
        else:
            if backend not in ("auto", "tensorrt"):
                raise ValueError(f"{path} is a TensorRT engine; only backend 'tensorrt' (or 'auto') runs it")
            impl = trtb.TensorRTBackend.from_engine(path, device)
            reason = "TensorRT engine"
        logger.info(
            "%s: backend %s (%s), network input %dx%d, policy %s",
            path, impl.name, reason, *impl.info.input_hw, policy,
        )  # fmt: skip
        if impl.info.has_sigma and not impl.info.sigma_trained:
            logger.warning(
                "%s: the uncertainty branch was never trained (imported weights): sigma is a placeholder, "
                "not an error estimate; train it with `adu-depth train` and init_from (training/README.md)",
                path,
            )  # fmt: skip
        return cls(impl, policy)

    @classmethod
    def from_model(
        cls,
        model: torch.nn.Module,
        focal_px: float | None = None,
        policy: str = "resize",
        name: str | None = None,
    ) -> DepthEstimator:
        """An in-memory `DepthNet` (teacher or student, e.g. the model being trained) on its own device,
        run like a checkpoint of it would be (`TorchBackend.from_model`)."""
        return cls(TorchBackend.from_model(model, focal_px, name), policy)

    # ---- what consumers need to know ------------------------------------------------------------------

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def info(self) -> ModelInfo:
        """Backend, network input size, max depth and training focal (`ModelInfo`)."""
        return self.backend.info

    @property
    def input_hw(self) -> tuple[int, int]:
        return self.backend.info.input_hw

    def require_monocular(self, consumer: str) -> DepthEstimator:
        """Itself, or ValueError when the model is the stereo teacher (`consumer` feeds one camera)."""
        if self.info.needs_right:
            raise ValueError(
                f"{self.info.source}: this is a 'teacher' checkpoint; only the monocular student is deployed "
                f"({consumer} sees one camera; pass the checkpoint written by the student/distillation stage)"
            )
        return self

    def mapping(self, image_hw: tuple[int, int]) -> InputMapping:
        """How a frame of `image_hw` reaches the network under this estimator's policy."""
        return plan_input(image_hw, self.input_hw, self.policy)

    def network_intrinsics(self, K: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        """The camera matrix of the network input for a frame of `image_hw` with intrinsics `K`."""
        return self.mapping(image_hw).network_intrinsics(K)

    def focal_factor(self, K: np.ndarray | None, image_hw: tuple[int, int]) -> float:
        """f_eff / f_train for a frame; 1 (logged once) without K or without a recorded training focal."""
        return self._factor(K, self.mapping(image_hw), True)

    def _factor(self, K: np.ndarray | None, mapping: InputMapping, rescale: bool) -> float:
        if K is None:
            if rescale and not self._said_no_k:
                logger.info(
                    "no camera matrix given: assuming the network sees the training focal "
                    "(f_train=%s px), so depth is not rescaled", self.info.focal_px,
                )  # fmt: skip
                self._said_no_k = True
            return 1.0
        K = check_intrinsics(K)  # zeros (an uncalibrated camera_info) end here, rescaling or not
        if not rescale:
            return 1.0
        f_train = self.info.focal_px
        if f_train is None:
            if not self._said_no_focal:
                logger.warning(
                    "%s records no training focal (focal_px); depth is not rescaled to this camera",
                    self.info.source,
                )
                self._said_no_focal = True
            return 1.0
        return float(mapping.network_intrinsics(K)[0, 0] / f_train)

    # ---- inference --------------------------------------------------------------------------------------

    def estimate(
        self,
        rgb: np.ndarray,
        K: np.ndarray | None = None,
        focal_rescale: bool = True,
        *,
        right: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Depth and σ (HxW float32 metres, NaN where not seen) for one uint8 frame (HxW, HxWx3 RGB or
        HxWx4 RGBA). With `K` (3x3) and `focal_rescale`, both are multiplied by f_eff / f_train.
        A stereo teacher needs the `right` view (same size; ignored by a monocular model) and gives σ None."""
        depths, sigmas = self.estimate_batch(
            [rgb], None if K is None else [K], focal_rescale, rights=None if right is None else [right]
        )
        return depths[0], sigmas[0]

    def estimate_batch(
        self,
        images: Sequence[np.ndarray],
        Ks: Sequence[np.ndarray | None] | None = None,
        focal_rescale: bool = True,
        *,
        rights: Sequence[np.ndarray] | None = None,
    ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """`estimate` for several frames (any sizes) in as few network calls as the backend allows
        (one, unless the graph has a fixed batch). Returns the list of depths and the list of σ."""
        if isinstance(images, np.ndarray):
            raise ValueError("estimate_batch takes a list of images; use estimate() for one image")
        images = [check_image(img, f"image {i}") for i, img in enumerate(images)]
        if not images:
            return [], []
        if Ks is None:
            Ks = [None] * len(images)
        elif len(Ks) != len(images):
            raise ValueError(f"got {len(Ks)} camera matrices for {len(images)} images")
        right_views = self._rights(images, rights) if self.info.needs_right else None
        mappings = [self.mapping(img.shape[:2]) for img in images]
        factors = [self._factor(K, m, focal_rescale) for K, m in zip(Ks, mappings)]
        step = self.backend.max_batch or len(images)
        depths: list[np.ndarray] = []
        sigmas: list[np.ndarray | None] = []
        for start in range(0, len(images), step):
            chunk = slice(start, start + step)
            views = [images[chunk]] + ([right_views[chunk]] if right_views is not None else [])
            if self.backend.device is not None:
                dev = self.backend.device
                x = torch.cat([prepare_batch_torch(v, mappings[chunk], dev) for v in views], dim=1)
                depth, sigma = self.backend.run_torch(x)
                for d, s in restore_torch(depth, sigma, mappings[chunk], factors[chunk]):
                    depths.append(d)
                    sigmas.append(s)
            else:
                x = np.concatenate([prepare_batch(v, mappings[chunk]) for v in views], axis=1)
                depth, sigma = self.backend.run(x)
                for i, (m, f) in enumerate(zip(mappings[chunk], factors[chunk])):
                    depths.append(restore(depth[i, 0], m, f))
                    sigmas.append(None if sigma is None else restore(sigma[i, 0], m, f))
        return depths, sigmas

    def _rights(self, images: list[np.ndarray], rights: Sequence[np.ndarray] | None) -> list[np.ndarray]:
        """The right views of a stereo model's frames, checked against their left views."""
        if rights is None or len(rights) != len(images):
            got = "none" if rights is None else f"{len(rights)} right images"
            raise ValueError(
                f"{self.info.source}: the stereo teacher needs the right image of every frame "
                f"({len(images)} left images, {got})"
            )
        out = []
        for i, (left, right) in enumerate(zip(images, rights)):
            right = check_image(right, f"right image {i}")
            if right.shape[:2] != left.shape[:2]:
                raise ValueError(
                    f"right image {i} is {right.shape[0]}x{right.shape[1]}, the left is "
                    f"{left.shape[0]}x{left.shape[1]}; a stereo pair needs one size"
                )
            out.append(right)
        return out

    def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The bare network on a prepared (B,3,H,W) float32 [0,1] batch (what `bench` times)."""
        return self.backend.run(x)
