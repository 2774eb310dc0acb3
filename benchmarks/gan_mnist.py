"""Benchmark: DCGAN and the SN-ResNet/hinge GAN on MNIST at 32x32, each on a wall-clock budget.

Data: ``../shared/data/mnist`` (the 10,000-image MNIST test set, IDX). Each model trains through
:func:`impasto.gan.train` with its architecture's defaults (DCGAN: non-saturating loss, Adam
2e-4, beta1 0.5; SNGAN: hinge, 5 D steps per G step, Adam 2e-4, betas (0, 0.9)) until the budget
(``--minutes``, default 15) runs out (SNGAN with base width 32 to fit the budget); the run is then aborted cleanly (a final checkpoint is
written). The run tracks SWD of G_ema every ``--metric-every`` steps and keeps ``best.pt``.

Afterwards, for each model:

* a sample grid of G_ema (64 images, seed 0) and a loss-curve plot (``<arch>_losses.png``);
* SWD x10^3 (levels 32 and 16, and their average) of 2,000 G_ema samples against 2,000 real
  images (the real-versus-real floor, between two disjoint halves, is reported too);
* steps, kimg, images per second, wall and CPU time.

The runs stay in ``benchmarks/out/gan_mnist/<arch>/``: ``benchmarks/mnist_eval.py --gan-run``
measures them with the MNIST classifier (classifier FID, KID, confident share, class coverage).

    python benchmarks/gan_mnist.py              # 2 x 15 minutes
    python benchmarks/gan_mnist.py --quick      # seconds: a smoke run
    python benchmarks/gan_mnist.py --archs dcgan --threads 1 --json benchmarks/out/gan_mnist_dcgan.json &
    python benchmarks/gan_mnist.py --archs sngan --threads 1 --json benchmarks/out/gan_mnist_sngan.json
                                                # the two models on one core each, at once

Prints a table and writes benchmarks/out/gan_mnist.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
MNIST = HERE.parents[1] / "shared" / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"
sys.path.insert(0, str(HERE))

ARCHS = {
    "dcgan": dict(arch="dcgan"),
    # hinge loss and 5 D steps (the architecture's defaults), base width 32 (DCGAN keeps 64):
    # with 5 D steps per G step, the default width gets too few G steps in 15 CPU minutes
    "sngan": dict(arch="sngan", base_width=32),
}


def train_one(name: str, args: argparse.Namespace, folder: Path) -> dict:
    from impasto.gan import GanTrainConfig, train

    run = folder / name
    shutil.rmtree(run, ignore_errors=True)
    budget = args.minutes * 60.0
    t0, c0 = time.perf_counter(), time.process_time()
    steps_done = [0]

    def progress(info) -> None:
        steps_done[0] = info.step

    def abort() -> bool:
        return time.perf_counter() - t0 > budget

    config = GanTrainConfig(
        data=str(args.data), run=str(run), resolution=32, channels=1,
        batch_size=args.batch_size, kimg=100_000.0, seed=args.seed, device=args.device,
        log_every=args.log_every, sample_every=args.sample_every, ckpt_every=0, keep_last=1,
        n_samples=64, metric="swd", metric_every=args.metric_every, ema_rampup=args.ema_rampup,
        metric_samples=args.metric_samples, **ARCHS[name],
    )
    result = train(config, progress=progress, abort=abort)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "run": str(run),
        "config": {k: v for k, v in vars(result.config).items() if not k.startswith("_")},
        "steps": result.step,
        "kimg": result.images_seen / 1000,
        "wall_s": wall,
        "cpu_s": cpu,
        "images_per_s": result.images_seen / wall,
        "final_losses": result.stats,
    }


def evaluate(rec: dict, real: torch.Tensor, n: int, seed: int) -> dict:
    from impasto.gan import GanGenerator
    from impasto.metrics.swd import swd

    G = GanGenerator.load(rec["run"], device="cpu")
    fake = []
    for k in range(0, n, 250):
        x = G(min(250, n - k), seed=seed + k)
        fake.append((x.clamp(0, 1) * 255).round().to(torch.uint8))  # what a saved PNG holds
    fake_u8 = torch.cat(fake)
    return {str(k): v for k, v in swd(real[:n], fake_u8, seed=seed).items()}


def save_pictures(name: str, rec: dict, out: Path) -> dict:
    from _plot import line_plot

    from impasto.gan import GanGenerator
    from impasto.io import save_image
    from impasto.train import read_stats
    from torchvision.utils import make_grid

    G = GanGenerator.load(rec["run"], device="cpu")
    grid = make_grid(G(64, seed=0), nrow=8, padding=2, pad_value=1.0)
    save_image(grid.clamp(0, 1), out / f"{name}_samples.png")
    rows = read_stats(rec["run"])
    losses = [r for r in rows if "d_loss" in r]
    line_plot(
        out / f"{name}_losses.png",
        {k: ([r["kimg"] for r in losses], [r[k] for r in losses]) for k in ("d_loss", "g_loss")},
        title=f"{name} on MNIST 32x32: losses", xlabel="kimg",
    )
    swds = [r for r in rows if "metric/swd" in r]
    if swds:
        line_plot(out / f"{name}_swd.png",
                  {"SWD x1e3 (512 vs 512)": ([r["step"] for r in swds],
                                             [r["metric/swd"] for r in swds])},
                  title=f"{name}: SWD of G_ema during training", xlabel="step")
    return {"samples": f"{name}_samples.png", "losses": f"{name}_losses.png",
            "swd_curve": [(r["step"], r["metric/swd"]) for r in swds]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=MNIST)
    ap.add_argument("--archs", default="dcgan,sngan")
    ap.add_argument("--minutes", type=float, default=15.0, help="wall budget per model")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--ema-rampup", type=float, default=10.0,
                    help="kimg over which G_ema's decay ramps up to 0.999: a 15-minute run is "
                    "about 1,000 steps, and a plain 0.999 average would still hold a third of "
                    "the random initial weights")
    ap.add_argument("--metric-every", type=int, default=500)
    ap.add_argument("--metric-samples", type=int, default=512)
    ap.add_argument("--eval-samples", type=int, default=2000)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--sample-every", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a few seconds per model")
    ap.add_argument("--json", type=Path, default=OUT / "gan_mnist.json",
                    help="the report (e.g. one per model when models run in parallel processes)")
    args = ap.parse_args()
    if args.quick:
        args.minutes, args.metric_every, args.metric_samples, args.eval_samples = 0.15, 20, 64, 128
        args.log_every, args.sample_every = 5, 0
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.data.is_file():
        sys.exit(f"gan_mnist: {args.data}: not found (the shared data folder beside the repo)")

    from impasto.data import open_dataset

    out = OUT / "gan_mnist"
    out.mkdir(parents=True, exist_ok=True)
    data = open_dataset(str(args.data), resolution=32, channels=1)
    g = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(data), generator=g)
    half = len(data) // 2
    n = min(args.eval_samples, half)
    real_a = torch.stack([data.image_u8(int(i)) for i in order[:n]])
    real_b = torch.stack([data.image_u8(int(i)) for i in order[half: half + n]])
    from impasto.metrics.swd import swd

    floor = {str(k): v for k, v in swd(real_a, real_b, seed=args.seed).items()}

    results = {}
    for name in [a.strip() for a in args.archs.split(",") if a.strip()]:
        print(f"training {name} for {args.minutes:g} min ...", file=sys.stderr, flush=True)
        rec = train_one(name, args, out)
        rec["swd"] = evaluate(rec, real_a, n, args.seed + 1)
        rec["pictures"] = save_pictures(name, rec, out)
        results[name] = rec

    print()
    print(f"MNIST 32x32 (../shared/data/mnist, 10k images), {args.minutes:g} min per model, "
          f"{torch.get_num_threads()} threads")
    print(f"{'model':8s} {'steps':>6s} {'kimg':>7s} {'img/s':>7s} {'CPU s':>7s} "
          f"{'SWD32':>7s} {'SWD16':>7s} {'SWDavg':>7s}")
    for name, r in results.items():
        s = r["swd"]
        print(f"{name:8s} {r['steps']:6d} {r['kimg']:7.1f} {r['images_per_s']:7.1f} "
              f"{r['cpu_s']:7.0f} {s['32']:7.1f} {s['16']:7.1f} {s['avg']:7.1f}")
    print(f"{'real/real':8s} {'':>6s} {'':>7s} {'':>7s} {'':>7s} "
          f"{floor['32']:7.1f} {floor['16']:7.1f} {floor['avg']:7.1f}")
    print(f"SWD x1e3 on {n} vs {n} images (uint8, as saved); pictures in {out}")

    report = {
        "benchmark": "gan_mnist",
        "data": str(args.data),
        "minutes_per_model": args.minutes,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "eval_samples": n,
        "swd_real_vs_real": floor,
        "models": results,
    }
    path = args.json
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
