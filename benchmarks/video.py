"""Benchmark: flicker of stylised video, frame by frame against ``--temporal`` (issue #18).

Two short clips made from scikit-image's packaged photos (no files needed): ``pan`` (the
astronaut under a slow pan and zoom) and ``object`` (the coffee photo panning slowly while a
disc cut from the cat photo crosses it), 60 frames at 24 fps (2.5 s), 256 px. Each method row
stylises each clip in several variants, alternating them ``--repeats`` times in one process,
and reports for each:

* the warping error (:mod:`impasto.metrics.flicker`, Lai et al. 2018) and the input's own,
  the floor, on the frames in memory (no video codec in between);
* seconds per frame, wall and CPU (``time.process_time``: every thread of the process), the
  best of the repeats;
* the Gatys style loss (``gatys-vgg19-v1``'s style term, :mod:`impasto.metrics.nst`, at the
  clip's size) of every ``--score-every``-th frame against the row's style image, and the
  content loss against the input frame: consistency must not be bought by washing the style
  out.

Rows (one function each, ``METHODS``; a new method adds a function returning a
:class:`Method`): ``instant-preset`` (the built-in style 3), ``instant-style`` (the instant
network with scikit-image's immunohistochemistry image as the style). Per-style networks
(``--model PATH --model-style PAINTING``) and AdaIN (``--adain DECODER``) need a trained network,
and none ships: their rows (``model``, ``adain``) run when a file is given (training one costs
tens of minutes per style on a CPU: ``impasto train fast-style``, ``impasto train adain``);
``--temporal`` is the same code for them (it wraps the frame transform). ``gatys`` (Gatys on video, Ruder et al.
2016; variants ``frame``, ``temporal``, ``warm``) runs only when named: an iteration is a VGG19
forward and backward pass, so run it small::

    OMP_NUM_THREADS=1 python benchmarks/video.py --methods gatys --clips pan --frames 8 \
        --size 128 --repeats 1 --score-every 1 --gif docs/gatys_video.gif

Variants of a feed-forward row: ``frame`` (frame by frame, as ``impasto stylize`` without
``--temporal``), ``temporal`` (the blend at the default strength, keeping the detail),
``temporal-plain`` (the plain average at 0.4, the blend before ``detail``), ``temporal+feed`` (the
blend, and the warped previous output mixed into the network's input, frame by frame).
``--sweep`` adds the blend at other strengths (to tune the default). Also measured: DIS against
Farneback flow on a known motion (``flow_choice``).

    OMP_NUM_THREADS=1 python benchmarks/video.py          # about 15 minutes on one core
    OMP_NUM_THREADS=1 python benchmarks/video.py --quick  # 12 frames at 128 px, 1 repeat

Prints tables and writes benchmarks/out/video.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent / "out"
FPS = 24

#: Targets of issue #18 for the feed-forward methods.
TARGET_CUT = 3.0  # warping error of frame-by-frame output / that of --temporal, at least
TARGET_TIME = 0.20  # extra time per frame, at most
TARGET_STYLE = 0.10  # rise of the per-frame style loss, at most


# --------------------------------------------------------------------------------------------
# clips


def _affine(img: np.ndarray, zoom: float, dx: float, dy: float) -> np.ndarray:
    """``img`` zoomed by ``zoom`` about its centre and moved by ``(dx, dy)`` px (content moves
    right and down for positive values)."""
    import cv2

    h, w = img.shape[:2]
    m = np.float32([[zoom, 0, dx + (1 - zoom) * w / 2], [0, zoom, dy + (1 - zoom) * h / 2]])
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _frames(arrays: list[np.ndarray], size: int) -> list[torch.Tensor]:
    """uint8 ``(H, W, 3)`` arrays as ``(1, 3, h, w)`` tensors in ``[0, 1]``, longest side
    ``size`` (even sides)."""
    import cv2

    h, w = arrays[0].shape[:2]
    s = size / max(h, w)
    ow, oh = int(round(w * s)) // 2 * 2, int(round(h * s)) // 2 * 2
    out = []
    for a in arrays:
        a = cv2.resize(a, (ow, oh), interpolation=cv2.INTER_AREA)
        out.append(torch.from_numpy(a).permute(2, 0, 1)[None].float().div(255.0))
    return out


def clip_pan(n: int, size: int) -> list[torch.Tensor]:
    """The astronaut, panning right by 0.6% of the width and zooming in 0.25% per frame."""
    from skimage import data

    img = data.astronaut()
    w = img.shape[1]
    return _frames([_affine(img, 1.0 + 0.0025 * i, -0.006 * w * i, -0.002 * w * i)[64:-64, 64:-64]
                    for i in range(n)], size)


def clip_object(n: int, size: int) -> list[torch.Tensor]:
    """The coffee photo panning left slowly, with a disc of the cat photo (radius 1/6 of the
    height) crossing it from left to right."""
    from skimage import data

    bg = data.coffee()
    h, w = bg.shape[:2]
    cat = data.chelsea()
    r = h // 6
    cy, cx = cat.shape[0] // 2 - 20, cat.shape[1] // 2
    patch = cat[cy - r: cy + r, cx - r: cx + r]
    yy, xx = np.mgrid[-r:r, -r:r]
    disc = (yy ** 2 + xx ** 2) < r ** 2
    frames = []
    for i in range(n):
        f = _affine(bg, 1.0, 0.004 * w * i, 0.0)
        x0 = int(w * 0.15 + (w * 0.6) * i / max(n - 1, 1))
        y0 = int(h * 0.55 - h * 0.1 * np.sin(np.pi * i / max(n - 1, 1)))
        region = f[y0 - r: y0 + r, x0 - r: x0 + r]
        region[disc] = patch[disc]
        frames.append(f)
    return _frames(frames, size)


CLIPS: dict[str, Callable[[int, int], list[torch.Tensor]]] = {"pan": clip_pan,
                                                             "object": clip_object}


# --------------------------------------------------------------------------------------------
# methods: each row is a function returning a Method


Run = Callable[[list[torch.Tensor]], list[torch.Tensor]]


@dataclass
class Method:
    """A row: its variants (name -> a function stylising a clip's frames, in order), the
    style image the style loss is measured against ``(1, 3, H, W)``, and a note."""

    name: str
    variants: dict[str, Run]
    style: torch.Tensor
    note: str = ""
    baseline: str = "frame"


def batched(transform: Callable[[torch.Tensor], torch.Tensor], batch_size: int) -> Run:
    """Frame by frame: the frames through ``transform`` ``batch_size`` at a time, as
    :func:`impasto.style.apply.apply_video` does without ``temporal``."""

    def run(frames: list[torch.Tensor]) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        for i in range(0, len(frames), batch_size):
            out.extend(transform(torch.cat(frames[i: i + batch_size])).split(1))
        return out

    return run


def temporal(transform: Callable[[torch.Tensor], torch.Tensor], batch_size: int,
             **config) -> Run:
    """With :class:`impasto.temporal.blend.TemporalStylizer`, as ``apply_video(...,
    temporal=TemporalConfig(**config))`` does."""
    from impasto.temporal.blend import TemporalConfig, TemporalStylizer

    cfg = TemporalConfig(**config)

    def run(frames: list[torch.Tensor]) -> list[torch.Tensor]:
        stylizer = TemporalStylizer(transform, cfg)
        out: list[torch.Tensor] = []
        for i in range(0, len(frames), batch_size):
            out.extend(stylizer(torch.cat(frames[i: i + batch_size])).split(1))
        return out

    return run


def feedforward_variants(transform: Callable[[torch.Tensor], torch.Tensor], args
                         ) -> dict[str, Run]:
    """``frame``, ``temporal`` (the defaults: stabilised, then blended at the default
    strength), ``stabilize`` (stabilised, no blend), ``blend-0.5`` (the former default: the
    blend alone at 0.5), ``temporal-plain`` (the plain average at 0.4, not stabilised),
    ``residual`` (stabilised, the blend at 0.5 weighted by the flow the camera does not
    explain, ``TemporalConfig(residual=1.0)``), with
    ``--feed-row`` ``temporal+feed``, and with ``--sweep`` ``temporal@S`` for other
    strengths."""
    from impasto.temporal.blend import DEFAULT_STRENGTH

    b = args.batch_size
    v = {"frame": batched(transform, b),
         "temporal": temporal(transform, b, strength=args.strength or DEFAULT_STRENGTH),
         # the camera's motion followed, no blend
         "stabilize": temporal(transform, b, strength=0.0),
         # the former default: the blend alone at 0.5, keeping the detail
         "blend-0.5": temporal(transform, b, strength=0.5, stabilize=False),
         # the plain average at the first default 0.4 (no detail; the library's warp)
         "temporal-plain": temporal(transform, b, strength=0.4, detail=False, stabilize=False),
         # the blend only where the camera does not explain the flow (the residual option)
         "residual": temporal(transform, b, strength=0.5, residual=1.0)}
    if args.feed_row:
        v["temporal+feed"] = temporal(transform, b, strength=args.strength or DEFAULT_STRENGTH,
                                      feed=args.feed)
    for s in args.sweep or ():
        v[f"temporal@{s:g}"] = temporal(transform, b, strength=s)
    return v


def _instant():
    from impasto.style.instant import InstantStyle

    return InstantStyle.from_file(device="cpu")


def method_instant_preset(args) -> Method:
    """The built-in style 3 (``--preset 3``), fp32. Its painting does not ship, so the style
    loss is measured against the preset's own rendering of scikit-image's rocket photo."""
    from skimage import data

    inst = _instant()
    runner = inst.runner(inst.stylizer(preset=3), precision="fp32")
    rocket = _frames([data.rocket()], args.size)[0]
    with torch.no_grad():
        style = runner(rocket)
    return Method("instant-preset", feedforward_variants(runner, args), style,
                  "--preset 3; style image: the preset's rendering of skimage rocket")


def method_instant_style(args) -> Method:
    """The instant network with scikit-image's immunohistochemistry image as the style
    (``--method instant -s ...``), fp32."""
    from skimage import data

    inst = _instant()
    style = _frames([data.immunohistochemistry()], 512)[0]
    runner = inst.runner(inst.stylizer([style]), precision="fp32")
    return Method("instant-style", feedforward_variants(runner, args),
                  _frames([data.immunohistochemistry()], args.size)[0],
                  "--method instant -s immunohistochemistry")


def _style_frame(path: str, size: int) -> torch.Tensor:
    """The style image at ``path`` as a ``(1, 3, h, w)`` tensor, longest side ``size``."""
    from impasto.io import load_image

    return _frames([np.asarray(load_image(path).convert("RGB"))], size)[0]


def method_model(args) -> Method:
    """A per-style network (``--model PATH``: ``impasto stylize clip.mp4 --model PATH``), fp32;
    the style loss against ``--model-style`` (the painting it was trained on). Runs only when
    ``--model`` is given: no trained network ships."""
    from impasto.style.fast import FastStyle

    if not args.model_style:
        sys.exit("--model needs --model-style: the painting the network was trained on")
    runner = FastStyle.from_file(args.model, device="cpu").transform(precision="fp32",
                                                                     compile="off")
    return Method("model", feedforward_variants(runner, args),
                  _style_frame(args.model_style, args.size),
                  f"--model {Path(args.model).name}, style {Path(args.model_style).name}")


def method_adain(args) -> Method:
    """AdaIN (``--method adain -s ...`` with the decoder ``--adain PATH``) with scikit-image's
    immunohistochemistry image as the style (as ``instant-style``), fp32. Runs only when
    ``--adain`` is given: no trained decoder ships."""
    from skimage import data

    from impasto.style.adain import AdaIN

    style = _frames([data.immunohistochemistry()], 512)[0]
    runner = AdaIN.from_file(args.adain, device="cpu", precision="fp32").transform(
        [style], compile="off")
    return Method("adain", feedforward_variants(runner, args),
                  _frames([data.immunohistochemistry()], args.size)[0],
                  f"--method adain (decoder {Path(args.adain).name}) -s immunohistochemistry")


def method_gatys(args) -> Method:
    """Gatys (``impasto stylize clip.mp4 -s ...``, :mod:`impasto.style.gatys_video`), with the
    immunohistochemistry style of ``instant-style`` at the default settings (the CLI's
    precision). Variants: ``frame`` (every frame a still: the full schedule from the photo),
    ``temporal`` (Ruder et al. 2016: the first frame a still, later frames started from the
    previous result warped by the flow, the temporal loss, ``frame_iterations`` at full size)
    and ``warm`` (the warped start alone, ``--temporal-weight 0``). Slow: an iteration is a
    VGG19 forward and backward pass, so run it small (``--methods gatys --clips pan --frames 8
    --size 128 --repeats 1``: about 10 CPU minutes). ``--gif PATH`` also writes input |
    frame by frame | temporal side by side."""
    from skimage import data

    from impasto.style import GatysConfig, GatysStyleTransfer
    from impasto.style.gatys_video import stylize_frames

    style = _frames([data.immunohistochemistry()], 512)[0]
    transfer = GatysStyleTransfer(GatysConfig(size=args.size, device="cpu"))
    made: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}

    def variant(name: str, **kw) -> Run:
        def run(frames: list[torch.Tensor]) -> list[torch.Tensor]:
            with torch.enable_grad():  # measure() runs the variants under no_grad
                out = list(stylize_frames(transfer, frames, [style], **kw))
            made[name] = (frames, out)
            if args.gif and {"frame", "temporal"} <= made.keys():
                side_by_side_gif(args.gif, made["frame"][0], made["frame"][1],
                                 made["temporal"][1])
            return out

        return run

    variants = {"frame": variant("frame", temporal=False), "temporal": variant("temporal"),
                "warm": variant("warm", temporal_weight=0.0)}
    return Method("gatys", variants, _frames([data.immunohistochemistry()], args.size)[0],
                  f"-s immunohistochemistry, size {args.size}, precision {transfer.dtype}")


def side_by_side_gif(path: str, frames: list[torch.Tensor], left: list[torch.Tensor],
                     right: list[torch.Tensor], ms: int = 125) -> None:
    """A looping GIF of ``frames`` | ``left`` | ``right`` (labelled input, frame by frame,
    temporal), ``ms`` per frame, written atomically."""
    from PIL import Image, ImageDraw

    from impasto.io import to_pil

    pages = []
    for panels in zip(frames, left, right):
        ims = [to_pil(p.clamp(0, 1)) for p in panels]
        w, h = ims[0].size
        page = Image.new("RGB", (3 * w + 8, h + 14), "white")
        draw = ImageDraw.Draw(page)
        for i, (im, label) in enumerate(zip(ims, ("input", "frame by frame", "temporal"))):
            page.paste(im, (i * (w + 4), 14))
            draw.text((i * (w + 4) + 2, 1), label, fill="black")
        pages.append(page.quantize(colors=255, dither=Image.Dither.NONE))
    out = Path(path)
    tmp = out.with_name(f".{out.name}.tmp")
    pages[0].save(tmp, format="GIF", save_all=True, append_images=pages[1:], duration=ms, loop=0)
    tmp.replace(out)


METHODS: dict[str, Callable[[argparse.Namespace], Method]] = {
    "instant-preset": method_instant_preset,
    "instant-style": method_instant_style,
}
#: Rows run only when named in ``--methods`` (minutes per frame at the default size).
SLOW_METHODS: dict[str, Callable[[argparse.Namespace], Method]] = {"gatys": method_gatys}
#: Rows that need a trained network file (``--model PATH --model-style IMAGE``, ``--adain
#: PATH``); they run when the file is given.
NETWORK_METHODS: dict[str, Callable[[argparse.Namespace], Method]] = {
    "model": method_model, "adain": method_adain}


# --------------------------------------------------------------------------------------------
# measuring


@dataclass
class Result:
    clip: str
    method: str
    variant: str
    frames: int
    warping_error: float
    floor: float
    wall_s_per_frame: float
    cpu_s_per_frame: float
    style_loss: float
    content_loss: float
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)


class StyleScorer:
    """Per-frame Gatys losses under ``gatys-vgg19-v1`` at the clip's size (one VGG19)."""

    def __init__(self, size: int) -> None:
        from impasto.metrics.nst import NSTScorer

        self.scorer = NSTScorer(max(size, 32), device="cpu")

    def __call__(self, outputs: list[torch.Tensor], inputs: list[torch.Tensor],
                 style: torch.Tensor, every: int) -> tuple[float, float]:
        target = self.scorer.style_target([style[0]])
        styles, contents = [], []
        for i in range(0, len(outputs), every):
            o = self.scorer.output_image(outputs[i][0])
            hw = (int(o.shape[-2]), int(o.shape[-1]))
            c = self.scorer.content_image(inputs[i][0], hw)
            s = self.scorer.score_features(self.scorer.features(o), self.scorer.features(c),
                                           target, hw)
            styles.append(s.style_loss)
            contents.append(s.content_loss)
        return float(np.mean(styles)), float(np.mean(contents))


def measure(method: Method, clip: str, frames: list[torch.Tensor], args,
            scorer: StyleScorer, gif: str | None = None) -> list[Result]:
    """Every variant of ``method`` on ``frames``, alternating, ``args.repeats`` times;
    ``gif``: also write input | frame by frame | temporal (the first 16 frames) there."""
    from impasto.metrics.flicker import warping_error

    outputs: dict[str, list[torch.Tensor]] = {}
    walls: dict[str, list[float]] = {k: [] for k in method.variants}
    cpus: dict[str, list[float]] = {k: [] for k in method.variants}
    for _ in range(args.repeats):
        for name, run in method.variants.items():
            t0, c0 = time.perf_counter(), time.process_time()
            with torch.no_grad():
                outputs[name] = run(frames)
            walls[name].append((time.perf_counter() - t0) / len(frames))
            cpus[name].append((time.process_time() - c0) / len(frames))
    if gif and {"frame", "temporal"} <= outputs.keys():
        n = min(len(frames), 16)
        side_by_side_gif(gif, frames[:n], outputs["frame"][:n], outputs["temporal"][:n])
    results = []
    for name in method.variants:
        rep = warping_error(frames, outputs[name])
        sl, cl = scorer(outputs[name], frames, method.style, args.score_every)
        results.append(Result(clip, method.name, name, len(frames), rep.stylised, rep.floor,
                              min(walls[name]), min(cpus[name]), sl, cl, walls[name],
                              cpus[name]))
        print(f"  {clip:<7} {method.name:<15} {name:<15} warp {rep.stylised:.3e} "
              f"(floor {rep.floor:.1e})  {min(cpus[name]):.3f} CPU s/frame  style {sl:.3e}",
              file=sys.stderr)
    return results


def flow_choice(size: int) -> list[dict]:
    """DIS (medium and fast presets) against Farneback on the astronaut moved by a known shift and 2% zoom:
    mean end-point error, warping error over the consistent pixels of the true flow, share
    of pixels passing their own consistency check, ms per flow (CPU)."""
    import cv2
    from skimage import data

    from impasto.temporal.flow import consistency_mask, optical_flow, warp

    a = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    z, dx, dy = 1.02, 3.5, 2.25
    b = _affine(a, z, dx, dy)
    af, bf = a.astype(np.float32) / 255, b.astype(np.float32) / 255
    xs, ys = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
    true = np.stack([(z - 1) * (xs - size / 2) + dx, (z - 1) * (ys - size / 2) + dy], -1)
    inner = np.zeros((size, size), bool)
    m = size // 8
    inner[m:-m, m:-m] = True
    rows = [{"flow": "true", "epe_px": 0.0,
             "warping_error": float(((warp(bf, true) - af) ** 2).mean(-1)[inner].mean())}]
    for method in ("dis", "dis-fast", "farneback"):
        optical_flow(a, b, method)
        c0 = time.process_time()
        for _ in range(10):
            f = optical_flow(a, b, method)
        ms = (time.process_time() - c0) * 100
        ok = consistency_mask(f, optical_flow(b, a, method))
        rows.append({"flow": method, "cpu_ms": ms,
                     "epe_px": float(np.sqrt(((f - true) ** 2).sum(-1))[inner].mean()),
                     "warping_error": float(((warp(bf, f) - af) ** 2).mean(-1)[inner].mean()),
                     "consistent": float(ok.mean())})
    return rows


# --------------------------------------------------------------------------------------------
# reporting


def summary(results: list[Result]) -> list[dict]:
    """Each non-baseline variant against its row's ``frame`` variant on the same clip."""
    base = {(r.clip, r.method): r for r in results if r.variant == "frame"}
    out = []
    for r in results:
        b = base.get((r.clip, r.method))
        if b is None or r is b:
            continue
        cut = b.warping_error / r.warping_error
        extra = r.cpu_s_per_frame / b.cpu_s_per_frame - 1
        rise = r.style_loss / b.style_loss - 1
        out.append({"clip": r.clip, "method": r.method, "variant": r.variant, "cut": cut,
                    "extra_cpu_time": extra, "style_loss_rise": rise,
                    "met": cut >= TARGET_CUT and extra <= TARGET_TIME and rise <= TARGET_STYLE})
    return out


def print_tables(results: list[Result], rows: list[dict], flows: list[dict]) -> None:
    print("| clip | method | variant | warping error | floor | wall s/frame | CPU s/frame | "
          "style loss | content loss |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r.clip} | {r.method} | {r.variant} | {r.warping_error:.3e} | {r.floor:.2e} "
              f"| {r.wall_s_per_frame:.3f} | {r.cpu_s_per_frame:.3f} | {r.style_loss:.3e} | "
              f"{r.content_loss:.3g} |")
    print()
    print("| clip | method | variant | warping error cut | extra CPU time | style loss rise | "
          "targets (>=3x, <=20%, <=10%) |")
    print("|---|---|---|---|---|---|---|")
    for s in rows:
        print(f"| {s['clip']} | {s['method']} | {s['variant']} | {s['cut']:.2f}x | "
              f"{100 * s['extra_cpu_time']:+.1f}% | {100 * s['style_loss_rise']:+.1f}% | "
              f"{'met' if s['met'] else 'not met'} |")
    print()
    print("| flow | mean end-point error, px | warping error | consistent pixels | CPU ms |")
    print("|---|---|---|---|---|")
    for f in flows:
        print(f"| {f['flow']} | {f['epe_px']:.3f} | {f['warping_error']:.2e} | "
              f"{100 * f['consistent']:.1f}% | {f['cpu_ms']:.1f} |" if "cpu_ms" in f else
              f"| {f['flow']} | 0 | {f['warping_error']:.2e} | | |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="12 frames at 128 px, 1 repeat")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4, help="as impasto stylize's default")
    p.add_argument("--strength", type=float, default=None, help="default: the library's")
    p.add_argument("--feed", type=float, default=0.5, help="feed weight of temporal+feed")
    p.add_argument("--feed-row", action="store_true", help="also the temporal+feed row")
    p.add_argument("--sweep", type=lambda t: [float(x) for x in t.split(",")], default=None,
                   help="also the blend at these strengths, e.g. 0.4,0.5,0.7,0.8")
    p.add_argument("--score-every", type=int, default=4, help="style loss of every N-th frame")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated rows")
    p.add_argument("--clips", default=",".join(CLIPS))
    p.add_argument("--json", default=str(OUT / "video.json"))
    p.add_argument("--gif", default=None, help="write input | frame by frame | temporal side "
                   "by side to this GIF (the first row's first clip; the gatys row its own)")
    p.add_argument("--model", default=None,
                   help="a per-style network file: adds the 'model' row")
    p.add_argument("--model-style", default=None,
                   help="with --model: the painting it was trained on (for the style loss)")
    p.add_argument("--adain", default=None, help="an AdaIN decoder file: adds the 'adain' row")
    args = p.parse_args(argv)
    if "--methods" not in (argv if argv is not None else sys.argv):
        args.methods += "".join(f",{m}" for m in ("model", "adain") if getattr(args, m))
    if args.quick:
        args.frames, args.size, args.repeats, args.score_every = 12, 128, 1, 3
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: run with OMP_NUM_THREADS=1 for comparable CPU seconds", file=sys.stderr)
    torch.manual_seed(0)
    scorer = StyleScorer(args.size)
    results: list[Result] = []
    gif_written = False  # --gif: the first feed-forward method's first clip
    for m in args.methods.split(","):
        method = {**METHODS, **SLOW_METHODS, **NETWORK_METHODS}[m](args)
        for c in args.clips.split(","):
            frames = CLIPS[c](args.frames, args.size)
            gif = args.gif if method.name != "gatys" and not gif_written else None
            results.extend(measure(method, c, frames, args, scorer, gif))
            gif_written = gif_written or gif is not None
    rows = summary(results)
    flows = flow_choice(args.size)
    print_tables(results, rows, flows)
    report = {"settings": {k: v for k, v in vars(args).items() if k != "json"},
              "fps": FPS, "machine": platform.processor() or platform.machine(),
              "threads": torch.get_num_threads(), "load": os.getloadavg(),
              "results": [r.__dict__ for r in results], "summary": rows, "flow_choice": flows}
    write_report(Path(args.json), report)
    return 0


def write_report(out: Path, report: dict) -> None:
    """``report`` as JSON at ``out``, whole or not at all (:func:`write_text_atomic`)."""
    from impasto._fileutil import write_text_atomic

    write_text_atomic(out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
