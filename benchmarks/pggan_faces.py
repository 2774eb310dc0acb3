"""Benchmark: progressive GAN on the Olivetti faces, against DCGAN and SN-ResNet/hinge trained for
the same wall time.

Data: ``../shared/data/faces_olivetti/olivettifaces.mat`` (400 grey 64x64 faces; ``faces`` is
``(4096, 400)`` uint8, one column-major image per column; see its SOURCES.md). The faces are
written once to a temporary ``.npz`` that :func:`impasto.data.open_dataset` reads.

Steps (each model gets the same ``--budget-min`` of wall time; horizontal flips on for all):

1. **Throughput per resolution**, default precision (``auto``: bf16 autocast on this CPU)
   against fp32, alternately: short runs of :func:`impasto.gan.progressive.train` held at one
   resolution (``start_resolution``), median over the timed steps of real images per second.
2. **PGGAN 4 -> 64**: the CPU schedule shape (batches 64, 64, 32, 32, 16) with equal kimg per
   phase (stable and fade), the kimg chosen from the measured default throughput so that the
   nine phases fill ``--fill`` (90%) of the budget; an abort at the budget guards the rest (on a
   machine shared with other jobs the throughput can fall during the run: give less). Widths
   ``--widths`` (default 64, 64, 32, 16, 8), z 128.
3. **DCGAN** and **SNGAN** (hinge, 5 D steps) at 64x64 via :func:`impasto.gan.train`, each
   stopped at the budget (``--base-width``, default 32).
4. **SWD** (:func:`impasto.metrics.swd`, x10^3, levels 64, 32, 16 and their average) of 400
   samples of each EMA generator against the 400 real faces, and of two halves of the real
   faces against each other (the floor a perfect model would reach with this few images).
5. A sample grid (8x8) per model and an interpolation strip (4 slerp rows of 8 frames) of the
   PGGAN, as PNGs in ``benchmarks/out/``.

Samples come from each model's EMA generator with ``--ema-beta 0.99`` (all three models), not
the paper's 0.999: a 30-minute CPU run has phases of a few hundred steps, and a 0.999 average
(a horizon of ~1000 steps) is then still mostly the random initial weights of the block that
was just faded in (checked: at 8x8 after 120 kimg, raw G made faces, its 0.999-EMA noise; the
0.99-EMA matched raw G). The paper's phases are ~50,000 steps long.

    python benchmarks/pggan_faces.py                 # about 1 h 40 min: 3 x 30 min + ~5 min
    python benchmarks/pggan_faces.py --budget-min 10 # shorter runs
    python benchmarks/pggan_faces.py --quick         # seconds: 32x32, tiny models

Prints tables and writes ``benchmarks/out/pggan_faces.json`` (``--quick``:
``pggan_faces_quick.json`` and ``*_quick.png``, so a smoke run never overwrites a real one).
Two torch threads by default (``--threads``), the machine's two cores. The real-halves SWD
compares 200 faces with 200 others; the models' 400 samples with all 400 faces.
"""

from __future__ import annotations

import argparse
import hashlib
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

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "out"
FACES = ROOT.parents[1] / "shared" / "data" / "faces_olivetti" / "olivettifaces.mat"
FACES_SHA256 = "b1988d02c72fe5b8ee82b5ef3bb7982eafc74f1e1ff0ae0ade35061ad0af534d"
CPU_BATCHES = (64, 64, 32, 32, 16, 16, 8, 4, 2)


