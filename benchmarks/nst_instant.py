"""Study: which Gatys schedule reaches a given quality soonest in CPU seconds, from the photo and
from the instant start (``init="instant"``, issue #15).

One objective and one evaluator for every run: pastiche's default objective
(``_pastiche.PASTICHE_OBJECTIVE``: content relu4_2 x 0.01, style relu1_1..relu5_1 x 10 on
impasto's Gram scale, no TV) on tubingen x starry_night resized exactly as pastiche resizes them
(content 512 px longest, style to the content's pixel count, PIL bilinear). Each run optimises
that objective with a schedule; every ``--every`` full-size iterations its image, rounded to 8
bits, is scored in fp32 at full size, with the clock stopped (the score's CPU time is not the
run's). The clock is the process's CPU time from the call (targets, the instant start and every
scale included; the VGG19 load and imports are reported apart as ``startup_cpu_seconds``).

Each run also records what the optimiser does at full size, iteration by iteration: the
internal loss, loss evaluations (the L-BFGS backtracking), the largest pixel change and the
share of pixels held at 0 or 1.

    OMP_NUM_THREADS=1 python benchmarks/nst_instant.py --runs photo-default instant-single
    OMP_NUM_THREADS=1 python benchmarks/nst_instant.py --profile   # where one evaluation goes

Writes benchmarks/out/nst_instant_<run>.json (one per run; ``nst.py --pastiche`` reads them).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _pastiche import OUT, PASTICHE_OBJECTIVE, pastiche_inputs  # noqa: E402

#: The schedules compared: GatysConfig options (on top of the objective and size 512).
RUNS = {
    # the current default (3 scales 100/100/150, L-BFGS, bf16 where fast) from the photo
    "photo-default": {},
    "instant-default": {"init": "instant"},
    # full size only, from the photo and from the instant start
    "photo-single": {"scales": 1, "iterations": 400},
    "instant-single": {"init": "instant", "scales": 1, "iterations": 400},
    # one coarse scale (256 px) first
    "instant-2scales": {"init": "instant", "scales": 2, "iterations": (50, 400)},
    "photo-2scales": {"scales": 2, "iterations": (100, 400)},
    # fp32 instead of bf16, and Adam
    "instant-single-fp32": {"init": "instant", "scales": 1, "iterations": 400,
                            "precision": "fp32"},
    "instant-adam": {"init": "instant", "scales": 1, "iterations": 400, "optimizer": "adam",
                     "lr": 0.01},
}


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class Scorer:
    """pastiche's objective in fp32 at full size on an image rounded to 8 bits."""

    def __init__(self, encoder, content, style) -> None:
        from impasto.style import GatysConfig, PerceptualLoss

        cfg = GatysConfig()
        self.loss = PerceptualLoss(encoder, cfg.content_layers, cfg.style_layers,
                                   **PASTICHE_OBJECTIVE)
        with torch.no_grad():
            self.loss.set_content(content)
            self.loss.set_styles([style])

    @torch.no_grad()
    def __call__(self, image: torch.Tensor) -> float:
        x = (image.detach().float().clamp(0, 1) * 255).round() / 255
        return float(self.loss(x)[0])


