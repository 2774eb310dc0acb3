"""Benchmark: where the time of ``--temporal`` goes, per frame, against the network's own
frame (issue #18's time target: at most 20% extra time per frame).

On ``benchmarks/video.py``'s pan clip (``--frames`` frames at ``--size`` px), each stage of
:class:`impasto.temporal.blend.TemporalStylizer` is timed alone, in CPU milliseconds per frame
(``time.process_time``, the best of ``--repeats``), with the library's own functions:

* ``flow x2``: the two DIS flows (back and forth) for each preset (``ultrafast``, ``fast``,
  ``medium``: the library's ``dis`` is medium, ``dis-fast``, the default, fast);
* ``consistency``: the forward-backward check that gives the non-occluded mask;
* ``fit``: the camera's zoom and shift (RANSAC), and the canvas in (bilinear) and back
  (Lanczos) of following the camera;
* ``warp prev``: the previous output warped by the flow (bilinear, bicubic, and Lanczos, the
  library's :data:`~impasto.temporal.blend.WARP`), and the blend (plain, the default once the
  camera is followed, and keeping the detail).

and the networks' frames in each precision (the instant networks: ``--preset 3`` and a
painting; batched by 4 as ``impasto stylize`` runs them frame by frame, and 4 canvases 8 px
larger each way, as following a moving camera runs them). The last table gives the *floor* of
any flow-guided blend as the issue describes it (two flows of the fastest preset for the
occlusion mask, one bilinear warp, a plain blend) and the default's own cost, as a share of each
network's frame.

    OMP_NUM_THREADS=1 python benchmarks/video_costs.py      # about 2 minutes

Prints tables and writes benchmarks/out/video_costs.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from video import clip_pan, write_report  # noqa: E402  (a sibling benchmark's)

OUT = Path(__file__).resolve().parent / "out"
PRESETS = ("ultrafast", "fast", "medium")
#: The previous output's warps timed: mode -> the name in the tables.
WARPS = {"bilinear": "bilinear", "bicubic": "bicubic", "lanczos": "Lanczos"}


def per_frame_ms(fn: Callable[[int], object], n: int, repeats: int) -> float:
    """The best over ``repeats`` of the CPU milliseconds per call of ``fn(i)``, ``i < n``."""
    best = float("inf")
    fn(0)  # warm up
    for _ in range(repeats):
        c0 = time.process_time()
        for i in range(n):
            fn(i)
        best = min(best, (time.process_time() - c0) * 1000 / n)
    return best


def stage_costs(frames: list[torch.Tensor], repeats: int) -> tuple[dict[str, float], float]:
    """CPU ms per frame of each stage of ``--temporal`` on consecutive ``frames``, and the
    pixels of a moving camera's canvas over the frame's."""
    import cv2

    from impasto.temporal.blend import keep_detail
    from impasto.temporal.flow import consistency_mask, to_gray8, warp_tensor
    from impasto.temporal.stabilize import Anchor, fit_motion, warp_affine_tensor

    grays = [to_gray8(f[0]) for f in frames]
    n = len(frames) - 1
    costs: dict[str, float] = {}
    flows = {}
    for preset in PRESETS:
        dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOpticalFlow_PRESET_{preset.upper()}"))

        def two(i, dis=dis):
            return dis.calc(grays[i + 1], grays[i], None), dis.calc(grays[i], grays[i + 1], None)

        costs[f"flow x2 ({preset})"] = per_frame_ms(two, n, repeats)
        flows[preset] = [two(i) for i in range(n)]
    back = [b for b, _ in flows["medium"]]
    masks = [consistency_mask(b, f) for b, f in flows["medium"]]
    costs["consistency"] = per_frame_ms(lambda i: consistency_mask(*flows["medium"][i]), n,
                                        repeats)
    costs["fit"] = per_frame_ms(lambda i: fit_motion(back[i], masks[i]), n, repeats)
    anchor = Anchor()
    anchor.update(None)
    k = min(5, n - 1)
    anchor.update(fit_motion(back[k], masks[k]))
    c, size = anchor.canvas(tuple(frames[0].shape[-2:]))
    inv = np.linalg.inv(c)
    canvas = warp_affine_tensor(frames[0], inv, size, "bilinear")
    hw = tuple(frames[0].shape[-2:])
    costs["canvas in (bilinear)"] = per_frame_ms(
        lambda i: warp_affine_tensor(frames[i], inv, size, "bilinear"), n, repeats)
    costs["canvas back (Lanczos)"] = per_frame_ms(
        lambda i: warp_affine_tensor(canvas, c, hw, "lanczos"), n, repeats)
    for mode, name in WARPS.items():
        costs[f"warp prev ({name})"] = per_frame_ms(
            lambda i, mode=mode: warp_tensor(frames[i], back[i], mode=mode), n, repeats)
    weights = [0.3 * torch.from_numpy(m).float()[None, None] for m in masks]

    def blend(i):
        return frames[i + 1] + weights[i] * (frames[i] - frames[i + 1])

    costs["blend (plain)"] = per_frame_ms(blend, n, repeats)
    costs["blend (keep detail)"] = per_frame_ms(
        lambda i: keep_detail(blend(i), frames[i + 1], weights[i]), n, repeats)
    return costs, size[0] * size[1] / (hw[0] * hw[1])


def network_costs(frames: list[torch.Tensor], precisions: list[str], repeats: int
                  ) -> dict[str, dict[str, float]]:
    """CPU ms per frame of the instant networks, frames batched by 4 and canvases (8 px
    larger each way, as a moving camera's) batched by 4."""
    from skimage import data

    from impasto.style.instant import InstantStyle

    inst = InstantStyle.from_file(device="cpu")
    style = torch.from_numpy(data.immunohistochemistry()).permute(2, 0, 1)[None].float() / 255
    nets = {"--preset 3": inst.stylizer(preset=3), "--method instant -s": inst.stylizer([style])}
    h, w = frames[0].shape[-2:]
    batches = [torch.cat(frames[i:i + 4]) for i in range(0, len(frames) - 3, 4)]
    canvases = [torch.nn.functional.interpolate(b, size=(h + 8, w + 8), mode="bilinear")
                for b in batches]
    out: dict[str, dict[str, float]] = {}
    for name, stylizer in nets.items():
        for p in precisions:
            runner = inst.runner(stylizer, precision=p)
            with torch.no_grad():
                out[f"{name} {p}"] = {
                    "batched": per_frame_ms(lambda i: runner(batches[i]), len(batches),
                                            repeats) / 4,
                    "canvases": per_frame_ms(lambda i: runner(canvases[i]), len(canvases),
                                             repeats) / 4}
    return out


def main(argv: list[str] | None = None) -> int:
    from impasto.device import cpu_has_fast_bf16

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--precisions", default=None,
                   help="e.g. fp32,bf16 (default: fp32, and bf16 where the CPU has it natively)")
    p.add_argument("--json", default=str(OUT / "video_costs.json"))
    args = p.parse_args(argv)
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: run with OMP_NUM_THREADS=1 for comparable CPU seconds", file=sys.stderr)
    precisions = (args.precisions.split(",") if args.precisions
                  else ["fp32", "bf16"] if cpu_has_fast_bf16() else ["fp32"])
    frames = clip_pan(args.frames, args.size)
    stages, ratio = stage_costs(frames, args.repeats)
    nets = network_costs(frames, precisions, args.repeats)
    fastest = min(stages[f"flow x2 ({q})"] for q in PRESETS)
    floor = fastest + stages["consistency"] + stages["warp prev (bilinear)"] \
        + stages["blend (plain)"]
    from impasto.temporal.blend import WARP, TemporalConfig

    cfg = TemporalConfig()
    flow = {"dis": "medium", "dis-fast": "fast"}[cfg.flow]
    blend = "keep detail" if (cfg.detail if cfg.detail is not None else not cfg.stabilize) \
        else "plain"
    default = (stages[f"flow x2 ({flow})"] + stages["consistency"] + stages["fit"]
               + stages["canvas in (bilinear)"] + stages["canvas back (Lanczos)"]
               + stages[f"warp prev ({WARPS[WARP]})"] + stages[f"blend ({blend})"])
    print(f"| stage ({args.size} px, {torch.get_num_threads()} thread(s)) | CPU ms / frame |")
    print("|---|---|")
    for k, v in stages.items():
        print(f"| {k} | {v:.2f} |")
    print(f"| **floor of a flow-guided blend** (fastest flows, check, bilinear warp, plain "
          f"blend) | "
          f"{floor:.2f} |")
    print(f"| **the default** ({flow} flows, follow the camera, {blend} blend) | "
          f"{default:.2f} |")
    print()
    print("| network | CPU ms / frame, batched by 4 | canvases | floor / frame | "
          "default's extra / frame |")
    print("|---|---|---|---|---|")
    rows = []
    for k, v in nets.items():
        extra = (default + v["canvases"] - v["batched"]) / v["batched"]
        rows.append({"network": k, **v, "floor_share": floor / v["batched"],
                     "default_extra": extra})
        print(f"| {k} | {v['batched']:.1f} | {v['canvases']:.1f} | "
              f"{100 * floor / v['batched']:.0f}% | {100 * extra:+.0f}% |")
    report = {"settings": {k: v for k, v in vars(args).items() if k != "json"},
              "machine": platform.processor() or platform.machine(),
              "threads": torch.get_num_threads(), "load": os.getloadavg(),
              "canvas_pixels_ratio": ratio, "stages_ms": stages, "floor_ms": floor,
              "default_ms": default, "networks": rows}
    write_report(Path(args.json), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