def load_faces(path: Path) -> np.ndarray:
    """``(400, 64, 64)`` uint8 upright faces from Roweis's ``olivettifaces.mat``."""
    from scipy.io import loadmat

    faces = loadmat(str(path))["faces"]
    return np.ascontiguousarray(faces.T.reshape(-1, 64, 64).transpose(0, 2, 1))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Clock:
    """Progress callback recording (wall time, images seen, resolution) after each step."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, int, int]] = []

    def __call__(self, info) -> None:
        self.marks.append((time.perf_counter(), info.images_seen,
                           int(getattr(info, "resolution", 0))))

    def rates(self, skip: int = 1) -> dict[int, float]:
        """Median images/s per resolution over the steps (the first ``skip`` of each left out)."""
        per: dict[int, list[float]] = {}
        for (t0, n0, _), (t1, n1, r1) in zip(self.marks, self.marks[1:]):
            per.setdefault(r1, []).append((n1 - n0) / max(t1 - t0, 1e-9))
        return {r: statistics.median(v[skip:] or v) for r, v in sorted(per.items())}


def pg_config(args, data: Path, run: Path, **kw):
    from impasto.gan.progressive import PgganSchedule, PgganTrainConfig

    sched = kw.pop("schedule")
    return PgganTrainConfig(
        data=str(data), run=str(run), resolution=args.resolution, channels=1, z_dim=args.z_dim,
        widths=args.widths, schedule=PgganSchedule(**sched), hflip=True, device="cpu",
        log_every=args.log_every, sample_every=0, ckpt_every=0, keep_last=1, n_samples=64,
        tensorboard=False, seed=args.seed, ema_beta=args.ema_beta, **kw,
    )


def measure_throughput(args, data: Path, folder: Path) -> dict[str, dict[int, float]]:
    """Images/s per resolution, default vs fp32: alternating short runs held at each one."""
    from impasto.gan.progressive import train

    out: dict[str, dict[int, list[float]]] = {"default": {}, "fp32": {}}
    levels = [4 * 2**i for i in range(int(np.log2(args.resolution)) - 1)]
    for rnd in range(args.rounds):
        for r in levels:
            bs = CPU_BATCHES[levels.index(r)]
            for name, prec in (("fp32", "fp32"), ("default", "auto")):
                run = folder / f"tp-{name}-{r}-{rnd}"
                clock = Clock()
                steps = args.tp_steps + 1
                sched = dict(stable_kimg=1e6, fade_kimg=0.0, batch_sizes=CPU_BATCHES,
                             start_resolution=r, total_kimg=steps * bs / 1000)
                train(pg_config(args, data, run, schedule=sched, precision=prec), progress=clock)
                rates = clock.rates(skip=1)
                out[name].setdefault(r, []).append(rates[r])
                shutil.rmtree(run, ignore_errors=True)
    return {k: {r: statistics.median(v) for r, v in d.items()} for k, d in out.items()}


def fit_kimg(rates: dict[int, float], seconds: float) -> float:
    """kimg per phase (stable = fade) so that the nine phases 4 -> 64 take ``seconds``."""
    levels = sorted(rates)
    cost = 1000 / rates[levels[0]] + sum(2 * 1000 / rates[r] for r in levels[1:])
    return seconds / cost


def stopper(budget_s: float):
    t0 = time.perf_counter()
    return lambda: time.perf_counter() - t0 > budget_s


def train_pggan(args, data: Path, folder: Path, kimg: float) -> dict:
    from impasto.gan.progressive import train

    clock = Clock()
    sched = dict(stable_kimg=kimg, fade_kimg=kimg, batch_sizes=CPU_BATCHES)
    t0 = time.perf_counter()
    result = train(pg_config(args, data, folder / "pggan", schedule=sched, precision="auto"),
                   progress=clock, abort=stopper(args.budget_s))
    seconds = time.perf_counter() - t0
    by_res: dict[int, float] = {}
    for (t_a, _, _), (t_b, _, r) in zip(clock.marks, clock.marks[1:]):
        by_res[r] = by_res.get(r, 0.0) + (t_b - t_a)
    return {
        "result": result, "seconds": seconds, "kimg_per_phase": kimg,
        "images_seen": result.images_seen, "steps": result.step, "aborted": result.aborted,
        "final_stage": result.stage.to_dict(), "seconds_per_resolution": by_res,
        "images_per_s_in_run": clock.rates(skip=2),
    }


def train_baseline(args, data: Path, folder: Path, arch: str) -> dict:
    from impasto.gan import GanTrainConfig, train

    t0 = time.perf_counter()
    result = train(GanTrainConfig(
        data=str(data), run=str(folder / arch), arch=arch, resolution=args.resolution,
        channels=1, z_dim=args.z_dim, base_width=args.base_width, hflip=True, kimg=1e6,
        device="cpu", log_every=args.log_every, sample_every=0, ckpt_every=0, keep_last=1,
        n_samples=64, tensorboard=False, seed=args.seed, ema_beta=args.ema_beta,
    ), abort=stopper(args.budget_s))
    return {"result": result, "seconds": time.perf_counter() - t0,
            "images_seen": result.images_seen, "steps": result.step}


def evaluate(gen, reals: torch.Tensor, seed: int) -> dict:
    from impasto.metrics import swd

    fakes = gen(reals.shape[0], seed=seed)  # (N, 1, R, R) in [0, 1]
    return {str(k): float(v) for k, v in swd(fakes, reals, seed=seed).items()}


def save_pictures(name: str, gen, suffix: str, nrow: int = 8, strip: bool = False) -> list[str]:
    from torchvision.utils import make_grid

    from impasto.io import save_image

    written = []
    grid = make_grid(gen(nrow * nrow, seed=1), nrow=nrow, padding=2, pad_value=1.0)
    path = OUT / f"pggan_faces_{name}_samples{suffix}.png"
    save_image(grid, path)
    written.append(path.name)
    if strip:
        rows = [gen.interpolate([10 + 2 * i, 11 + 2 * i], 8) for i in range(4)]
        strip_img = make_grid(torch.cat(rows), nrow=8, padding=2, pad_value=1.0)
        path = OUT / f"pggan_faces_interpolation{suffix}.png"
        save_image(strip_img, path)
        written.append(path.name)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run of seconds (32x32)")
    p.add_argument("--budget-min", type=float, default=30.0, help="wall minutes per model")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--widths", default="64,64,32,16,8", help="PGGAN widths from 4x4")
    p.add_argument("--base-width", type=int, default=32, help="DCGAN/SNGAN width")
    p.add_argument("--z-dim", type=int, default=128)
    p.add_argument("--ema-beta", type=float, default=0.99,
                   help="EMA decay of G for all models (see the module doc)")
    p.add_argument("--tp-steps", type=int, default=8, help="timed steps per throughput run")
    p.add_argument("--rounds", type=int, default=2, help="throughput rounds (alternating)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", default="pggan,dcgan,sngan")
    p.add_argument("--fill", type=float, default=0.9,
                   help="share of the budget the PGGAN schedule is sized to fill")
    p.add_argument("--json", type=Path, default=None,
                   help="the report (default benchmarks/out/pggan_faces.json); give one per "
                   "process when models run in parallel, e.g. --models pggan and --models "
                   "dcgan,sngan")
    args = p.parse_args(argv)
    args.resolution = 64
    args.log_every = 50
    if args.quick:
        args.resolution, args.budget_min = 32, 0.1
        args.widths, args.base_width, args.z_dim = "16,16,8,8", 8, 16
        args.tp_steps, args.rounds, args.log_every = 2, 1, 5
    args.widths = tuple(int(w) for w in args.widths.split(","))
    args.budget_s = args.budget_min * 60
    torch.set_num_threads(args.threads)
    models = [m.strip() for m in args.models.split(",") if m.strip()]

    from impasto.gan import GanGenerator
    from impasto.metrics import swd

    OUT.mkdir(parents=True, exist_ok=True)
    faces = load_faces(FACES)
    folder = Path(tempfile.mkdtemp(prefix="pggan_faces_"))
    report: dict = {
        "benchmark": "pggan_faces", "quick": args.quick, "budget_min": args.budget_min,
        "fill": args.fill,
        "threads": args.threads, "resolution": args.resolution, "widths": list(args.widths),
        "z_dim": args.z_dim, "base_width": args.base_width, "ema_beta": args.ema_beta,
        "data": {"file": str(FACES.name), "sha256_ok": sha256(FACES) == FACES_SHA256,
                 "images": int(faces.shape[0])},
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "cpu": platform.processor() or platform.machine()},
    }
    try:
        data = folder / "faces.npz"
        np.savez(data, images=faces[..., None])
        reals = torch.from_numpy(faces[:, None]).float() / 255.0
        if args.resolution != 64:
            reals = torch.nn.functional.interpolate(reals, size=args.resolution, mode="area")
        half = reals.shape[0] // 2
        report["swd_real_halves"] = {
            str(k): float(v) for k, v in swd(reals[:half], reals[half:], seed=args.seed).items()
        }

        if "pggan" in models:  # the throughput sizes the PGGAN schedule
            print(f"throughput per resolution (img/s, {args.threads} threads) ...", flush=True)
            tp = measure_throughput(args, data, folder)
            report["throughput"] = {k: {str(r): v for r, v in d.items()} for k, d in tp.items()}
            print(f"{'res':>5} {'default':>10} {'fp32':>10} {'ratio':>7}")
            for r in sorted(tp["default"]):
                d, f = tp["default"][r], tp["fp32"][r]
                print(f"{r:>5} {d:>10.1f} {f:>10.1f} {d / f:>7.2f}")

        results: dict = {}
        if "pggan" in models:
            kimg = fit_kimg(tp["default"], args.fill * args.budget_s)
            print(f"pggan: {kimg:.2f} kimg per phase, budget {args.budget_min:g} min", flush=True)
            c0 = time.process_time()
            results["pggan"] = train_pggan(args, data, folder, kimg)
            results["pggan"]["cpu_seconds"] = time.process_time() - c0
        for arch in ("dcgan", "sngan"):
            if arch in models:
                print(f"{arch}: budget {args.budget_min:g} min", flush=True)
                c0 = time.process_time()
                results[arch] = train_baseline(args, data, folder, arch)
                results[arch]["cpu_seconds"] = time.process_time() - c0

        report["models"] = {}
        print(f"\n{'model':>6} {'kimg':>8} {'min':>6} " + " ".join(
            f"{'swd' + str(k):>8}" for k in report["swd_real_halves"]))
        for name, res in results.items():
            gen = GanGenerator(res["result"].G_ema, source=name)
            swd_v = evaluate(gen, reals, args.seed)
            pics = save_pictures(name, gen, "_quick" if args.quick else "",
                                 strip=name == "pggan")
            entry = {k: v for k, v in res.items() if k != "result"}
            entry.update(swd=swd_v, pictures=pics, minutes=res["seconds"] / 60)
            if "seconds_per_resolution" in entry:
                entry["seconds_per_resolution"] = {
                    str(r): s for r, s in entry["seconds_per_resolution"].items()}
                entry["images_per_s_in_run"] = {
                    str(r): s for r, s in entry["images_per_s_in_run"].items()}
            report["models"][name] = entry
            print(f"{name:>6} {res['images_seen'] / 1000:>8.1f} {res['seconds'] / 60:>6.1f} "
                  + " ".join(f"{v:>8.1f}" for v in swd_v.values()))
        print(f"{'real':>6} {'':>8} {'':>6} " + " ".join(
            f"{v:>8.1f}" for v in report["swd_real_halves"].values()) + "   (half vs half)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    path = args.json or OUT / ("pggan_faces_quick.json" if args.quick else "pggan_faces.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