def run_one(name: str, size: int, every: int, budget: float) -> dict:
    """One schedule in this process, stopped after ``budget`` CPU seconds; returns its record."""
    from impasto.io import save_image
    from impasto.style import GatysConfig, GatysStyleTransfer
    from impasto.style import losses as losses_mod

    content, style = pastiche_inputs(size)
    # Gatys resizes the style to size x style_scale on its longest side: keep pastiche's size
    # (as many pixels as the content), so both optimise against the same Gram targets.
    scale = max(style.shape[-2:]) / max(content.shape[-2:])
    cfg = GatysConfig(size=size, seed=0, style_scale=scale, **PASTICHE_OBJECTIVE, **RUNS[name])
    transfer = GatysStyleTransfer(cfg)
    scorer = Scorer(transfer.encoder, content, style)
    evaluations = [0]
    forward = losses_mod.PerceptualLoss.forward

    def counting(self, image):
        if torch.is_grad_enabled():
            evaluations[0] += 1
        return forward(self, image)

    losses_mod.PerceptualLoss.forward = counting
    startup = _cpu()
    paused = [0.0]  # CPU seconds spent scoring
    t0 = _cpu()
    w0 = time.perf_counter()
    points = []  # (cpu s, scale, iteration, score)
    trace = []  # full size: (iteration, internal loss, evaluations, max |dx|, at bounds)
    prev = {"image": None, "evals": 0}

    def clock() -> float:
        return _cpu() - t0 - paused[0]

    def cb(info):
        now = clock()
        final = info.scale == info.n_scales - 1
        if final:
            img = info.image.float()
            dx = None if prev["image"] is None or prev["image"].shape != img.shape else \
                float((img - prev["image"]).abs().max())
            bounds = float(((img <= 0) | (img >= 1)).float().mean())
            trace.append((info.iteration, info.loss, evaluations[0] - prev["evals"], dx,
                          bounds))
            prev["image"], prev["evals"] = img.clone(), evaluations[0]
        last_of_scale = info.iteration == info.iterations
        if (final and (info.iteration % every == 0 or info.iteration <= 10)) or last_of_scale:
            s0 = _cpu()
            score = scorer(info.image) if final else None
            points.append((now, info.scale, info.iteration, score))
            paused[0] += _cpu() - s0

    # the score of the start itself (the photo, or the instant result)
    def abort() -> bool:
        return clock() > budget

    image = transfer.run(content, [style], callback=cb, abort=abort)
    cpu = clock()
    wall = time.perf_counter() - w0
    losses_mod.PerceptualLoss.forward = forward
    out_png = OUT / f"nst_instant_{name}_{size}.png"
    save_image(image, out_png)
    start_score = None
    if cfg.init == "instant":
        start = transfer.instant_start(content, [style])
        start_score = scorer(start)
    else:
        start_score = scorer(content)
    return {"name": name, "size": size, "config": {k: v for k, v in cfg.to_dict().items()
                                                     if k != "vgg_weights"},
            "scales": cfg.scale_sizes(), "iterations": cfg.scale_iterations(),
            "precision": str(transfer.dtype).replace("torch.", ""),
            "cpu_seconds": cpu, "wall_seconds": wall, "startup_cpu_seconds": startup,
            "scoring_cpu_seconds": paused[0], "evaluations": evaluations[0],
            "final_score": scorer(image), "start_score": start_score,
            "points": points, "trace": trace, "output": str(out_png),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "torch_threads": torch.get_num_threads()}


def profile(size: int) -> None:
    """CPU seconds of one loss-and-gradient evaluation at full size, fp32 and bf16, and the
    operators they go to (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile as tprofile

    from impasto.device import autocast
    from impasto.style import GatysConfig, GatysStyleTransfer

    content, style = pastiche_inputs(size)
    for prec in ("fp32", "bf16"):
        t = GatysStyleTransfer(GatysConfig(size=size, precision=prec, device="cpu",
                                           **PASTICHE_OBJECTIVE))
        loss = t._loss()
        with autocast(t.device, t.dtype):
            loss.set_content(content)
            loss.set_styles([style])
        x = content.clone().requires_grad_(True)

        def ev():
            x.grad = None
            with autocast(t.device, t.dtype):
                total, _ = loss(x)
                total.backward()

        ev()
        c0 = _cpu()
        for _ in range(3):
            ev()
        print(f"{prec}: {(_cpu() - c0) / 3:.2f} CPU s per evaluation at "
              f"{content.shape[-1]}x{content.shape[-2]}")
        with tprofile(activities=[ProfilerActivity.CPU]) as p:
            ev()
        print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS))
    ap.add_argument("--every", type=int, default=10, help="score every N full-size iterations")
    ap.add_argument("--budget", type=float, default=300.0,
                    help="stop each run after this many CPU seconds")
    ap.add_argument("--parallel", type=int, default=1, help="runs at once (one thread each)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.profile:
        profile(args.size)
        return
    if args._child:
        rec = run_one(args._child, args.size, args.every, args.budget)
        path = OUT / f"nst_instant_{args._child}.json"
        path.write_text(json.dumps(rec, indent=1))
        print(f"{args._child}: {rec['cpu_seconds']:.0f} CPU s, final {rec['final_score']:.4g}"
              f"; wrote {path}", flush=True)
        return
    pending = list(args.runs)
    running: list[subprocess.Popen] = []
    while pending or running:
        while pending and len(running) < args.parallel:
            name = pending.pop(0)
            running.append(subprocess.Popen(
                [sys.executable, __file__, "--size", str(args.size), "--every",
                 str(args.every), "--budget", str(args.budget), "--_child", name]))
        running = [p for p in running if p.poll() is None]
        time.sleep(1.0)


if __name__ == "__main__":
    main()
