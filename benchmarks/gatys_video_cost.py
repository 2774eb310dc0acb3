"""Benchmark: what Gatys on video costs (issue #18): ``impasto stylize clip.mp4 -s ... --size
256`` on a 10-second clip, extrapolated from a few frames.

A short pan over scikit-image's astronaut (256 px, 1 px per frame) is stylised with the
immunohistochemistry image at the CLI's defaults (precision ``auto``), with short schedules:
the first frame 4 iterations per scale, later frames 8. From each iteration's timestamps
(``time.process_time`` for CPU seconds, all threads; ``time.perf_counter`` for wall) it takes
the median cost of an iteration at 128 and at 256 px and the per-frame overhead of a later frame
(flow, targets, start), and extrapolates to the default schedule: the first frame 100
iterations at 128 px + 150 at 256 px, every later frame ``DEFAULT_FRAME_ITERATIONS`` at 256 px,
for 10 s at 24 and 30 fps.

    OMP_NUM_THREADS=1 python benchmarks/gatys_video_cost.py --threads 1   # ~2 CPU minutes
    OMP_NUM_THREADS=2 python benchmarks/gatys_video_cost.py --threads 2
    python benchmarks/gatys_video_cost.py --quick                         # 128 px, 3 frames

Prints JSON and writes benchmarks/out/gatys_video_cost_<threads>t.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent / "out"


def pan(n: int, size: int) -> list[torch.Tensor]:
    """The astronaut at ``size`` px, moved right by 1 px per frame (borders replicated)."""
    from skimage import data

    from impasto.io import resize_tensor

    img = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 255
    img = resize_tensor(img, (size, size))
    pad = torch.nn.functional.pad(img, (n, 0, 0, 0), mode="replicate")
    return [pad[..., :, n - i: n - i + size].contiguous() for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    from skimage import data

    from impasto.io import load_image, to_tensor
    from impasto.style import GatysConfig, GatysStyleTransfer
    from impasto.style.gatys_config import COARSE_ITERATIONS, FINE_ITERATIONS
    from impasto.style.gatys_video import DEFAULT_FRAME_ITERATIONS, stylize_frames

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--frames", type=int, default=5)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--quick", action="store_true", help="128 px, 3 frames")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.frames = 128, 3
    torch.set_num_threads(args.threads)
    frames = pan(args.frames, args.size)
    style = to_tensor(load_image(data.immunohistochemistry()))
    transfer = GatysStyleTransfer(GatysConfig(size=args.size, device="cpu", iterations=4))
    marks: list[tuple[int, int, float, float]] = []  # frame, height, cpu, wall

    def mark(k: int, info) -> None:
        marks.append((k, info.size[0], time.process_time(), time.perf_counter()))

    for _ in stylize_frames(transfer, frames, [style], frame_iterations=8, callback=mark):
        pass

    def per_iteration(height: int, first: bool) -> tuple[float, float]:
        pairs = [(a, b) for a, b in zip(marks, marks[1:])
                 if a[0] == b[0] and a[1] == b[1] == height and (a[0] == 0) == first]
        return (float(np.median([b[2] - a[2] for a, b in pairs])),
                float(np.median([b[3] - a[3] for a, b in pairs])))

    fine = per_iteration(args.size, first=False)
    coarse = per_iteration(args.size // 2, first=True) if args.size >= 256 else None
    overhead = [(b[2] - a[2] - fine[0], b[3] - a[3] - fine[1])
                for a, b in zip(marks, marks[1:]) if b[0] == a[0] + 1 and a[0] >= 1]
    res: dict = {"threads": args.threads, "size": args.size, "precision": str(transfer.dtype),
                 "frames_measured": args.frames, "frame_iterations": DEFAULT_FRAME_ITERATIONS,
                 "load": os.getloadavg()}
    for i, kind in enumerate(("cpu", "wall")):
        it_fine = fine[i]
        res[f"{kind}_s_per_iteration_{args.size}px"] = it_fine
        over = float(np.median([o[i] for o in overhead])) if overhead else 0.0
        res[f"{kind}_frame_overhead_s"] = over
        first = FINE_ITERATIONS * it_fine
        if coarse is not None:
            res[f"{kind}_s_per_iteration_{args.size // 2}px"] = coarse[i]
            first += COARSE_ITERATIONS * coarse[i]
        later = DEFAULT_FRAME_ITERATIONS * it_fine + over
        res[f"{kind}_first_frame_s"] = first
        res[f"{kind}_later_frame_s"] = later
        for fps in (24, 30):
            res[f"{kind}_10s_clip_{fps}fps_h"] = (first + (10 * fps - 1) * later) / 3600
    print(json.dumps(res, indent=1))
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"gatys_video_cost_{args.threads}t.json"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=1) + "\n")
    tmp.replace(out)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
