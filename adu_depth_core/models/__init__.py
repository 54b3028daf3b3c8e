"""Depth networks: NeWCRFs-style teacher (stereo) and student (mono + uncertainty), see `depthnet.py`."""

from .depthnet import DepthNet, DepthOutput, build_model, build_student, build_teacher, load_model
from .encoder import Encoder
from .heads import DepthHead, UncertaintyHead, log_var_pyramid
from .newcrf import NeWCRFDecoder, NeWCRFLevel
from .ppm import PPM, adaptive_avg_pool2d_export
from .presets import PRESETS, ModelConfig, Preset, get_preset, preset_table

__all__ = [
    "PPM",
    "PRESETS",
    "DepthHead",
    "DepthNet",
    "DepthOutput",
    "Encoder",
    "ModelConfig",
    "NeWCRFDecoder",
    "NeWCRFLevel",
    "Preset",
    "UncertaintyHead",
    "adaptive_avg_pool2d_export",
    "build_model",
    "build_student",
    "build_teacher",
    "get_preset",
    "load_model",
    "log_var_pyramid",
    "preset_table",
]
