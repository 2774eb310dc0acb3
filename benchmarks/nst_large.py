"""Gatys at large sizes (issue #17): time per full-size evaluation and iteration, peak memory and
the loss per output size, with the full-size scale evaluated in tiles (style/tiled.py) when it
does not fit the memory budget.

    python benchmarks/nst_large.py --sizes 1024 [--iterations 3] [--json-lines out.jsonl]

Run one size per process when you compare peak memory (the maximum resident set only grows).
Peak memory is torch.cuda.max_memory_allocated on a GPU, the process's maximum resident set on
a CPU. Each loss-and-gradient evaluation is timed (wall and CPU seconds of this process); an
L-BFGS iteration is one evaluation plus the rare backtrack, except the first of a scale, which
also evaluates its start point. Coarse scales above ``--coarse-max`` px get no iterations (the
result is only upsampled through them), so the time goes to the full size. Content and style:
scikit-image's astronaut (upscaled) and immunohistochemistry sample when scikit-image is
installed, else seeded noise. ``--save DIR`` writes each result as DIR/nst_large_SIZE.png.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import torch

from impasto.style import GatysConfig, GatysStyleTransfer
from impasto.style.optim import ImageLBFGS


def _images() -> tuple[torch.Tensor, torch.Tensor, str]:
    try:
        from skimage import data
    except ImportError:
        g = torch.Generator().manual_seed(0)
        content = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 256, 256, generator=g), 9, 1, 4)
        return content, torch.rand(1, 3, 256, 256, generator=g) ** 2, "seeded noise"

    def t(a):
        return torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float() / 255

    return (t(data.astronaut()), t(data.immunohistochemistry()),
            "skimage astronaut x immunohistochemistry")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_size(args, size: int) -> dict:
    cfg = GatysConfig(size=size, device=args.device, precision=args.precision, tile=args.tile,
                      style_scale=args.style_scale, optimizer=args.optimizer)
    sizes = cfg.scale_sizes()
    cfg.iterations = tuple([args.coarse_iterations if s <= args.coarse_max else 0
                            for s in sizes[:-1]] + [args.iterations])
    tr = GatysStyleTransfer(cfg)
    content, style, source = _images()
    evals: list[tuple[tuple[int, int], float, float]] = []
    # One loss-and-gradient evaluation: L-BFGS's, or an Adam step (one evaluation + update).
    owner, name = (ImageLBFGS, "_evaluate") if args.optimizer == "lbfgs" \
        else (torch.optim.Adam, "step")
    original = getattr(owner, name)

    def timed(self, closure):
        t, c = time.perf_counter(), _cpu()
        out = original(self, closure)
        x = self.x if args.optimizer == "lbfgs" else self.param_groups[0]["params"][0]
        evals.append((tuple(x.shape[-2:]), time.perf_counter() - t, _cpu() - c))
        return out

    setattr(owner, name, timed)
    if tr.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    steps: list = []
    t0, c0, load0 = time.perf_counter(), _cpu(), os.getloadavg()[0]
    try:
        out = tr.run(content, [style], callback=steps.append)
    finally:
        setattr(owner, name, original)
    if tr.device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    hw = tuple(out.shape[-2:])
    full = [e for e in evals if e[0] == hw]
    full_steps = [s for s in steps if s.size == hw]
    mp = hw[0] * hw[1] / 1e6
    pairs, hdtype = tr.history(hw)
    row = {
        "size": size, "hw": list(hw), "megapixels": round(mp, 2), "images": source,
        "seconds": time.perf_counter() - t0, "cpu_seconds": _cpu() - c0,
        "peak_bytes": peak, "final_loss": steps[-1].loss if steps else None,
        "tiles_at_full_size": tr.tiles(hw) and len(tr.tiles(hw)) or 1,
        "tile_side": tr.tile_side(hw), "budget_bytes": tr.budget(),
        "memory_plan": tr.memory(hw), "lbfgs_pairs": pairs,
        "lbfgs_dtype": str(hdtype).replace("torch.", ""),
        "iterations": list(cfg.iterations), "full_size_iterations": len(full_steps),
        "full_size_evaluations": len(full),
        "s_per_evaluation": sum(e[1] for e in full) / max(1, len(full)),
        "cpu_s_per_evaluation": sum(e[2] for e in full) / max(1, len(full)),
        "full_size_seconds": sum(e[1] for e in full),
        "device": str(tr.device), "precision": str(tr.dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(), "load_start": load0,
        "load_end": os.getloadavg()[0],
    }
    row["s_per_evaluation_per_mp"] = row["s_per_evaluation"] / mp
    row["s_per_iteration"] = row["full_size_seconds"] / max(1, len(full_steps))
    if args.save:
        from impasto.io import save_image

        os.makedirs(args.save, exist_ok=True)
        save_image(out, os.path.join(args.save, f"nst_large_{size}.png"))
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1024])
    p.add_argument("--iterations", type=int, default=3, help="at the full size")
    p.add_argument("--coarse-iterations", type=int, default=10)
    p.add_argument("--coarse-max", type=int, default=1024,
                   help="coarse scales larger than this get no iterations")
    p.add_argument("--style-scale", type=float, default=0.5)
    p.add_argument("--optimizer", default="lbfgs", choices=("lbfgs", "adam"))
    p.add_argument("--tile", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--save", default=None, metavar="DIR")
    p.add_argument("--json-lines", default=None, help="append one JSON object per size")
    args = p.parse_args()
    for size in args.sizes:
        row = run_size(args, size)
        print(f"{size:5d} px: {row['seconds']:8.1f} s ({row['cpu_seconds']:.0f} CPU s), peak "
              f"{row['peak_bytes'] / 2**30:6.2f} GiB, {row['s_per_evaluation']:.1f} s/evaluation "
              f"({row['s_per_evaluation_per_mp']:.1f} s/MP), loss {row['final_loss']:.4g}, "
              f"{row['tiles_at_full_size']} tile(s), {row['lbfgs_pairs']} {row['lbfgs_dtype']} "
              f"pairs, load {row['load_start']:.1f}->{row['load_end']:.1f}", flush=True)
        if args.json_lines:
            with open(args.json_lines, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
