"""Benchmark: feed-forward stylisation speed and memory, impasto's defaults against fp32 eager.

Two networks, each with random weights unless a file is given (speed does not depend on the
weights):

* the per-style network, :class:`~impasto.nets.transformer.TransformerNet` with its default
  architecture (``--model FILE``: a trained model file instead);
* AdaIN: VGG19 to ``relu4_1`` + the decoder with one style's statistics fixed
  (:class:`~impasto.nets.adain.AdaINStylizer`; the encoder has the packaged Caffe weights when
  they are installed).

Each runs at 512x512 and 1024x1024 (``--quick``: 128 and 256) in these settings, alternating in
one process (``--rounds`` rounds; per setting and size the best of ``--repeats`` timed calls
after one warm-up call per round; the table shows the median over rounds):

* ``fp32-eager``: the baseline, float32, NCHW, ``torch.inference_mode``;
* ``fp32-cl``: float32, channels_last;
* ``bf16-autocast``: ``torch.autocast(bfloat16)`` on the float32 network;
* ``bf16``: a bf16 copy of the network (what :class:`~impasto.infer.runner.InferenceRunner`
  does with ``precision="auto"`` on a CPU with fast bf16);
* ``bf16-cl``: the same, channels_last;
* ``int8``: the int8 network (:mod:`impasto.nets.int8`), calibrated once on the first input,
  the network alone;
* ``default-image``: ``InferenceRunner(net, calibrate_each=True)`` with its defaults, end to
  end (tiling check, input conversion, clamping), as for a single image: ``compile="auto"``
  runs it eagerly; where the default is int8 (on a CPU with VNNI), every call also calibrates
  on its own input, as a lone image (CLI) or the Python API does;
* ``default-video``: ``InferenceRunner(net)`` told that a video of ``--video-frames`` frames
  (1000) of this size is coming (int8: calibrated on the first frame, then kept) (:meth:`~impasto.infer.runner.InferenceRunner.expect`, as
  ``apply_video`` does): ``compile="auto"`` compiles where its policy says it pays
  (:class:`~impasto.infer.compile_policy.CompilePolicy`: at least 100 megapixels of one shape, and not
  on a CPU for networks without instance normalisation), and runs eagerly elsewhere;
* ``compiled``: the same in bf16 (fp32 where bf16 is slow; int8 is never compiled) with a
  compile forced for every size (inductor, frozen weights, one static compile per size), where
  ``default-video`` did not compile, to show what compiling would give there (where it did compile, ``compiled`` is ``default-video``). Left out with
  ``--quick`` unless ``--compile``.

Quality: every photo of ``../shared/data/styletransfer/content`` (else scikit-image's) at 512
and 1024 px through ``--model`` (random weights without it) and, with ``--decoder``, through
AdaIN with ``starry_night.jpg``, as saved 8-bit images: PSNR of the default (a single image)
and of bf16 against fp32 eager.

Compiled settings compile on their first call per size; that call is timed apart, and the
compile time reported is its time less the median call. The speed is megapixels per second;
the speed-up is against ``fp32-eager`` of the same network and size. The summary table shows
per network and size fp32 eager, the default for a single image and the default for a video
or folder. Peak memory: a child process per case stylises one 4096x4096 image (``--quick``:
1024x1024) with the default runner, whole and tiled (automatic tiling with a 1 GiB budget,
``--quick``: 64 MiB, or ``--tile``), and reports the growth of its resident set size over the
level before the call (sampled from /proc every 5 ms), plus the seconds. One torch thread by
default (``--threads``).

    python benchmarks/fast_style.py --quick      # a smoke test, about a minute (no compiling)
    python benchmarks/fast_style.py --quick --compile   # + compiled at 128/256 px (minutes)
    python benchmarks/fast_style.py              # the full run, tens of minutes on one core

Prints a table and writes benchmarks/out/fast_style.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent / "out"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "styletransfer"


# --------------------------------------------------------------------------------------------
# networks


def transformer(model: str | None):
    from impasto.nets.transformer import TransformerNet

    if model:
        from impasto.style.fast import FastStyle

        return FastStyle.load(model, device="cpu").net.eval()
    torch.manual_seed(0)
    return TransformerNet().eval()


def adain_stylizer(decoder: str | None):
    from impasto.nets.adain import AdaINDecoder, AdaINStylizer
    from impasto.nets.vgg import VGG19Features

    try:
        encoder = VGG19Features(["relu4_1"], weights="caffe")
        weights = "caffe"
    except Exception:  # noqa: BLE001  (no packaged weights: random, same speed)
        torch.manual_seed(0)
        encoder = VGG19Features(["relu4_1"], weights=None)
        weights = "random"
    if decoder:  # a trained decoder, with the statistics of a real style
        from impasto.io import load_image, resize, to_tensor
        from impasto.style.adain import AdaIN, load_decoder

        dec, _ = load_decoder(decoder)
        style = SHARED / "style" / "starry_night.jpg"
        if style.is_file():
            ada = AdaIN(dec, encoder, device="cpu", precision="fp32")
            s = to_tensor(resize(load_image(style), longest=512))
            return ada.stylizer([s]).eval(), weights
    else:
        torch.manual_seed(0)
        dec = AdaINDecoder()
    g = torch.Generator().manual_seed(1)
    mean = torch.rand(1, 512, generator=g) * 10
    std = torch.rand(1, 512, generator=g) * 10 + 1
    return AdaINStylizer(encoder, dec, mean, std).eval(), weights


# --------------------------------------------------------------------------------------------
# settings


def make_setting(name: str, net: torch.nn.Module, sizes=(), frames: int = 1000):
    """A callable x -> y for ``name`` (see the module doc)."""
    from impasto.infer.compile_policy import CompilePolicy
    from impasto.infer.runner import InferenceRunner, _cast_parameters

    if name == "default-image":
        return InferenceRunner(net, device="cpu", calibrate_each=True)
    if name == "int8":
        # The runner picks the int8 network for this kind; only the network itself is timed.
        int8 = InferenceRunner(net, device="cpu", precision="int8")

        def run_int8(x):
            if int8.quantized is None:
                int8.calibrate([x])
            with torch.inference_mode():
                return int8.quantized(x)

        return run_int8
    if name in ("default-video", "compiled"):
        policy = CompilePolicy(min_calls=1, min_megapixels=0.0) if name == "compiled" else None
        # compiled: what auto picks for a compiled network (bf16 or fp32 where it would
        # pick int8, which is never compiled)
        precision = "auto"
        if name == "compiled":
            from impasto.infer.precision import decide_precision

            precision = decide_precision("auto", torch.device("cpu"), type(net), compile="on")
        runner = InferenceRunner(net, device="cpu", compile_policy=policy, precision=precision)
        runner.expect({(1, 3, s, s): frames for s in sizes})  # a video of `frames` frames
        return runner
    cl = name.endswith("-cl")
    fmt = torch.channels_last if cl else torch.contiguous_format
    if name.startswith("bf16") and name != "bf16-autocast":
        m = _cast_parameters(copy.deepcopy(net), torch.bfloat16).to(memory_format=fmt)

        def run(x):
            with torch.inference_mode():
                return m(x.to(torch.bfloat16).contiguous(memory_format=fmt)).float()

        return run
    m = copy.deepcopy(net).to(memory_format=fmt)
    autocast = name == "bf16-autocast"

    def run(x):
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            return m(x.contiguous(memory_format=fmt)).float()

    return run


def quality(net, model: str | None, net_name: str = "transformer") -> list[dict]:
    """PSNR (dB) against fp32 eager of the saved 8-bit outputs: the single-image default and
    bf16, per photo and size."""
    from impasto.io import load_image, resize, to_tensor

    data = SHARED / "content"
    photos = {p.stem: load_image(p) for p in sorted(data.glob("*.jpg"))}
    if not photos:
        from PIL import Image
        from skimage import data as skdata

        photos = {n: Image.fromarray(getattr(skdata, n)()).convert("RGB")
                  for n in ("astronaut", "coffee", "chelsea")}

    def eight_bit(y):
        return y.clamp(0, 1).mul(255).round()

    def psnr(a, b):
        mse = (eight_bit(a) - eight_bit(b)).pow(2).mean().item()
        return float("inf") if mse == 0 else 10 * math.log10(255 ** 2 / mse)

    runs = {s: make_setting(s, net) for s in ("fp32-eager", "bf16", "default-image")}
    rows = []
    for size in (512, 1024):
        for name, img in photos.items():
            x = to_tensor(resize(img, longest=size))
            ref = runs["fp32-eager"](x)
            rows.append({"net": net_name, "photo": name, "size": size, "model": model,
                         "default_psnr": psnr(runs["default-image"](x), ref),
                         "bf16_psnr": psnr(runs["bf16"](x), ref)})
            print(f"  quality {net_name} {name:18s} {size:5d}px default {rows[-1]['default_psnr']:.2f} dB"
                  f", bf16 {rows[-1]['bf16_psnr']:.2f} dB", file=sys.stderr, flush=True)
    return rows


def time_call(fn, x, repeats: int, sync=None) -> float:
    """The best of ``repeats`` timed calls ``fn(x)`` after one warm-up call; ``sync`` (e.g.
    ``torch.cuda.synchronize``) waits for the device before each clock reading."""
    sync = sync or (lambda: None)
    fn(x)  # warm-up
    sync()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x)
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def _compiles(fn, size: int) -> bool:
    return (1, 3, size, size) in getattr(fn, "compile_shapes", ())


def speed(net_name: str, net, settings, sizes, rounds: int, repeats: int,
          frames: int = 1000) -> list[dict]:
    runners = {s: make_setting(s, net, sizes, frames) for s in settings if s != "compiled"}
    video = runners["default-video"]
    # "compiled" where auto did not compile; where it did, the two are the same runner
    forced = [s for s in sizes if not _compiles(video, s)]
    if "compiled" in settings and forced:
        runners["compiled"] = make_setting("compiled", net, forced, frames)
    first: dict[tuple[str, int], float] = {}
    for name, fn in runners.items():  # the first call compiles: time it apart, per size
        for size in sizes:
            if _compiles(fn, size):
                x = torch.rand(1, 3, size, size)
                t = time.perf_counter()
                fn(x)
                first[(name, size)] = time.perf_counter() - t
                print(f"  {net_name} {name:14s} {size:5d}px first call (compiles): "
                      f"{first[(name, size)]:.1f} s", file=sys.stderr, flush=True)
    times: dict[tuple[str, int], list[float]] = {}
    for r in range(rounds):
        for size in sizes:
            x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(r))
            for s, fn in runners.items():
                if s == "compiled" and size not in forced:
                    continue
                times.setdefault((s, size), []).append(time_call(fn, x, repeats))
                print(f"  {net_name} {s:14s} {size:5d}px round {r + 1}: "
                      f"{times[(s, size)][-1]:.3f} s", file=sys.stderr, flush=True)
    rows = []
    for size in sizes:
        base = statistics.median(times[("fp32-eager", size)])
        names = list(runners) + (["compiled"] if "compiled" in settings and
                                 "compiled" not in runners else [])
        for s in names:
            src = s
            if s == "compiled" and size not in forced:
                src = "default-video"  # auto compiled this size: the same runner
            if (src, size) not in times:
                continue
            t = statistics.median(times[(src, size)])
            fn = runners[src]
            compiled = _compiles(fn, size)
            rows.append({
                "net": net_name, "setting": s, "size": size, "seconds": t,
                "mpix_per_s": size * size / 1e6 / t, "speedup": base / t,
                "compiled": compiled,
                "compile_seconds": first[(src, size)] - t if compiled else None,
            })
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """Per network and size: fp32 eager, the single-image default, the video/folder default
    (and compiled where the default did not compile)."""
    out = []
    keys = sorted({(r["net"], r["size"]) for r in rows}, key=lambda k: (k[0] != "transformer", k))
    for net, size in keys:
        by = {r["setting"]: r for r in rows if r["net"] == net and r["size"] == size}
        video = by["default-video"]
        comp = by.get("compiled")
        out.append({
            "net": net, "size": size,
            "fp32_eager_mpix_per_s": by["fp32-eager"]["mpix_per_s"],
            "image_default_mpix_per_s": by["default-image"]["mpix_per_s"],
            "image_default_speedup": by["default-image"]["speedup"],
            "video_default_mpix_per_s": video["mpix_per_s"],
            "video_default_speedup": video["speedup"],
            "video_default_compiles": video["compiled"],
            "compiled_mpix_per_s": comp["mpix_per_s"] if comp else None,
            "compiled_speedup": comp["speedup"] if comp else None,
            "compile_seconds": comp["compile_seconds"] if comp else video["compile_seconds"],
        })
    return out


# --------------------------------------------------------------------------------------------
# memory (in child processes)


def memory_child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    from impasto.infer.runner import InferenceRunner

    tile = "auto" if args.child_tile == -1 else args.child_tile
    if args.memory_child == "transformer":
        net = transformer(args.model)
        runner = InferenceRunner(net, device="cpu", tile=tile, memory_budget=args.child_budget)
    else:
        from impasto.style.adain import _tiled_adain

        net, _ = adain_stylizer(args.decoder)
        runner = InferenceRunner(net, device="cpu", tile=tile, overlap=128,
                                 memory_budget=args.child_budget, tiled=_tiled_adain)
    x = torch.rand(1, 3, args.child_size, args.child_size)
    tile = runner.tile_for(x)
    before = _rss()
    peak = [before]
    done = threading.Event()

    def sample() -> None:  # the resident set size every 5 ms while the call runs
        while not done.wait(0.005):
            peak[0] = max(peak[0], _rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.perf_counter()
    y = runner(x)
    seconds = time.perf_counter() - t
    done.set()
    sampler.join()
    peak[0] = max(peak[0], _rss())
    print(json.dumps({"tile": tile, "seconds": seconds, "rss_before": before,
                      "rss_peak": peak[0], "growth": peak[0] - before,
                      "max_rss_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "ok": bool(torch.isfinite(y).all())}))


def _rss() -> int:
    """This process's resident set size now, in bytes (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def memory(args, nets, size: int, budget: int) -> list[dict]:
    rows = []
    for net_name in nets:
        for mode, tile in (("whole", 0), ("tiled", args.tile or -1)):
            cmd = [sys.executable, __file__, "--memory-child", net_name, "--child-size",
                   str(size), "--child-tile", str(tile), "--child-budget", str(budget),
                   "--threads", str(args.threads)]
            if args.model:
                cmd += ["--model", args.model]
            if args.decoder:
                cmd += ["--decoder", args.decoder]
            print(f"  memory {net_name} {mode} {size}px ...", file=sys.stderr, flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                rows.append({"net": net_name, "mode": mode, "size": size, "error":
                             (proc.stderr.strip().splitlines() or ["failed"])[-1]})
                continue
            info = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append({"net": net_name, "mode": mode, "size": size, "budget": budget, **info})
    return rows


# --------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, a smoke test")
    ap.add_argument("--model", help="a per-style model file (default: random weights)")
    ap.add_argument("--decoder", help="an AdaIN decoder file (default: random weights)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--compile", action="store_true",
                    help="also time a forced compile (the 'compiled' setting) in --quick")
    ap.add_argument("--video-frames", type=int, default=1000,
                    help="the video length announced to the default-video runner")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--tile", type=int, default=None, help="tile for the memory test "
                    "(default: automatic, 1 GiB budget)")
    ap.add_argument("--memory-child", help=argparse.SUPPRESS)
    ap.add_argument("--child-size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-tile", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-budget", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args)
        return
    torch.set_num_threads(args.threads)
    sizes = (128, 256) if args.quick else (512, 1024)
    rounds = args.rounds or (1 if args.quick else 3)
    repeats = args.repeats or (1 if args.quick else 2)
    settings = ["fp32-eager", "fp32-cl", "bf16-autocast", "bf16", "bf16-cl", "default-image",
                "default-video"]
    if args.compile or not args.quick:
        settings.append("compiled")
    from impasto.device import cpu_has_fast_bf16

    from impasto.nets.int8 import int8_supported

    rows = []
    print("per-style network (TransformerNet)", file=sys.stderr)
    tnet = transformer(args.model)
    tsettings = settings + (["int8"] if int8_supported("cpu") else [])
    rows += speed("transformer", tnet, tsettings, sizes, rounds, repeats, args.video_frames)
    quality_rows = [] if args.quick else quality(tnet, args.model)
    print("AdaIN (VGG19 relu4_1 + decoder)", file=sys.stderr)
    stylizer, vgg = adain_stylizer(args.decoder)
    rows += speed("adain", stylizer, tsettings, sizes, rounds, repeats, args.video_frames)
    if args.decoder and not args.quick:
        quality_rows += quality(stylizer, args.decoder, "adain")
    table = summary(rows)
    mem = [] if args.no_memory else memory(
        args, ("transformer", "adain"), 1024 if args.quick else 4096,
        (64 << 20) if args.quick else (1 << 30))

    print()
    print(f"{'net':12s} {'setting':14s} {'size':>6s} {'s/image':>9s} {'MP/s':>8s} "
          f"{'speed-up':>9s} {'compile s':>10s}")
    for r in rows:
        c = f"{r['compile_seconds']:.1f}" if r["compile_seconds"] is not None else ""
        print(f"{r['net']:12s} {r['setting']:14s} {r['size']:6d} {r['seconds']:9.3f} "
              f"{r['mpix_per_s']:8.3f} {r['speedup']:8.2f}x {c:>10s}")
    print()
    print(f"MP/s (speed-up over fp32 eager); video/folder: what compile='auto' picks for "
          f"{args.video_frames} frames of one size")
    print(f"{'net':12s} {'size':>5s} {'fp32 eager':>10s} {'image default':>15s} "
          f"{'video default':>15s} {'auto':>7s} {'compiled':>15s} {'compile s':>10s}")
    for t in table:
        comp = (f"{t['compiled_mpix_per_s']:.3f} ({t['compiled_speedup']:.2f}x)"
                if t["compiled_mpix_per_s"] is not None else "-")
        c = f"{t['compile_seconds']:.1f}" if t["compile_seconds"] is not None else "-"
        print(f"{t['net']:12s} {t['size']:5d} {t['fp32_eager_mpix_per_s']:10.3f} "
              f"{t['image_default_mpix_per_s']:7.3f} ({t['image_default_speedup']:.2f}x) "
              f"{t['video_default_mpix_per_s']:7.3f} ({t['video_default_speedup']:.2f}x) "
              f"{'compile' if t['video_default_compiles'] else 'eager':>7s} {comp:>15s} "
              f"{c:>10s}")
    if quality_rows:
        print()
        print("PSNR (dB) against fp32 eager, saved 8-bit images")
        print(f"{'net':12s} {'photo':18s} {'size':>5s} {'default':>8s} {'bf16':>8s}")
        for q in quality_rows:
            print(f"{q['net']:12s} {q['photo']:18s} {q['size']:5d} {q['default_psnr']:8.2f} "
                  f"{q['bf16_psnr']:8.2f}")
    if mem:
        print()
        print(f"{'net':12s} {'mode':6s} {'size':>6s} {'tile':>6s} {'seconds':>8s} "
              f"{'peak RSS MB':>12s} {'growth MB':>10s}")
        for m in mem:
            if "error" in m:
                print(f"{m['net']:12s} {m['mode']:6s} {m['size']:6d}  error: {m['error']}")
                continue
            print(f"{m['net']:12s} {m['mode']:6s} {m['size']:6d} {str(m['tile']):>6s} "
                  f"{m['seconds']:8.1f} {m['rss_peak'] / 2**20:12.0f} "
                  f"{m['growth'] / 2**20:10.0f}")
    OUT.mkdir(exist_ok=True)
    result = {
        "benchmark": "fast_style",
        "quick": args.quick,
        "threads": args.threads,
        "rounds": rounds,
        "repeats": repeats,
        "torch": torch.__version__,
        "cpu_fast_bf16": cpu_has_fast_bf16(),
        "int8": int8_supported("cpu"),
        "machine": platform.processor() or platform.machine(),
        "adain_encoder_weights": vgg,
        "model": args.model,
        "decoder": args.decoder,
        "video_frames": args.video_frames,
        "summary": table,
        "speed": rows,
        "memory": mem,
        "quality": quality_rows,
    }
    path = OUT / "fast_style.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
