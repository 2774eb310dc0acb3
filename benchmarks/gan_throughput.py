"""Benchmark: GAN training throughput, impasto's defaults against a plain fp32 NCHW baseline.

DCGAN at 64x64 (base width 64, z 128), batch 64, non-saturating loss, on synthetic data, through
the real training function :func:`impasto.gan.train`, so everything a user's step costs counts
(data loading, both phases, Adam, EMA, the NaN check). Two configurations of the same
architecture:

* ``default``: what ``GanTrainConfig()`` picks here: ``precision="auto"`` (bf16 autocast where
  the hardware computes bf16 fast, else fp32) and channels_last;
* ``baseline``: fp32, NCHW, eager: what a plain PyTorch DCGAN does.

They run alternately in one process (``--rounds`` rounds of baseline then default), each run
``--warmup`` steps then ``--steps`` timed steps. Per-step times come from the progress callback
(wall clock and this process's CPU time); the result is the median over all timed steps of all
rounds. The CPU-time figure (images per CPU-second, all threads) is less sensitive to other load
on a shared machine than the wall-clock one. One torch thread by default (see ``--threads``).

    python benchmarks/gan_throughput.py               # ~1-2 minutes
    python benchmarks/gan_throughput.py --threads 2   # on an idle machine
    python benchmarks/gan_throughput.py --quick       # 32x32, a smoke test

Prints a table and writes benchmarks/out/gan_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent / "out"

CONFIGS = {
    "baseline": dict(precision="fp32", channels_last=False),
    "default": dict(),  # GanTrainConfig's defaults
}


def synthetic_data(path: Path, n: int, resolution: int, seed: int = 0) -> Path:
    """``n`` RGB images: smooth random colour fields with a bright square, uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:resolution, 0:resolution] / resolution
    images = np.empty((n, resolution, resolution, 3), np.uint8)
    for i in range(n):
        f = rng.uniform(1, 4, 3)
        img = 0.5 + 0.4 * np.sin(2 * np.pi * (f[None, None] * (xx[..., None] + yy[..., None])))
        s = resolution // 4
        top, left = rng.integers(0, resolution - s, 2)
        img[top : top + s, left : left + s] = rng.uniform(0.6, 1.0, 3)
        images[i] = (img * 255).astype(np.uint8)
    np.savez(path, images=images)
    return path


def run_one(name: str, data: Path, folder: Path, args: argparse.Namespace) -> dict:
    """One run of configuration ``name`` on ``args.device`` (default the CPU; ``args.base_width``
    narrows the networks, for smoke runs). Per-step times
    (``wall``, ``cpu``) and ``window_s``, the time of all timed steps together: on a GPU,
    where a step's clock reading comes before its work is done, only the window counts (the
    device is waited for at its two ends, not in between)."""
    from impasto.gan import GanTrainConfig, train

    device = getattr(args, "device", "cpu")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    run = folder / name
    shutil.rmtree(run, ignore_errors=True)
    marks: list[tuple[float, float]] = []

    def progress(info) -> None:
        if info.step in (args.warmup, args.warmup + args.steps):
            sync()
        marks.append((time.perf_counter(), time.process_time()))

    config = GanTrainConfig(
        data=str(data), run=str(run), arch="dcgan", resolution=args.resolution,
        batch_size=args.batch_size, steps=args.warmup + args.steps, device=device,
        log_every=0, sample_every=0, ckpt_every=0, n_samples=4, tensorboard=False,
        **CONFIGS[name], **({"base_width": args.base_width}
                            if getattr(args, "base_width", None) else {}),
    )
    result = train(config, progress=progress)
    # marks[0] is before step 1; marks[k] after step k. Timed: steps warmup+1 .. warmup+steps.
    timed = list(zip(marks[args.warmup :], marks[args.warmup + 1 :]))
    shutil.rmtree(run, ignore_errors=True)
    return {
        "precision": str(torch.bfloat16 if _is_bf16(result.config) else torch.float32),
        "channels_last": result.config.channels_last,
        "wall": [b[0] - a[0] for a, b in timed],
        "cpu": [b[1] - a[1] for a, b in timed],
        "window_s": marks[args.warmup + args.steps][0] - marks[args.warmup][0],
        "final_losses": result.stats,
    }


def _is_bf16(config) -> bool:
    from impasto.device import resolve_device, resolve_precision

    return resolve_precision(config.precision, resolve_device(config.device)) == torch.bfloat16


def network_ceiling(args: argparse.Namespace, repeats: int = 5) -> dict:
    """The speed-up bf16 + channels_last gives the networks alone: G and D forward and backward
    on one batch, no loss phases, optimiser, data or EMA. The whole step cannot beat this ratio
    (the rest of a step is the same work in both configurations)."""
    from impasto.device import autocast
    from impasto.nets.gan import GanNetConfig, build_gan

    def one(dtype: torch.dtype, fmt: torch.memory_format) -> float:
        torch.manual_seed(0)
        G, D = build_gan(GanNetConfig("dcgan", args.resolution, 3, z_dim=128, base_width=64))
        G.to(memory_format=fmt)
        D.to(memory_format=fmt)
        z = torch.randn(args.batch_size, 128)
        real = torch.rand(args.batch_size, 3, args.resolution, args.resolution)
        real = real.to(memory_format=fmt)
        times = []
        for _ in range(repeats + 1):
            t = time.perf_counter()
            with autocast(torch.device("cpu"), dtype):
                loss = D(G(z)).float().mean() + D(real).float().mean()
            loss.backward()
            times.append(time.perf_counter() - t)
        return statistics.median(times[1:])

    fp32 = one(torch.float32, torch.contiguous_format)
    bf16 = one(torch.bfloat16, torch.channels_last)
    return {"fp32_nchw_s": fp32, "bf16_nhwc_s": bf16, "speedup": fp32 / bf16}


