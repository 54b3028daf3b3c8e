"""ADU-Depth core: data, models, distillation, training, evaluation and runtime (no ROS imports)."""

__version__ = "0.1.0"
