"""Temporal consistency for video: optical flow, warping and occlusion masks
(:mod:`impasto.temporal.flow`), and the flow-guided blend of stylised frames
(:mod:`impasto.temporal.blend`). Needs OpenCV (``pip install 'impasto[video]'``)."""

from impasto.temporal.flow import (
    FLOW_METHODS,
    consistency_mask,
    optical_flow,
    warp,
    warp_tensor,
)

__all__ = ["FLOW_METHODS", "consistency_mask", "optical_flow", "warp", "warp_tensor"]
