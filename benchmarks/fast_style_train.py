"""Benchmark: train per-style networks offline (Johnson et al. 2016), with and without the
adversarial patch loss, and compare their outputs with Gatys optimisation on held-out photos.

Training photos are the offline ones: scikit-image's sample photos, scikit-learn's two sample
photos and ``../shared/data/styletransfer/content``, minus the held-out ones (tubingen, chelsea,
coffee), which no network sees in training. The style is ``starry_night.jpg``. Each network
trains for a wall-clock budget (default 20 minutes) on random crops; then:

* every held-out photo is stylised at ``--eval-size`` by each network (one forward pass) and by
  ``impasto.stylize`` (Gatys optimisation with its defaults, same size, same style size);
* one fp32 evaluator (``PerceptualLoss`` over VGG19 with the Gatys defaults: content
  ``relu4_2`` x5, style ``relu1_1..relu5_1`` x100, TV 1e-3) recomputes the content, style and
  total loss of every *saved 8-bit PNG*;
* the pictures are saved side by side (content | plain network | adversarial | Gatys).

By default the networks are trained on that same objective (``--loss gatys``), so that the
losses say how close a feed-forward network gets to per-image optimisation of what it was
trained on (Johnson et al.'s own comparison); ``--loss johnson`` trains on the paper's layers
and weights instead.

    python benchmarks/fast_style_train.py             # 2 x 20 min training + Gatys: ~55 min
    python benchmarks/fast_style_train.py --quick     # 20 s per network, tiny sizes: smoke test

Prints a table and writes benchmarks/out/fast_style_train.json (and .png).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "styletransfer"
OUT = Path(__file__).resolve().parent / "out"
STYLE = DATA / "style" / "starry_night.jpg"
HELD_OUT = ("tubingen", "chelsea", "coffee")
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera")


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def photos() -> dict[str, object]:
    """Every offline photo by name, as 8-bit RGB PIL images."""
    from impasto.io import load_image

    found: dict[str, object] = {}
    for p in sorted((DATA / "content").glob("*.jpg")):
        found[p.stem] = load_image(p)
    try:
        import skimage.data

        for name in SKIMAGE_PHOTOS:
            found[name] = load_image(getattr(skimage.data, name)())
    except ImportError:
        print("scikit-image missing: training without its photos", file=sys.stderr)
    try:
        from sklearn.datasets import load_sample_images

        sk = load_sample_images()
        for fname, arr in zip(sk.filenames, sk.images):
            found[Path(fname).stem] = load_image(arr)
    except ImportError:
        print("scikit-learn missing: training without its photos", file=sys.stderr)
    return found


def loss_settings(kind: str) -> dict:
    from impasto.style import GatysConfig
    from impasto.style.fast import FastStyleConfig

    if kind == "gatys":
        g = GatysConfig()
        return dict(content_layers=g.content_layers, style_layers=g.style_layers,
                    content_weight=g.content_weight, style_weight=g.style_weight,
                    tv_weight=g.tv_weight)
    f = FastStyleConfig()
    return dict(content_layers=f.content_layers, style_layers=f.style_layers,
                content_weight=f.content_weight, style_weight=f.style_weight,
                tv_weight=f.tv_weight)


class Evaluator:
    """fp32 Gatys losses of saved 8-bit outputs (one VGG19 for all)."""

    def __init__(self, size: int) -> None:
        from impasto.io import load_image, resize, to_tensor
        from impasto.nets import VGG19Features
        from impasto.style import GatysConfig, PerceptualLoss

        self.cfg = cfg = GatysConfig(size=size)
        layers = list(dict.fromkeys(cfg.content_layers + cfg.style_layers))
        self.loss = PerceptualLoss(
            VGG19Features(layers), cfg.content_layers, cfg.style_layers,
            content_weight=cfg.content_weight, style_weight=cfg.style_weight,
            tv_weight=cfg.tv_weight,
        )
        self.style = to_tensor(resize(load_image(STYLE), longest=size))
        self.loss.set_styles([self.style])

    @torch.no_grad()
    def __call__(self, content: torch.Tensor, png: Path) -> dict:
        from impasto.io import load_image, to_tensor

        out = to_tensor(load_image(png))
        self.loss.set_content(content)
        total, parts = self.loss(out)
        return {
            "content_loss": float(parts["content"]) * self.cfg.content_weight,
            "style_loss": float(parts["style"]) * self.cfg.style_weight,
            "tv_loss": float(parts["tv"]),
            "total_loss": float(total),
        }


def train_one(name: str, args, content_dir: Path, work: Path) -> dict:
    from impasto.style.fast import FastStyleConfig, save_fast_style, train_fast_style

    adv = args.adversarial_weight if name == "adversarial" else 0.0
    cfg = FastStyleConfig(
        content=str(content_dir), style=str(STYLE), output=str(work / f"{name}.pt"),
        run=str(work / f"{name}.run"), size=args.size, style_size=args.eval_size,
        batch_size=args.batch_size, steps=10**9, lr=args.lr, adversarial_weight=adv,
        adv_loss=args.adv_loss, adv_crop=args.adv_crop, disc_layers=args.disc_layers,
        seed=0, log_every=10, sample_every=0, ckpt_every=0, tensorboard=False,
        **loss_settings(args.loss),
    )
    budget = args.minutes * 60.0
    t0, c0 = time.perf_counter(), cpu_seconds()
    last = {}

    def progress(info) -> None:
        last.update(info.stats)
        if info.step and info.step % 50 == 0:
            print(f"  {name} step {info.step} {time.perf_counter() - t0:.0f}s "
                  f"loss {info.stats.get('loss', float('nan')):.4g}", file=sys.stderr, flush=True)

    result = train_fast_style(cfg, progress=progress,
                              abort=lambda: time.perf_counter() - t0 > budget)
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    model = work / f"{name}.pt"
    save_fast_style(result.net, model, {"style": {"name": STYLE.name}, "steps": result.step,
                                         "training": {"benchmark": True, "adversarial": adv}},
                    thumbnail=STYLE)
    return {"name": name, "steps": result.step, "images": result.step * args.batch_size,
            "train_seconds": seconds, "train_cpu_seconds": cpu,
            "images_per_s": result.step * args.batch_size / seconds,
            "adversarial_weight": adv, "final_stats": last, "model": str(model),
            "settings": {k: v for k, v in cfg.__dict__.items()
                         if k in ("size", "style_size", "batch_size", "lr", "content_layers",
                                  "style_layers", "content_weight", "style_weight", "tv_weight",
                                  "adv_loss", "adv_crop", "disc_layers")}}


def figure(rows: list[list], path: Path, labels: list[str]) -> None:
    """Images side by side: one row per held-out photo, one column per method."""
    from PIL import Image, ImageDraw

    h = max(img.height for row in rows for img in row)
    widths = [max(row[c].width for row in rows) for c in range(len(rows[0]))]
    pad, top = 4, 16
    canvas = Image.new("RGB", (sum(widths) + pad * (len(widths) + 1),
                               top + len(rows) * (h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    x = pad
    for c, label in enumerate(labels):
        draw.text((x + 2, 2), label, fill="black")
        x += widths[c] + pad
    for r, row in enumerate(rows):
        x = pad
        for c, img in enumerate(row):
            canvas.paste(img, (x, top + pad + r * (h + pad)))
            x += widths[c] + pad
    from impasto.io import save_image

    save_image(canvas, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="training budget per network")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (cores)")
    ap.add_argument("--size", type=int, default=128, help="side of the training crops")
    ap.add_argument("--eval-size", type=int, default=256,
                    help="longest side of the held-out outputs (and of the style image)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--loss", choices=("gatys", "johnson"), default="gatys",
                    help="training objective: the evaluator's (default) or Johnson et al.'s")
    ap.add_argument("--adversarial-weight", type=float, default=1e6)
    ap.add_argument("--adv-loss", choices=("nonsaturating", "hinge"), default="nonsaturating")
    ap.add_argument("--adv-crop", type=int, default=64)
    ap.add_argument("--disc-layers", type=int, default=3)
    ap.add_argument("--gatys-iterations", type=int, default=None,
                    help="per scale (default: impasto.stylize's defaults)")
    ap.add_argument("--runs", default="plain,adversarial")
    ap.add_argument("--keep-models", type=Path, default=None,
                    help="copy the trained model files into this folder")
    ap.add_argument("--quick", action="store_true",
                    help="20 s per network, 64 px crops, 128 px outputs, 2 held-out photos")
    ap.add_argument("--json", type=Path, default=OUT / "fast_style_train.json")
    args = ap.parse_args()
    held_out = list(HELD_OUT)
    if args.quick:
        args.minutes, args.size, args.eval_size, args.batch_size = 1 / 3, 64, 128, 2
        args.adv_crop, args.disc_layers = 32, 2
        args.gatys_iterations = args.gatys_iterations or 20
        held_out = held_out[:2]
    if not STYLE.is_file():
        sys.exit(f"missing benchmark input {STYLE} (the shared data folder beside the repo)")
    torch.set_num_threads(args.threads)
    OUT.mkdir(parents=True, exist_ok=True)

    from impasto.io import load_image, resize, save_image, to_tensor
    from impasto.style.fast import FastStyle
    from impasto.style.pipeline import stylize

    everything = photos()
    held = {n: everything[n] for n in held_out if n in everything}
    train_names = [n for n in everything if n not in held]
    work = Path(tempfile.mkdtemp(prefix="fast_style_train_"))
    records: dict = {"runs": {}, "images": {}}
    try:
        content_dir = work / "content"
        content_dir.mkdir()
        for n in train_names:  # smaller copies outside the repo: faster decoding
            img = everything[n]
            save_image(resize(img, longest=512) if max(img.size) > 512 else img,
                       content_dir / f"{n}.png")
        print(f"training photos ({len(train_names)}): {', '.join(train_names)}; held out: "
              f"{', '.join(held)}", file=sys.stderr)

        runs = [r for r in args.runs.split(",") if r]
        for name in runs:
            print(f"training {name} for {args.minutes:g} min ...", file=sys.stderr, flush=True)
            records["runs"][name] = train_one(name, args, content_dir, work)
            if args.keep_models:
                args.keep_models.mkdir(parents=True, exist_ok=True)
                shutil.copy(records["runs"][name]["model"], args.keep_models / f"{name}.pt")

        evaluator = Evaluator(args.eval_size)
        rows, labels = [], ["content"] + runs + ["gatys"]
        for n, img in held.items():
            content_img = resize(img, longest=args.eval_size)
            content = to_tensor(content_img)
            row, rec = [content_img], {}
            for name in runs:
                model = FastStyle.load(records["runs"][name]["model"], device="cpu")
                model(content)  # warm-up
                t0 = time.perf_counter()
                out = model(content)
                seconds = time.perf_counter() - t0
                png = OUT / f"fast_style_train_{n}_{name}.png"
                save_image(out, png)
                rec[name] = {"seconds": seconds, **evaluator(content, png)}
                row.append(load_image(png))
            print(f"Gatys optimisation of {n} ...", file=sys.stderr, flush=True)
            opts = {"iterations": args.gatys_iterations} if args.gatys_iterations else {}
            t0, c0 = time.perf_counter(), cpu_seconds()
            out = stylize(content_img, STYLE, size=args.eval_size, seed=0, **opts)
            seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
            png = OUT / f"fast_style_train_{n}_gatys.png"
            save_image(out, png)
            rec["gatys"] = {"seconds": seconds, "cpu_seconds": cpu, **evaluator(content, png)}
            row.append(load_image(png))
            rows.append(row)
            records["images"][n] = rec
        fig = args.json.with_suffix(".png")
        figure(rows, fig, labels)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    methods = labels[1:]
    mean = {m: {k: float(np.mean([records["images"][n][m][k] for n in held]))
                for k in ("content_loss", "style_loss", "total_loss", "seconds")}
            for m in methods}
    records["mean"] = mean
    records["settings"] = {
        "minutes": args.minutes, "threads": args.threads, "size": args.size,
        "eval_size": args.eval_size, "batch_size": args.batch_size, "loss": args.loss,
        "adversarial_weight": args.adversarial_weight, "adv_loss": args.adv_loss,
        "quick": args.quick, "held_out": list(held), "train_photos": train_names,
    }
    print(f"\nper-style networks vs Gatys, starry_night, held-out photos at {args.eval_size} px, "
          f"{args.threads} threads, {args.minutes:g} min training each")
    for name, r in records["runs"].items():
        print(f"  {name}: {r['steps']} steps of {args.batch_size} x {args.size} px crops, "
              f"{r['images_per_s']:.2f} images/s")
    print(f"{'photo':<10} {'method':<12} {'seconds':>8} {'content':>11} {'style':>11} "
          f"{'total':>11}")
    for n in held:
        for m in methods:
            r = records["images"][n][m]
            print(f"{n:<10} {m:<12} {r['seconds']:>8.2f} {r['content_loss']:>11.4g} "
                  f"{r['style_loss']:>11.4g} {r['total_loss']:>11.4g}")
    for m in methods:
        r = mean[m]
        print(f"{'mean':<10} {m:<12} {r['seconds']:>8.2f} {r['content_loss']:>11.4g} "
              f"{r['style_loss']:>11.4g} {r['total_loss']:>11.4g}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(records, indent=2))
    print(f"wrote {args.json} and {fig}")


if __name__ == "__main__":
    main()