def matmul_peak(n: int = 2048, repeats: int = 5) -> dict:
    """GFLOP/s of an n x n matrix product in fp32 and bf16, and which instruction set oneDNN
    reports: what bf16 can give at best on this CPU (AMX: several times fp32; AVX512-BF16
    alone: about twice)."""
    out: dict = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        g = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=g).to(dtype)
        b = torch.randn(n, n, generator=g).to(dtype)
        a @ b
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
        out[f"{name}_gflops"] = 2 * n ** 3 / best / 1e9
    out["bf16_over_fp32"] = out["bf16_gflops"] / out["fp32_gflops"]
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    out["cpu_flags"] = sorted({f for f in ("avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni")
                               if f in flags.split()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1; 0: torch's default). On a shared 2-core "
                    "machine two OpenMP threads that lose their cores to other work make every "
                    "step several times slower, and the figures say more about the load than "
                    "about the code")
    ap.add_argument("--quick", action="store_true", help="32x32, batch 32, 1 round")
    args = ap.parse_args()
    if args.quick:
        args.resolution, args.batch_size, args.rounds, args.steps = 32, 32, 1, 3
    if args.threads:
        torch.set_num_threads(args.threads)

    records: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gan_bench_") as tmp:
        folder = Path(tmp)
        data = synthetic_data(folder / "data.npz", max(4 * args.batch_size, 256), args.resolution)
        for r in range(args.rounds):
            for name in CONFIGS:  # alternate: baseline, default, baseline, default, ...
                rec = run_one(name, data, folder, args)
                records[name].append(rec)
                ips = args.batch_size / statistics.median(rec["wall"])
                print(f"round {r + 1} {name:9s} {ips:7.1f} img/s", file=sys.stderr, flush=True)

    from impasto.device import cpu_has_fast_bf16

    summary = {}
    for name, recs in records.items():
        wall = [t for rec in recs for t in rec["wall"]]
        cpu = [t for rec in recs for t in rec["cpu"]]
        summary[name] = {
            "precision": recs[0]["precision"].replace("torch.", ""),
            "channels_last": recs[0]["channels_last"],
            "images_per_s": args.batch_size / statistics.median(wall),
            "images_per_cpu_s": args.batch_size / statistics.median(cpu),
            "step_ms_median": 1000 * statistics.median(wall),
            "step_ms_all": [round(1000 * t, 1) for t in wall],
            "final_losses": recs[-1]["final_losses"],
        }
    ceiling = network_ceiling(args)
    peak = matmul_peak()
    base, dflt = summary["baseline"], summary["default"]
    speedup = dflt["images_per_s"] / base["images_per_s"]
    speedup_cpu = dflt["images_per_cpu_s"] / base["images_per_cpu_s"]

    print()
    print(f"DCGAN {args.resolution}x{args.resolution}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, {args.rounds} rounds x {args.steps} timed steps")
    print(f"{'config':10s} {'precision':10s} {'layout':8s} {'img/s':>8s} {'img/cpu-s':>10s} "
          f"{'ms/step':>8s}")
    for name, s in summary.items():
        layout = "NHWC" if s["channels_last"] else "NCHW"
        print(f"{name:10s} {s['precision']:10s} {layout:8s} {s['images_per_s']:8.1f} "
              f"{s['images_per_cpu_s']:10.1f} {s['step_ms_median']:8.0f}")
    print(f"speed-up of the defaults: {speedup:.2f}x wall clock, {speedup_cpu:.2f}x CPU time "
          "(target 3x)")
    print(f"networks alone (G and D forward + backward, no optimiser or data): "
          f"{ceiling['speedup']:.2f}x ({1000 * ceiling['fp32_nchw_s']:.0f} ms fp32 NCHW, "
          f"{1000 * ceiling['bf16_nhwc_s']:.0f} ms bf16 NHWC): the ceiling of the step's speed-up")
    print(f"2048x2048 matrix product: fp32 {peak['fp32_gflops']:.0f} GFLOP/s, bf16 "
          f"{peak['bf16_gflops']:.0f} GFLOP/s ({peak['bf16_over_fp32']:.2f}x); CPU flags: "
          f"{', '.join(peak['cpu_flags']) or 'none of avx512_bf16/amx'}")

    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / "gan_throughput.json"
    out.write_text(json.dumps({
        "benchmark": "gan_throughput",
        "arch": "dcgan",
        "resolution": args.resolution,
        "batch_size": args.batch_size,
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "rounds": args.rounds,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_fast_bf16": cpu_has_fast_bf16(),
        "machine": platform.processor() or platform.machine(),
        "configs": summary,
        "speedup_wall": speedup,
        "speedup_cpu": speedup_cpu,
        "network_ceiling": ceiling,
        "matmul_peak": peak,
        "seconds": time.perf_counter() - t0,
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
