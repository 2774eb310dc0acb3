"""Benchmark: a LeNet on MNIST, the real-versus-real floor of FID, KID and SWD, and (optionally)
how a GAN trained on MNIST scores against them.

The data are the 10,000 MNIST test images in ``../shared/data/mnist`` (the training images are
not available offline). A seeded permutation cuts them into two halves, A and B (5,000 each):

1. **Classifier.** :func:`impasto.classify.train` trains the LeNet (``arch="lenet"``, grey,
   default settings: SGD, one-cycle, random crops with padding, bf16 autocast where fast) on A,
   with 10% of A held out for choosing ``best.pt``; its accuracy is measured on B, which it
   never sees. Expected: at least 97%. The images are 32x32 (the GAN's resolution; LeNet-5's
   own input size): :func:`impasto.data.open_dataset` resizes the 28x28 digits exactly as it
   does for GAN training, so real and generated images reach the classifier alike, with no
   further resizing. (Resizing matters: a LeNet trained at 28x28 loses about 10 points of
   accuracy on digits taken to 32x32 and back, which would inflate every classifier metric.)
2. **Real-versus-real floor.** FID and KID between A and B on the classifier's penultimate
   features (128-d), and multi-scale SWD (Laplacian levels 32 and 16) on the images. No
   generator can beat these numbers with sets of this size; they are the noise level of each
   metric.
3. **GANs** (``--gan-run RUN [RUN ...]``, e.g. the runs of ``benchmarks/gan_mnist.py``): its EMA generator
   (:class:`impasto.gan.GanGenerator`) draws as many images as B holds (seed 0), compared with
   B exactly as A was: classifier-FID, KID and SWD; the share of samples the classifier assigns
   to one class with probability over 0.9; and the entropy of the histogram of predicted
   classes (``ln 10 = 2.303`` when all ten digits are equally frequent). The same quantities
   for real B are printed beside them as the reference, and the classifier's Inception Score.

    python benchmarks/mnist_eval.py                          # ~5 minutes on one core
    python benchmarks/mnist_eval.py --gan-run benchmarks/out/gan_mnist/{dcgan,sngan}
    python benchmarks/mnist_eval.py --quick                  # ~30 s: 2,000 + 1,000, 2 epochs

Prints a table and writes benchmarks/out/mnist_eval.json (``--quick``: mnist_eval_quick.json).
``--run DIR`` keeps the classifier's run folder (usable as ``classifier:DIR`` by the metrics);
``--classifier RUN`` reuses a trained one instead of training.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent / "out"
MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
IMAGES = "t10k-images-idx3-ubyte.gz"
LABELS = "t10k-labels-idx1-ubyte.gz"


def load_mnist(resolution: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 10,000 images as stored (28x28, uint8 (N, 28, 28)), at ``resolution`` as the GAN
    training loader prepares them ((N, 1, R, R) float in [0, 1]), and the labels."""
    from impasto.data import open_dataset, read_idx
    from impasto.data.sources import IDX_LABELS_MAGIC

    raw = read_idx(MNIST / IMAGES)
    labels = torch.from_numpy(read_idx(MNIST / LABELS, IDX_LABELS_MAGIC).astype(np.int64))
    ds = open_dataset(MNIST / IMAGES, resolution=resolution, channels=1)
    xr = torch.stack([ds[i][0] for i in range(len(ds))]).add_(1.0).div_(2.0)
    return torch.from_numpy(raw.copy()), xr, labels


def entropy_of_predictions(probs: torch.Tensor) -> float:
    """Entropy (nats) of the histogram of argmax classes."""
    counts = torch.bincount(probs.argmax(1), minlength=probs.shape[1]).double()
    p = counts / counts.sum()
    p = p[p > 0]
    return float(-(p * p.log()).sum()) + 0.0  # + 0.0: no "-0.000"


def class_stats(model, images: torch.Tensor) -> dict:
    from impasto.classify import predict_logits
    from impasto.metrics import inception_score

    probs = predict_logits(model, images).softmax(1)
    hist = torch.bincount(probs.argmax(1), minlength=probs.shape[1]).tolist()
    is_mean, is_std = inception_score(probs.double().numpy(), splits=10)
    return {
        "confident_share": float((probs.max(1).values > 0.9).double().mean()),
        "class_entropy": entropy_of_predictions(probs),
        "class_histogram": hist,
        "inception_score": [is_mean, is_std],
    }


