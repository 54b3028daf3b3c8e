"""Model presets (the one registry of network sizes) and `ModelConfig`.

`paper` is NeWCRFs' KITTI configuration, which ADU-Depth uses for teacher and student. `swin_t` halves the
decoder with the encoder. `nano` is for tests (about 1.2 M parameters, a from-scratch Swin); it has no
pretrained weights. `ghostnet_nano` is the CPU demo's network: timm's GhostNet encoder behind the `nano`
decoder (about 2.2 M parameters). From scratch on a CPU budget a small CNN learns far faster than a tiny
Swin (validation AbsRel 0.125 vs 0.169 after 800 steps on the synthetic rig; docs/RESULTS.md).
`newcrfs_large07`, `newcrfs_base07` and `newcrfs_tiny07` are NeWCRFs' released architectures with its
forward pass exactly (`newcrfs_compat.py`), for its trained checkpoints (`adu-depth import-newcrfs`);
`newcrfs_large07` has the weights of `paper`, `newcrfs_tiny07` is the paper decoder on a Swin-T encoder (not
`swin_t`). `preset_table()` renders the registry as a markdown table (used by `benchmarks/bench_models.py`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import timm

from ..evaluation.sgbm import check_sgbm_range

COST_VOLUME_REDUCTIONS = (2, 4)  # the teacher's cost volume at 1/2 or 1/4 of the input resolution

__all__ = ["PRESETS", "ModelConfig", "Preset", "check_disparity_range", "get_preset", "preset_table"]

PresetName = Literal["paper", "swin_t", "nano", "ghostnet_nano", "newcrfs_large07", "newcrfs_base07",
                     "newcrfs_tiny07"]
STRIDE = 32


@dataclasses.dataclass(frozen=True)
class Preset:
    """Architecture of one preset.

    Args:
        encoder: timm model name of the backbone (with pretrained tag).
        decoder_dims: NeWCRF widths, finest first.
        decoder_heads: attention heads per decoder level, finest first.
        ppm_channels: channels of the PPM head (the value of the coarsest decoder level).
        window: window size of the decoder.
        drop_path_rate: stochastic depth of the backbone.
        encoder_kwargs: keyword overrides for `timm.create_model` (a custom-size Swin).
        has_pretrained: whether timm has weights for this exact encoder.
        newcrfs_exact: NeWCRFs' forward pass (PPM norms, max_depth·sigmoid, decoder masks, Swin pad-then-roll;
            `newcrfs_compat.py`) instead of the project's.
    """

    encoder: str
    decoder_dims: tuple[int, int, int, int]
    decoder_heads: tuple[int, int, int, int]
    ppm_channels: int
    window: int = 7
    drop_path_rate: float = 0.0
    encoder_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    has_pretrained: bool = True
    newcrfs_exact: bool = False


def _newcrfs(encoder: str) -> Preset:
    # NeWCRFs' decoder is the same for every backbone (NewCRFDepth.py): widths 128..1024, PPM 512
    return Preset(encoder=encoder, decoder_dims=(128, 256, 512, 1024), decoder_heads=(4, 8, 16, 32),
                  ppm_channels=512, drop_path_rate=0.3, newcrfs_exact=True)


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        encoder="swin_large_patch4_window7_224.ms_in22k",
        decoder_dims=(128, 256, 512, 1024),
        decoder_heads=(4, 8, 16, 32),
        ppm_channels=512,
        drop_path_rate=0.3,
    ),
    "swin_t": Preset(
        encoder="swin_tiny_patch4_window7_224.ms_in22k",
        decoder_dims=(64, 128, 256, 512),
        decoder_heads=(2, 4, 8, 16),
        ppm_channels=256,
        drop_path_rate=0.2,
    ),
    "nano": Preset(
        encoder="swin_tiny_patch4_window7_224",
        encoder_kwargs={"embed_dim": 16, "depths": (1, 1, 2, 1), "num_heads": (1, 1, 2, 4)},
        decoder_dims=(16, 32, 64, 128),
        decoder_heads=(1, 1, 2, 4),
        ppm_channels=64,
        has_pretrained=False,
    ),
    "ghostnet_nano": Preset(
        encoder="ghostnet_100.in1k",
        decoder_dims=(16, 32, 64, 128),
        decoder_heads=(1, 1, 2, 4),
        ppm_channels=64,
    ),
    "newcrfs_large07": _newcrfs("swin_large_patch4_window7_224.ms_in22k"),
    "newcrfs_base07": _newcrfs("swin_base_patch4_window7_224.ms_in22k"),
    "newcrfs_tiny07": _newcrfs("swin_tiny_patch4_window7_224.ms_in22k"),
}


def preset_table() -> str:
    """Markdown table of `PRESETS` (encoder, decoder widths and heads finest first, PPM, drop path)."""
    rows = ["| preset | encoder (timm) | encoder overrides | decoder widths | heads | PPM | drop path |",
            "|---|---|---|---|---|---|---|"]
    for name, p in PRESETS.items():
        kwargs = ", ".join(f"{k}={v}" for k, v in p.encoder_kwargs.items()) or "-"
        rows.append(f"| {name} | {p.encoder} | {kwargs} | {'/'.join(map(str, p.decoder_dims))} | "
                    f"{'/'.join(map(str, p.decoder_heads))} | {p.ppm_channels} | {p.drop_path_rate} |")
    return "\n".join(rows)


def check_disparity_range(max_disparity: int, width: int, what: str) -> None:
    """Raise ValueError unless a cost volume over `max_disparity` pixels fits an input `width` wide."""
    if isinstance(max_disparity, bool) or not isinstance(max_disparity, int) or max_disparity <= 0 \
            or max_disparity % 4:
        raise ValueError(f"model.max_disparity must be a positive multiple of 4 pixels, "
                         f"got {max_disparity!r}")
    if max_disparity >= width:
        raise ValueError(
            f"model.max_disparity {max_disparity} px does not fit {what} width {width} px: the cost-volume "
            f"teacher needs inputs wider than its disparity range; lower model.max_disparity "
            f"(e.g. {max(4, width // 8 * 4)}) or use a wider input"
        )


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


@dataclasses.dataclass
class ModelConfig:
    """Network configuration, stored in every checkpoint as `model_config`.

    Args:
        preset: architecture from `PRESETS`.
        max_depth: largest predicted depth in metres (KITTI: 80).
        min_depth: smallest predicted depth in metres (keeps log-depth finite).
        input_size: (H, W) the network is built and trained for; multiples of 32.
        pretrained: load timm's ImageNet weights for the encoder (downloads them).
        backbone: any timm model name replacing the preset's encoder (e.g. resnet18, convnext_atto); the
            decoder stays the preset's.
        drop_path_rate: stochastic depth of the encoder; None takes the preset's.
        log_var_range: (low, high) bounds of the student's log variance s = log σ²; the default (−10, 6)
            spans σ ≈ 7 mm … 20 m (see `heads.py`).
        teacher_fusion: how the teacher combines its two views: "concat" stacks them on channels before
            the encoder (the paper's design), "cost_volume" matches them explicitly in a correlation volume
            at 1/4 resolution added to the left view's encoder features (`stereo.py`). Ignored by students.
        max_disparity: largest disparity the cost volume searches, in input pixels (multiple of 4); it
            sets the nearest depth the teacher can see: f·B / max_disparity.
        cost_volume_reduction: the cost volume is built at 1/4 (4) or 1/2 (2) of the input resolution.
            At 1/4 one candidate disparity is 4 input pixels, coarser than the whole disparity of anything
            beyond f·B / 4 px (about 25 m on the demo's rig); 1/2 halves that step for a little more compute.
        teacher_hint: "sgbm" also gives the cost-volume teacher OpenCV SGBM's disparity of its input pair
            (computed on the CPU in every forward pass, `stereo.py`): classical matching as an input cue
            the network learns when to trust; "none" (the default) is the learned matching alone.
        refine: correct the depth head's upsampled output at the input resolution with a few convolutions
            over the image (and SGBM's full-resolution disparity for a teacher with the hint), so that
            structures narrower than the head's 1/4 resolution can appear (`refine.py`). Teacher or student.
    """

    preset: PresetName = "nano"
    max_depth: float = 80.0
    min_depth: float = 1e-3
    input_size: tuple[int, int] = (352, 1120)
    pretrained: bool = False
    backbone: str | None = None
    drop_path_rate: float | None = None
    log_var_range: tuple[float, float] = (-10.0, 6.0)
    teacher_fusion: Literal["concat", "cost_volume"] = "concat"
    max_disparity: int = 192
    cost_volume_reduction: Literal[2, 4] = 4
    teacher_hint: Literal["none", "sgbm"] = "none"
    refine: bool = False

    def validate(self) -> None:
        preset = get_preset(self.preset)
        h, w = self.input_size
        if h <= 0 or w <= 0 or h % STRIDE or w % STRIDE:
            raise ValueError(
                f"model.input_size must be positive multiples of {STRIDE}, got {h}x{w}; "
                f"e.g. {max(STRIDE, round(h / STRIDE) * STRIDE)}x{max(STRIDE, round(w / STRIDE) * STRIDE)}"
            )
        if not 0 < self.min_depth < self.max_depth:
            raise ValueError(f"model depth range needs 0 < min_depth < max_depth, "
                             f"got min_depth={self.min_depth}, max_depth={self.max_depth}")
        low, high = self.log_var_range
        if not low < high:
            raise ValueError(f"model.log_var_range must be (low, high) with low < high, "
                             f"got {self.log_var_range}")
        if self.teacher_fusion not in ("concat", "cost_volume"):
            raise ValueError(f"model.teacher_fusion must be 'concat' or 'cost_volume', "
                             f"got {self.teacher_fusion!r}")
        if self.cost_volume_reduction not in COST_VOLUME_REDUCTIONS:
            raise ValueError(
                f"model.cost_volume_reduction must be 2 or 4, got {self.cost_volume_reduction!r}"
            )
        if self.teacher_hint not in ("none", "sgbm"):
            raise ValueError(f"model.teacher_hint must be 'none' or 'sgbm', got {self.teacher_hint!r}")
        if self.teacher_hint != "none" and self.teacher_fusion != "cost_volume":
            raise ValueError(f"model.teacher_hint {self.teacher_hint!r} feeds the cost-volume teacher; it "
                             f"needs model.teacher_fusion: cost_volume, got {self.teacher_fusion!r}")
        if self.teacher_fusion == "cost_volume":
            check_disparity_range(self.max_disparity, w, "model.input_size")
        if self.teacher_hint == "sgbm":
            check_sgbm_range(self.max_disparity, w, "model.max_disparity", "the SGBM hint's model.input_size")
        if self.drop_path_rate is not None and not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"model.drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        if self.backbone is not None and not timm.is_model(self.backbone):
            raise ValueError(f"model.backbone {self.backbone!r} is not a timm model; "
                             f"see timm.list_models(), e.g. resnet18 or convnext_atto")
        if self.pretrained and self.backbone is None and not preset.has_pretrained:
            raise ValueError(f"preset {self.preset!r} has no pretrained encoder weights; "
                             f"set model.pretrained=false or choose model.backbone=<timm name>")

    @property
    def arch(self) -> Preset:
        """The preset, with `backbone` and `drop_path_rate` applied."""
        preset = get_preset(self.preset)
        changes: dict[str, Any] = {}
        if self.backbone is not None:
            changes.update(encoder=self.backbone, encoder_kwargs={})
        if self.drop_path_rate is not None:
            changes["drop_path_rate"] = self.drop_path_rate
        return dataclasses.replace(preset, **changes) if changes else preset
