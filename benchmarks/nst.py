"""Benchmark: Gatys style transfer, impasto's defaults against the classic baseline.

The baseline is what pastiche and jcjohnson/neural-style do by default: fp32, a single scale,
1000 L-BFGS iterations. Both runs use the same losses, weights and start (the content image);
each runs in its own process so that its peak memory (max RSS) is its own. One shared evaluator
recomputes the content and style losses in fp32 at full resolution on the *saved* 8-bit PNG.

    python benchmarks/nst.py                 # both runs, about 40 minutes on 2 cores
    python benchmarks/nst.py --quick         # 128 px, 40 baseline iterations: a smoke test

Prints a table and writes benchmarks/out/nst.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "styletransfer"
OUT = Path(__file__).resolve().parent / "out"


def _inputs(size: int):
    from impasto.io import load_image, resize, to_tensor

    content = DATA / "content" / "tubingen.jpg"
    style = DATA / "style" / "starry_night.jpg"
    for p in (content, style):
        if not p.is_file():
            sys.exit(f"missing benchmark input {p} (the shared data folder beside the repo)")
    c = to_tensor(resize(load_image(content), longest=size))
    s = to_tensor(resize(load_image(style), longest=size))
    return c, s


def run_one(name: str, size: int, iterations: int, out_png: Path) -> dict:
    """Runs one configuration in this process; returns its record."""
    from impasto.io import save_image
    from impasto.style import GatysConfig, GatysStyleTransfer

    content, style = _inputs(size)
    if name == "baseline":
        cfg = GatysConfig(size=size, precision="fp32", scales=1, iterations=iterations)
    else:
        cfg = GatysConfig(size=size)
    transfer = GatysStyleTransfer(cfg)
    trace: list[tuple[float, int, float]] = []
    t0 = time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)

    def cb(info):
        if info.scale == info.n_scales - 1 and (info.iteration % 10 == 0 or info.iteration == 1):
            trace.append((time.perf_counter() - t0, info.step, info.loss))

    image = transfer.run(content, [style], callback=cb)
    seconds = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu_seconds = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    save_image(image, out_png)
    return {
        "name": name,
        "config": {k: v for k, v in cfg.to_dict().items() if k not in ("weights_path",)},
        "scales": cfg.scale_sizes(),
        "iterations": cfg.scale_iterations(),
        "precision": str(transfer.dtype).replace("torch.", ""),
        "seconds": seconds,
        # CPU time (all threads) is less sensitive than wall time to other load on the machine.
        "cpu_seconds": cpu_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "output": str(out_png),
        # Internal loss on the finest scale (fp32 only for the baseline): (seconds, step, loss)
        "trace": trace,
    }


@torch.no_grad()
def evaluate(png: Path, size: int) -> dict:
    """fp32 content, style and total loss of a saved output, at its full resolution."""
    from impasto.io import load_image, to_tensor
    from impasto.nets import VGG19Features
    from impasto.style import GatysConfig, PerceptualLoss

    cfg = GatysConfig(size=size)
    content, style = _inputs(size)
    out = to_tensor(load_image(png))
    layers = list(dict.fromkeys(cfg.content_layers + cfg.style_layers))
    loss = PerceptualLoss(
        VGG19Features(layers), cfg.content_layers, cfg.style_layers,
        content_weight=cfg.content_weight, style_weight=cfg.style_weight, tv_weight=cfg.tv_weight,
    )
    loss.set_content(content)
    loss.set_styles([style])
    total, parts = loss(out)
    return {
        "content_loss": float(parts["content"]) * cfg.content_weight,
        "style_loss": float(parts["style"]) * cfg.style_weight,
        "tv_loss": float(parts["tv"]),
        "total_loss": float(total),
    }


def time_to_reach(trace: list, target: float) -> float | None:
    """First time (s) at which a trace's loss is at or below ``target``, interpolated."""
    prev = None
    for t, _, loss in trace:
        if loss <= target:
            if prev is None:
                return t
            (t0, l0) = prev
            return t0 + (t - t0) * (l0 - target) / max(l0 - loss, 1e-12)
        prev = (t, loss)
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--baseline-iterations", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="128 px, 40 baseline iterations")
    ap.add_argument("--only", choices=("default", "baseline"), default=None)
    ap.add_argument("--json", type=Path, default=OUT / "nst.json")
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.size, args.baseline_iterations = 128, 40
    OUT.mkdir(parents=True, exist_ok=True)

    if args._child:
        rec = run_one(args._child, args.size, args.baseline_iterations,
                      OUT / f"nst_{args._child}_{args.size}.png")
        print("RESULT " + json.dumps(rec))
        return

    records = {}
    names = [args.only] if args.only else ["default", "baseline"]
    for name in names:
        cmd = [sys.executable, __file__, "--size", str(args.size), "--baseline-iterations",
               str(args.baseline_iterations), "--_child", name]
        print(f"running {name} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
        if proc.returncode != 0:
            sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
        line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
        rec = json.loads(line[len("RESULT "):])
        rec.update(evaluate(Path(rec["output"]), args.size))
        records[name] = rec

    print(f"\nGatys style transfer, tubingen x starry_night, {args.size} px, "
          f"{torch.get_num_threads()} threads")
    print(f"{'run':<9} {'precision':<9} {'scales':<16} {'iterations':<14} {'wall s':>8} "
          f"{'cpu s':>8} {'peak MB':>8} {'content':>11} {'style':>11} {'total':>11}")
    for r in records.values():
        print(f"{r['name']:<9} {r['precision']:<9} {str(r['scales']):<16} "
              f"{str(r['iterations']):<14} {r['seconds']:>8.1f} {r['cpu_seconds']:>8.1f} "
              f"{r['peak_rss_mb']:>8.0f} {r['content_loss']:>11.4g} {r['style_loss']:>11.4g} "
              f"{r['total_loss']:>11.4g}")
    summary = {}
    if "default" in records and "baseline" in records:
        d, b = records["default"], records["baseline"]
        summary["wall_time_ratio"] = b["seconds"] / d["seconds"]
        summary["cpu_time_ratio"] = b["cpu_seconds"] / d["cpu_seconds"]
        summary["default_reaches_baseline_loss"] = d["total_loss"] <= b["total_loss"]
        # The baseline's own fp32 trace tells when it first reached the default's final loss.
        t = time_to_reach(b["trace"], d["total_loss"])
        summary["baseline_seconds_to_default_loss"] = t
        summary["speedup_at_equal_loss"] = (t / d["seconds"]) if t is not None else None
        relation = "<=" if summary["default_reaches_baseline_loss"] else ">"
        print(f"\nbaseline/default wall time: {summary['wall_time_ratio']:.1f}x, CPU time: "
              f"{summary['cpu_time_ratio']:.1f}x; default final loss {relation} baseline's")
        if t is not None:
            print(f"the baseline needed {t:.0f} s to reach the default's final loss: "
                  f"{summary['speedup_at_equal_loss']:.1f}x slower")
        else:
            print("the baseline never reached the default's final loss "
                  "(its internal loss trace; the target of 10x holds if the wall-time ratio >= 10)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"size": args.size, "runs": records, "summary": summary},
                                    indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
