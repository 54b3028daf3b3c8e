"""The inference graph every backend runs, its metadata, and the PyTorch and ONNX Runtime backends.

Graph contract (what `adu-depth export` writes and every backend executes):

    input   image  float32 (B, 3, H, W)  RGB in [0, 1]; ImageNet normalisation is inside the graph
    output  depth  float32 (B, 1, H, W)  metres
    output  sigma  float32 (B, 1, H, W)  metres, exp(0.5 · log σ²) of the student's uncertainty head

RGB in [0, 1] rather than uint8 keeps one input format for every runtime (the training loaders, the
ONNX graph and the TensorRT engine), and lets resize/crop happen in float before the network.

A backend exposes `info` (`ModelInfo`), `max_batch` (None = any), `device` (a CUDA `torch.device`
when it consumes device tensors through `run_torch`, else None) and `run(x) -> (depth, sigma)` on
float32 numpy arrays.

`TorchBackend` also runs what is never exported: a stereo teacher (input (B, 6, H, W), the left then the
right view; sigma None) and any in-memory `DepthNet`, e.g. the model being trained (validation).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from adu_depth_core import __version__
from adu_depth_core.checkpoint import load_checkpoint
from adu_depth_core.fileio import file_sha256

logger = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAMES = ("depth", "sigma")
INPUT_FORMAT = "float32 NCHW RGB in [0,1]"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


@dataclass(frozen=True)
class ModelInfo:
    """What a runtime knows about the network it runs."""

    source: str
    backend: str
    input_hw: tuple[int, int]
    max_depth: float | None = None
    focal_px: float | None = None  # fx (pixels) of the training images at the network input
    preset: str | None = None
    stage: str = "student"
    source_sha256: str | None = None
    opset: int | None = None
    version: str | None = None
    sigma_trained: bool = True  # False: the UEM was never trained (imported weights), σ is a placeholder

    @property
    def needs_right(self) -> bool:
        """Stereo input: the teacher reads the left and the right view."""
        return self.stage == "teacher"

    @property
    def has_sigma(self) -> bool:
        """The student predicts σ; the teacher has no uncertainty head."""
        return self.stage == "student"

    def to_metadata(self) -> dict[str, str]:
        """String key/values for ONNX `metadata_props` and the TensorRT engine sidecar."""
        meta = {
            "preset": self.preset or "",
            "input_size": f"{self.input_hw[0]}x{self.input_hw[1]}",
            "max_depth": "" if self.max_depth is None else repr(float(self.max_depth)),
            "focal_px": "" if self.focal_px is None else repr(float(self.focal_px)),
            "source_sha256": self.source_sha256 or "",
            "stage": self.stage,
            "adu_depth_version": self.version or __version__,
            "input_format": INPUT_FORMAT,
            "outputs": "depth [m], sigma [m]",
            "sigma_trained": "true" if self.sigma_trained else "false",
        }
        if self.opset is not None:
            meta["opset"] = str(self.opset)
        return meta

    @classmethod
    def from_metadata(
        cls, meta: dict[str, str], source: str, backend: str, input_hw: tuple[int, int]
    ) -> ModelInfo:
        """Inverse of `to_metadata`; `input_hw` comes from the graph itself and must agree with it."""

        def number(key: str) -> float | None:
            text = meta.get(key, "")
            if not text:
                return None
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{source}: metadata {key}={text!r} is not a number") from None
            return value if math.isfinite(value) and value > 0 else None

        stage = meta.get("stage") or "student"
        if stage != "student":
            raise ValueError(f"{source}: stage {stage!r} — only the monocular student is deployed")
        size = meta.get("input_size")
        if size and size != f"{input_hw[0]}x{input_hw[1]}":
            raise ValueError(
                f"{source}: metadata input_size {size} disagrees with the graph input "
                f"{input_hw[0]}x{input_hw[1]}"
            )
        opset = meta.get("opset")
        return cls(
            source=source,
            backend=backend,
            input_hw=input_hw,
            max_depth=number("max_depth"),
            focal_px=number("focal_px"),
            preset=meta.get("preset") or None,
            stage=stage,
            source_sha256=meta.get("source_sha256") or None,
            opset=int(opset) if opset and opset.isdigit() else None,
            version=meta.get("adu_depth_version") or None,
            sigma_trained=meta.get("sigma_trained", "true") != "false",
        )


class InferenceGraph(nn.Module):
    """The deployed graph: a student `DepthNet` in inference mode with σ in metres.

    image (B,3,H,W) RGB [0,1] → depth (B,1,H,W) m, sigma = exp(0.5·log_var) (B,1,H,W) m.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        model.inference_only = True
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        depth, log_var = self.model(image)
        return depth, torch.exp(0.5 * log_var)


