"""Deployment runtime: ONNX export, TensorRT / ONNX Runtime / PyTorch backends and `DepthEstimator`.

See docs/RUNTIME.md (backends, export, benchmarks) and docs/CAMERAS.md (policies and focal rescaling).
`tensorrt` is imported only when a TensorRT engine is built or run.
"""

from adu_depth_core.vocab import BACKENDS, POLICIES

from .backends import InferenceGraph, ModelInfo, OnnxRuntimeBackend, TorchBackend, load_student
from .estimator import DepthEstimator
from .export import export_onnx, read_onnx_info
from .preprocess import InputMapping, focal_scale_factor, plan_input
from .tensorrt_backend import EngineSpec, TensorRTBackend, ensure_engine, tensorrt_available

__all__ = [
    "BACKENDS",
    "POLICIES",
    "DepthEstimator",
    "EngineSpec",
    "InferenceGraph",
    "InputMapping",
    "ModelInfo",
    "OnnxRuntimeBackend",
    "TensorRTBackend",
    "TorchBackend",
    "ensure_engine",
    "export_onnx",
    "focal_scale_factor",
    "load_student",
    "plan_input",
    "read_onnx_info",
    "tensorrt_available",
]
