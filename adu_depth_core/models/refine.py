"""Full-resolution refinement of the depth head's output, guided by the input image.

The depth head predicts at 1/4 of the input and upsamples bilinearly, so nothing narrower than about four
pixels (a pole, a box's edge) can appear in the depth map, however well the network knows it is there. This
module corrects the upsampled depth at the input resolution from a few small convolutions over the image,
the coarse log depth and, for a teacher with the SGBM hint, SGBM's full-resolution disparity (the same
channels as the pooled hint, `pooled_disparity_hint` at reduction 1). Dilated convolutions give it a
field of view of 19 px with few weights (not few seconds: on a CPU it adds about 0.3 s to a training step
at batch 8 and 96x320, docs/benchmarks/train.md).

The correction is a residual on the logit of the depth head's sigmoid, so the refined depth stays within
(min_depth, max_depth); its last convolution starts at zero, so an untrained refinement returns the depth
head's output unchanged and training starts from the unrefined network.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .stereo import ImageNetNormalize

__all__ = ["GuidedRefinement"]

FRACTION_EPS = 1e-6  # keeps the logit finite where the depth head's sigmoid saturates
LOG_DEPTH_FLOOR = 1e-3  # metres; a head without a depth floor (NeWCRFs' own) can output 0


class GuidedRefinement(nn.Module):
    """depth, image[, guide] → refined depth, all at the input resolution.

    Args:
        min_depth, max_depth: the depth head's range, which the refined depth keeps.
        guide_channels: channels of the optional extra guide (0: image and depth only).
        width: channels of the hidden convolutions.
        dilations: one 3x3 convolution per entry, with that dilation.
    """

    def __init__(
        self,
        min_depth: float,
        max_depth: float,
        guide_channels: int = 0,
        width: int = 8,
        dilations: tuple[int, ...] = (1, 2, 4, 1),
    ):
        super().__init__()
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.guide_channels = guide_channels
        self.normalize = ImageNetNormalize()
        layers: list[nn.Module] = []
        cin = 3 + 1 + guide_channels
        for d in dilations:
            layers += [nn.Conv2d(cin, width, 3, padding=d, dilation=d), nn.LeakyReLU(0.1, inplace=True)]
            cin = width
        self.body = nn.Sequential(*layers)
        self.residual = nn.Conv2d(width, 1, 3, padding=1)
        nn.init.zeros_(self.residual.weight)
        nn.init.zeros_(self.residual.bias)

    def forward(
        self, depth: torch.Tensor, image: torch.Tensor, guide: torch.Tensor | None = None
    ) -> torch.Tensor:
        """
        Args:
            depth: (B, 1, H, W) the depth head's output in metres.
            image: (B, 3, H, W) RGB in [0, 1] (the left view for a teacher).
            guide: (B, guide_channels, H, W) extra cues, or None when `guide_channels` is 0.
        """
        if (guide is None) != (self.guide_channels == 0):
            raise ValueError(f"the refinement was built for {self.guide_channels} guide channels, got "
                             f"{'none' if guide is None else guide.shape[1]}")
        span = self.max_depth - self.min_depth
        fraction = ((depth - self.min_depth) / span).clamp(FRACTION_EPS, 1 - FRACTION_EPS)
        log_depth = torch.log(depth.clamp_min(LOG_DEPTH_FLOOR)) / math.log(self.max_depth)
        cues = [self.normalize(image), log_depth]
        if guide is not None:
            cues.append(guide)
        correction = self.residual(self.body(torch.cat(cues, 1)))
        return self.min_depth + span * torch.sigmoid(torch.logit(fraction) + correction)