def compare(model, a: torch.Tensor, b: torch.Tensor, args) -> dict:
    """FID and KID on the classifier's features, SWD on the images (first ``--swd-images``)."""
    from impasto.classify import extract_features
    from impasto.metrics import fid, kid, swd

    fa, fb = extract_features(model, a).double(), extract_features(model, b).double()
    k_mean, k_std = kid(fa.numpy(), fb.numpy(), num_subsets=100,
                        subset_size=min(1000, len(a), len(b)))
    n = min(args.swd_images, len(a), len(b))
    t = time.perf_counter()
    s = swd(a[:n], b[:n], seed=0)
    return {
        "fid": fid(fa.numpy(), fb.numpy()),
        "kid": [k_mean, k_std],
        "swd": {str(k): v for k, v in s.items()},
        "swd_images": n,
        "swd_seconds": time.perf_counter() - t,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2,000 + 1,000 images, 2 epochs")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--gan-run", nargs="+", default=[], metavar="RUN",
                    help="GAN run folders/checkpoints (e.g. benchmarks/out/gan_mnist/dcgan)")
    ap.add_argument("--classifier", default=None, metavar="RUN",
                    help="use this trained classifier instead of training one")
    ap.add_argument("--run", default=None, metavar="DIR", help="keep the classifier run here")
    ap.add_argument("--swd-images", type=int, default=2000,
                    help="images per set for SWD (default 2000: about 2 minutes on one core)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from impasto.classify import (
        ClassifierTrainConfig,
        evaluate,
        load_classifier,
        train,
    )

    gens = []
    resolution = 32
    if args.gan_run:
        from impasto.gan import GanGenerator

        gens = [(run, GanGenerator.load(run, ema=True)) for run in args.gan_run]
        sizes = {g.resolution for _, g in gens}
        if len(sizes) != 1:
            sys.exit(f"mnist_eval: the GAN runs have different resolutions: {sorted(sizes)}")
        resolution = sizes.pop()
    t0 = time.perf_counter()
    x28, xr, labels = load_mnist(resolution)
    perm = torch.from_numpy(np.random.default_rng(args.seed).permutation(len(labels)))
    half = len(labels) // 2
    ia, ib = perm[:half], perm[half:]
    if args.quick:
        ia, ib = ia[:2000], ib[:1000]
        args.epochs, args.swd_images = 2, min(args.swd_images, 200)
    t_data = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else Path(tmp) / "lenet"
        t1 = time.perf_counter()
        if args.classifier:
            model = load_classifier(args.classifier)
            train_info = {"classifier": str(args.classifier)}
        else:
            data = Path(tmp) / "half_a.npz"
            np.savez(data, images=x28[ia].numpy(), labels=labels[ia].numpy())
            config = ClassifierTrainConfig(data=str(data), run=str(run), arch="lenet",
                                           image_size=resolution, epochs=args.epochs,
                                           device="cpu", seed=args.seed, log_every=0,
                                           tensorboard=False)
            result = train(config)
            model = load_classifier(run)
            train_info = {
                "images": len(ia), "epochs": args.epochs, "steps": result.step,
                "best_val_acc": result.best_val_acc, "seconds": result.seconds,
                "config": {k: v for k, v in vars(result.config).items() if k not in ("data",)},
            }
        t_train = time.perf_counter() - t1

        test = evaluate(model, xr[ib], labels[ib])
        real = {"floor": compare(model, xr[ia], xr[ib], args), **class_stats(model, xr[ib])}

        gans = []
        for run_name, gen in gens:
            t2 = time.perf_counter()
            fake = gen(len(ib), seed=0)
            if fake.shape[1] == 3:
                w = torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)
                fake = (fake * w).sum(1, keepdim=True)
            fake = (fake.clamp(0, 1) * 255).round() / 255  # what a saved 8-bit PNG holds
            gans.append({"run": str(run_name), "source": gen.source, "samples": len(fake),
                         **compare(model, fake, xr[ib], args), **class_stats(model, fake),
                         "seconds": time.perf_counter() - t2})

    report = {
        "quick": args.quick,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "split": {"seed": args.seed, "a": len(ia), "b": len(ib)},
        "resolution": resolution,
        "classifier": {**train_info, "image_size": int(model.image_size),
                       "test_accuracy": test.accuracy, "test_loss": test.loss,
                       "per_class": dict(zip(test.class_names, test.per_class.tolist())),
                       "train_seconds": t_train},
        "real": real,
        "gans": gans,
        "data_seconds": t_data,
    }
    print_table(report)
    OUT.mkdir(exist_ok=True)
    out = OUT / ("mnist_eval_quick.json" if args.quick else "mnist_eval.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


def print_table(r: dict) -> None:
    c = r["classifier"]
    print(f"LeNet trained on half A ({r['split']['a']} images, {c.get('epochs', '-')} epochs, "
          f"{c['train_seconds']:.0f} s); tested on half B ({r['split']['b']} images)")
    print(f"  accuracy on B: {100 * c['test_accuracy']:.2f}% (at {c['image_size']}x"
          f"{c['image_size']}; the full run should reach >= 97%)")
    worst = min(c["per_class"].items(), key=lambda kv: kv[1])
    print(f"  weakest digit: {worst[0]} ({100 * worst[1]:.2f}%)\n")
    real, gans = r["real"], r["gans"]
    f = real["floor"]
    names = [Path(g["run"]).name or g["run"] for g in gans]
    rows = [("classifier-FID", f["fid"], [g["fid"] for g in gans], "{:.3f}"),
            ("KID x1e3", f["kid"][0] * 1e3, [g["kid"][0] * 1e3 for g in gans], "{:.3f}"),
            ("KID std x1e3", f["kid"][1] * 1e3, [g["kid"][1] * 1e3 for g in gans], "{:.3f}")]
    for level in f["swd"]:
        rows.append((f"SWD x1e3 {level}", f["swd"][level], [g["swd"][level] for g in gans],
                     "{:.2f}"))
    rows += [("share p > 0.9", real["confident_share"],
              [g["confident_share"] for g in gans], "{:.3f}"),
             ("class entropy (ln10=2.303)", real["class_entropy"],
              [g["class_entropy"] for g in gans], "{:.3f}"),
             ("classifier IS", real["inception_score"][0],
              [g["inception_score"][0] for g in gans], "{:.2f}")]
    head = f"{'metric':<28}{'real A vs B':>14}" + "".join(f"{n[:13]:>14}" for n in names)
    print(head)
    print("-" * len(head))
    for name, a, bs, fmt in rows:
        print(f"{name:<28}{fmt.format(a):>14}" + "".join(f"{fmt.format(b):>14}" for b in bs))
    print("(share, entropy and IS in the first column are of real B itself; GAN columns: "
          "its EMA generator's samples vs real B)")
    for n, g in zip(names, gans):
        print(f"{n} predicted-class histogram: {g['class_histogram']}")

if __name__ == "__main__":
    sys.exit(main())