def check_network_size(hw: tuple[int, int], what: str) -> tuple[int, int]:
    h, w = (int(v) for v in hw)
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise ValueError(f"{what}: network input {h}x{w} must be positive multiples of 32 (e.g. 352x1216)")
    return h, w


def source_kind(path: str | Path) -> str:
    """'checkpoint', 'onnx' or 'engine' from the file suffix; FileNotFoundError / ValueError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    suffix = path.suffix.lower()
    for kind, suffixes in (
        ("checkpoint", CHECKPOINT_SUFFIXES),
        ("onnx", ONNX_SUFFIXES),
        ("engine", ENGINE_SUFFIXES),
    ):
        if suffix in suffixes:
            return kind
    raise ValueError(
        f"{path}: unknown model file type {suffix!r}; expected a checkpoint {CHECKPOINT_SUFFIXES}, "
        f"an ONNX file {ONNX_SUFFIXES} or a TensorRT engine {ENGINE_SUFFIXES}"
    )


# ---- checkpoints -----------------------------------------------------------------------------------


def model_info(
    model: nn.Module,
    source: str,
    focal_px: float | None = None,
    *,
    sha256: str | None = None,
    sigma_trained: bool = True,
) -> ModelInfo:
    """The `ModelInfo` of a `DepthNet` (teacher or student): network input, max depth and preset from its
    config, `focal_px` = fx of its training images at the network input (None: no focal correction)."""
    config = model.config
    return ModelInfo(
        source=source,
        backend="torch",
        input_hw=check_network_size(config.input_size, source),
        max_depth=float(config.max_depth),
        focal_px=float(focal_px) if focal_px else None,
        preset=config.preset,
        stage=str(model.stage),
        source_sha256=sha256,
        version=__version__,
        sigma_trained=sigma_trained,
    )


def load_network(
    source: str | Path | dict[str, Any],
    input_hw: tuple[int, int] | None = None,
    stages: tuple[str, ...] = ("student", "teacher"),
) -> tuple[nn.Module, ModelInfo]:
    """Rebuild a `DepthNet` (eval mode, CPU) of one of `stages` from a checkpoint path or dict, with its
    `ModelInfo`.

    `input_hw` rebuilds it for another network input size (Swin windows are fixed at build time); the
    weights do not depend on it.
    """
    from adu_depth_core.models import load_model

    if isinstance(source, dict):
        ckpt, name, sha = source, "<checkpoint dict>", None
    else:
        ckpt, name = load_checkpoint(source), str(source)
        sha = file_sha256(source)
    stage = ckpt.get("stage")
    if stage not in stages:
        if stages == ("student",):
            raise ValueError(
                f"{name}: this is a {stage!r} checkpoint; only the monocular student is deployed "
                "(pass the checkpoint written by the student/distillation stage)"
            )
        raise ValueError(f"{name}: checkpoint stage {stage!r}; expected one of {list(stages)}")
    if input_hw is not None:
        cfg = dict(ckpt["model_config"], input_size=list(check_network_size(input_hw, name)))
        ckpt = {**ckpt, "model_config": cfg}
    try:
        model = load_model(ckpt)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    model.eval()
    meta = ckpt.get("meta") or {}
    sigma_trained = meta.get("sigma_trained", True) is not False
    return model, model_info(model, name, meta.get("focal_px"), sha256=sha, sigma_trained=sigma_trained)


def load_student(
    source: str | Path | dict[str, Any], input_hw: tuple[int, int] | None = None
) -> tuple[nn.Module, ModelInfo]:
    """`load_network` for the student only (what is exported and deployed); a teacher is refused."""
    return load_network(source, input_hw, stages=("student",))


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} requested but CUDA is not available here; use device='cpu'")
    return device


class TorchBackend:
    """PyTorch eager on CPU or a CUDA device, for a student or a stereo teacher `DepthNet`.

    Each call runs the model in eval mode and hands its training flag back afterwards, so the model being
    trained is validated in place (not copied, not moved). Outputs: depth and σ = exp(0.5 · log σ²) for a
    student; depth and None for a teacher, whose input has 6 channels (left, then right).

    Args:
        model: a `DepthNet` (or any module returning `DepthOutput` or `(depth, log_var)`).
        info: its `ModelInfo` (`model_info`).
        device: where to run it (the model is moved there); None: where its parameters already are.
    """

    name = "torch"

    def __init__(self, model: nn.Module, info: ModelInfo, device: str | torch.device | None = None):
        if device is not None:
            dev = resolve_device(device)
            model.to(dev)
        else:
            first = next(model.parameters(), None)
            dev = first.device if first is not None else torch.device("cpu")
        self.model = model
        self.info = dataclasses.replace(info, backend=self.name)
        self.max_batch: int | None = None
        self.device = dev if dev.type == "cuda" else None
        self._dev = dev

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device | None = None,
        input_hw: tuple[int, int] | None = None,
    ) -> TorchBackend:
        """A teacher or student checkpoint on `device` (default: CUDA when available)."""
        model, info = load_network(path, input_hw)
        return cls(model, info, resolve_device(device))

    @classmethod
    def from_model(
        cls, model: nn.Module, focal_px: float | None = None, name: str | None = None
    ) -> TorchBackend:
        """An in-memory `DepthNet` where it is (e.g. the model being trained, on its GPU); `focal_px`: fx of
        its training images at the network input (None: depth is not rescaled to the camera)."""
        source = name or f"<in-memory {model.stage} ({model.config.preset})>"
        return cls(model, model_info(model, source, focal_px))

    def run_torch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                out = self.model(x)
        finally:
            self.model.train(was_training)
        depth, log_var = out if isinstance(out, tuple) else (out.depth, out.log_var)
        sigma = None if log_var is None else torch.exp(0.5 * log_var.float())
        return depth.float(), sigma

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        depth, sigma = self.run_torch(torch.from_numpy(x).to(self._dev))
        return depth.cpu().numpy(), None if sigma is None else sigma.cpu().numpy()


# ---- ONNX graphs -----------------------------------------------------------------------------------


def check_graph_io(
    source: str, inputs: list[tuple[str, list[Any], str]], outputs: list[str]
) -> tuple[tuple[int, int], int | None]:
    """Check a graph's inputs [(name, shape, element type)] / output names against the contract.

    Returns the fixed network (H, W) and the fixed batch size (None when the batch is dynamic).
    """
    expected = (
        f"expected one input '{INPUT_NAME}' float32 (B,3,H,W) with fixed H, W and outputs "
        f"{list(OUTPUT_NAMES)}, as written by `adu-depth export`"
    )
    found = f"found inputs {[(n, list(s), t) for n, s, t in inputs]}, outputs {outputs}"
    if len(inputs) != 1 or inputs[0][0] != INPUT_NAME or not set(OUTPUT_NAMES) <= set(outputs):
        raise ValueError(f"{source}: {expected}; {found}")
    _, shape, elem = inputs[0]
    if len(shape) != 4 or shape[1] != 3 or not all(isinstance(d, int) for d in shape[2:]):
        raise ValueError(f"{source}: {expected}; {found}")
    if "float" not in elem.lower() or "16" in elem or "64" in elem:
        raise ValueError(f"{source}: {expected}; {found}")
    hw = check_network_size((shape[2], shape[3]), source)
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    return hw, batch


def _ort_providers(device: str | torch.device | None) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    kind = None if device is None else torch.device(device).type
    if kind == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise ValueError(
                f"device {device} requested for ONNX Runtime but its CUDA provider is not installed "
                f"(available: {available}); install onnxruntime-gpu or use device='cpu'"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if kind is None and "CUDAExecutionProvider" in available and torch.cuda.is_available():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxRuntimeBackend:
    """ONNX Runtime with the CUDA provider when present (and not refused by `device`), else CPU."""

    name = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        device: str | torch.device | None = None,
        threads: int | None = None,
    ):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
        options.log_severity_level = 3
        providers = _ort_providers(device)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # ORT raises its own Fail / InvalidProtobuf / InvalidGraph types
            raise ValueError(f"{path}: not a loadable ONNX model ({type(exc).__name__}: {exc})") from None
        inputs = [(i.name, list(i.shape), i.type) for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        hw, batch = check_graph_io(str(path), inputs, outputs)
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        self.info = ModelInfo.from_metadata(meta, str(path), self.name, hw)
        self.max_batch = batch
        self.device = None
        self.providers = self.session.get_providers()

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        depth, sigma = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
        return depth, sigma
