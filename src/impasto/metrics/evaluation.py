"""Metrics of two image sets in one call: :func:`evaluate` (what ``impasto metrics`` runs).

::

    from impasto.metrics import MetricOptions, evaluate
    from impasto.metrics.extractors import build_extractor
    from impasto.metrics.sources import open_set

    real = open_set("data/faces")                     # a folder, .npz, statistics, ...
    fake = open_set("runs/faces", n=5000, seed=0)     # a GAN run folder: 5000 samples
    report = evaluate(real, fake, ["fid", "kid"], lambda: build_extractor("vgg19"))
    report.metrics["fid"], report.metrics["kid"]["mean"]

Everything is checked before any image is encoded: missing or empty inputs, too few samples
for a metric (the message says how many), images of different sizes for SWD, a statistics file
that lacks what a metric needs or was made with another extractor, and the extractor's weight
file. Each is an :class:`~impasto.errors.InputError`: one line on stderr and exit status 2.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from impasto.errors import InputError
from impasto.metrics.extractors import Encoding, FeatureExtractor, encode
from impasto.metrics.fid import fid as fid_value
from impasto.metrics.inception_score import inception_score
from impasto.metrics.kid import kid as kid_value
from impasto.metrics.prdc import precision_recall
from impasto.metrics.sources import AnySet, ImageSet, StatsSet
from impasto.metrics.swd import MIN_RESOLUTION, swd

__all__ = ["METRIC_NAMES", "MetricOptions", "MetricsReport", "evaluate", "format_table"]

#: The metrics, in the order ``all`` computes and prints them.
METRIC_NAMES = ("fid", "kid", "is", "pr", "swd")
_NEEDS = {"fid": "features", "kid": "features", "pr": "features", "is": "logits",
          "swd": "images"}


@dataclass
class MetricOptions:
    """Settings of :func:`evaluate` (defaults: the reference implementations')."""

    batch_size: int = 32
    seed: int = 0
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    is_splits: int = 10
    pr_k: int = 3
    swd_projections: int = 512
    swd_repeats: int = 4
    fid_eps: float = 1e-6

    def min_samples(self, metric: str) -> tuple[int, str]:
        """The fewest samples per set ``metric`` accepts, and why."""
        return {
            "fid": (2, "for a covariance"),
            "kid": (2, "for the unbiased estimator"),
            "pr": (self.pr_k + 1, f"more than k={self.pr_k} neighbours"),
            "is": (self.is_splits, f"one per split, {self.is_splits} splits"),
            "swd": (1, "at least one image"),
        }[metric]


@dataclass
class MetricsReport:
    """What :func:`evaluate` found: ``metrics`` (``fid``: float; ``kid``, ``is``,
    ``is_real``: ``{"mean", "std"}``; ``precision``, ``recall``: floats; ``swd``:
    ``{"<height>": x1e3, ..., "avg": ...}``), the sets and extractor described, the settings,
    metrics ``skipped`` (with why) and the ``encodings`` made (by role, for ``--save-stats``)."""

    metrics: dict[str, Any]
    sets: dict[str, dict[str, Any]]
    extractor: dict[str, Any] | None
    settings: dict[str, Any]
    skipped: dict[str, str] = field(default_factory=dict)
    encodings: dict[str, Encoding] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from impasto import __version__

        return {"impasto": __version__, "metrics": self.metrics, "sets": self.sets,
                "extractor": self.extractor, "settings": self.settings, "skipped": self.skipped}


def _role_label(role: str, s: AnySet) -> str:
    return f"{role.upper()} ({s.label})"


def _plan(
    real: AnySet | None, fake: AnySet, metrics: Sequence[str], opts: MetricOptions, strict: bool
) -> tuple[list[str], dict[str, str], bool]:
    """Which metrics run (the others skipped, with why; an error when ``strict``) and whether
    IS also runs on REAL. Checks sample counts and, for SWD, image sizes."""
    unknown = [m for m in metrics if m not in METRIC_NAMES]
    if unknown:
        raise InputError(f"unknown metric(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(METRIC_NAMES)}")
    run: list[str] = []
    skipped: dict[str, str] = {}
    roles = {"fake": fake} if real is None else {"real": real, "fake": fake}
    for m in METRIC_NAMES:
        if m not in metrics:
            continue
        if m != "is" and real is None:
            raise InputError(f"{m} compares two sets: give REAL and FAKE")
        used = {"fake": fake} if m == "is" else roles
        problem = None
        for role, s in used.items():
            if isinstance(s, StatsSet):
                enc = s.encoding
                if m == "swd":
                    problem = f"{_role_label(role, s)} is a statistics file; swd needs images"
                elif m in ("kid", "pr") and enc.features is None:
                    problem = (f"{_role_label(role, s)} holds statistics only; {m} needs the "
                               "features (save them without --stats-only)")
                elif m == "is" and enc.logits is None:
                    problem = f"{_role_label(role, s)} holds no logits; is needs them"
                if problem:
                    break
        if problem:
            if strict:
                raise InputError(problem)
            skipped[m] = problem
            continue
        need, why = opts.min_samples(m)
        for role, s in used.items():
            have = len(s)
            if isinstance(s, StatsSet) and have == 0 and m == "fid":
                continue  # mu/sigma of an unknown count (e.g. a pytorch-fid file)
            if have < need:
                raise InputError(
                    f"{_role_label(role, s)}: {m} needs at least {need} samples ({why}), "
                    f"got {have}"
                )
        if m == "swd":
            try:
                _check_swd_shapes(real, fake)
            except InputError as e:  # sizes that differ or are too small
                if strict:
                    raise
                skipped[m] = str(e)
                continue
        run.append(m)
    is_real = (
        "is" in run and real is not None and len(real) >= opts.is_splits
        and (isinstance(real, ImageSet) or real.encoding.logits is not None)
    )
    return run, skipped, is_real


def _check_swd_shapes(real: AnySet | None, fake: AnySet) -> None:
    assert isinstance(real, ImageSet) and isinstance(fake, ImageSet)
    # Channels may differ: a grey set is compared as RGB with an RGB one.
    _, h1, w1 = real.image_shape("swd")
    _, h2, w2 = fake.image_shape("swd")
    if (h1, w1) != (h2, w2):
        raise InputError(
            f"swd needs images of one size: REAL ({real.label}) has {w1}x{h1}, "
            f"FAKE ({fake.label}) has {w2}x{h2}"
        )
    if min(h1, w1) < MIN_RESOLUTION:
        raise InputError(f"swd needs images of at least {MIN_RESOLUTION}x{MIN_RESOLUTION} "
                         f"(a Laplacian pyramid down to 16 px), got {w1}x{h1}")


def _check_stats_extractor(role: str, s: StatsSet, ex: FeatureExtractor) -> None:
    enc = s.encoding
    if enc.fingerprint and enc.fingerprint != ex.fingerprint:
        raise InputError(
            f"{_role_label(role, s)} holds features of extractor {enc.fingerprint!r}, but "
            f"--extractor {ex.name} gives {ex.fingerprint!r}; encode it again with that extractor"
        )
    if enc.stats.dim != ex.feature_dim:
        raise InputError(
            f"{_role_label(role, s)} holds {enc.stats.dim}-d statistics, but --extractor "
            f"{ex.name} gives {ex.feature_dim}-d features"
        )
    if enc.logits is not None and ex.num_classes and enc.logits.shape[1] != ex.num_classes:
        raise InputError(f"{_role_label(role, s)} holds {enc.logits.shape[1]} logits per "
                         f"sample, but {ex.name} gives {ex.num_classes}")


def _as_rgb_pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if a.shape[1] == 1 and b.shape[1] == 3:
        a = a.expand(-1, 3, -1, -1)
    elif a.shape[1] == 3 and b.shape[1] == 1:
        b = b.expand(-1, 3, -1, -1)
    return a, b


def _mean_std(pair: tuple[float, float]) -> dict[str, float]:
    return {"mean": float(pair[0]), "std": float(pair[1])}


def evaluate(
    real: AnySet | None,
    fake: AnySet,
    metrics: Sequence[str],
    extractor: FeatureExtractor | Callable[[], FeatureExtractor] | None = None,
    *,
    options: MetricOptions | None = None,
    strict: bool = True,
    progress: bool = False,
    keep: Sequence[str] = (),
) -> MetricsReport:
    """Compute ``metrics`` (names from :data:`METRIC_NAMES`) of ``fake`` against ``real``
    (sets from :func:`~impasto.metrics.sources.open_set`; ``real`` may be None for ``is``
    alone). IS is computed on FAKE, and also on REAL (``is_real``) when REAL can give logits.

    ``extractor``: a :class:`FeatureExtractor`, or a function building one (called only if a
    feature metric runs, after the sets are checked, so a bad set fails before weights load).
    ``strict``: a metric a set cannot give (SWD of a statistics file or of images of different
    or too small sizes, ...) is an error; else it is skipped and listed in ``report.skipped``. ``keep``: roles (``"real"``, ``"fake"``) whose
    encodings are kept whole (features and logits) in ``report.encodings``.
    """
    opts = options or MetricOptions()
    run, skipped, is_real = _plan(real, fake, metrics, opts, strict)
    roles: dict[str, AnySet] = {"fake": fake} if real is None else {"real": real, "fake": fake}

    ex: FeatureExtractor | None = None
    feature_metrics = [m for m in run if _NEEDS[m] in ("features", "logits")]
    if feature_metrics:
        if extractor is None:
            raise InputError(f"{', '.join(feature_metrics)} need a feature extractor")
        ex = extractor if isinstance(extractor, FeatureExtractor) else extractor()
        if "is" in run and ex.num_classes == 0:
            problem = (f"extractor {ex.name} gives no class logits; is needs inception or "
                       "a classifier")
            if strict:
                raise InputError(problem)
            skipped["is"] = problem
            run.remove("is")
            is_real = False
        for role, s in roles.items():
            if isinstance(s, StatsSet):
                _check_stats_extractor(role, s, ex)

    # Which roles need which parts of their encoding.
    wants: dict[str, set[str]] = {role: set() for role in roles}
    for m in run:
        if m == "swd":
            continue
        users = roles if m != "is" else ["fake", "real"] if is_real else ["fake"]
        for role in users:
            wants[role].add({"fid": "stats", "kid": "features", "pr": "features",
                             "is": "logits"}[m])
    for role in keep:
        if role in wants and ex is not None:
            wants[role] |= {"stats", "features", "logits"}

    encodings: dict[str, Encoding] = {}
    for role, s in roles.items():
        if not wants[role]:
            continue
        if isinstance(s, StatsSet):
            encodings[role] = s.encoding
            continue
        assert ex is not None
        encodings[role] = encode(
            ex, s.batches(opts.batch_size), total=len(s),
            keep_features="features" in wants[role], keep_logits="logits" in wants[role],
            progress=progress, desc=f"{role} features", meta={"source": s.describe()},
        )

    out: dict[str, Any] = {}
    for m in run:
        if m == "fid":
            out["fid"] = fid_value(encodings["real"].stats, encodings["fake"].stats,
                                   eps=opts.fid_eps)
        elif m == "kid":
            out["kid"] = _mean_std(kid_value(
                encodings["real"].features, encodings["fake"].features,
                num_subsets=opts.kid_subsets, subset_size=opts.kid_subset_size, seed=opts.seed,
            ))
        elif m == "is":
            out["is"] = _mean_std(inception_score(encodings["fake"].logits, opts.is_splits,
                                                  logits=True))
            if is_real:
                out["is_real"] = _mean_std(inception_score(
                    encodings["real"].logits, opts.is_splits, logits=True))
        elif m == "pr":
            out.update(precision_recall(encodings["real"].features,
                                        encodings["fake"].features, k=opts.pr_k))
        elif m == "swd":
            assert isinstance(real, ImageSet) and isinstance(fake, ImageSet)
            a, b = _as_rgb_pair(real.load_all(opts.batch_size), fake.load_all(opts.batch_size))
            res = swd(a, b, num_projections=opts.swd_projections, num_repeats=opts.swd_repeats,
                      seed=opts.seed, batch_size=opts.batch_size)
            out["swd"] = {str(k): float(v) for k, v in res.items()}
    return MetricsReport(
        metrics=out,
        sets={role: s.describe() for role, s in roles.items()},
        extractor=ex.info() if ex is not None else None,
        settings=dataclasses.asdict(opts),
        skipped=skipped,
        encodings={r: encodings[r] for r in keep if r in encodings},
    )


# --------------------------------------------------------------------------------------------
# the table


def _describe_set(d: dict[str, Any]) -> str:
    kind, n = d.get("kind"), d.get("n")
    if kind == "generator":
        return f"generator {d['path']}: {n} samples, seed {d['seed']}"
    if kind == "stats":
        return f"statistics {d['path']}: {n or 'unknown number of'} samples"
    of = f" of {d['available']}" if d.get("available", n) != n else ""
    return f"{kind} {d['path']}: {n}{of} images"


def format_table(report: MetricsReport) -> str:
    """The report as a plain-text table (what ``impasto metrics`` prints)."""
    lines = [f"{role.upper():5s} {_describe_set(d)}" for role, d in report.sets.items()]
    if report.extractor:
        lines.append(f"features: {report.extractor['description']}")
    rows: list[tuple[str, str, str]] = []
    m = report.metrics
    if "fid" in m:
        rows.append(("FID", f"{m['fid']:.4f}", ""))
    if "kid" in m:
        rows.append(("KID", f"{m['kid']['mean']:.6f}", f"{m['kid']['std']:.6f}"))
    if "is" in m:
        label = "IS (FAKE)" if "real" in report.sets else "IS"
        rows.append((label, f"{m['is']['mean']:.4f}", f"{m['is']['std']:.4f}"))
    if "is_real" in m:
        rows.append(("IS (REAL)", f"{m['is_real']['mean']:.4f}", f"{m['is_real']['std']:.4f}"))
    if "precision" in m:
        rows.append(("precision", f"{m['precision']:.4f}", ""))
        rows.append(("recall", f"{m['recall']:.4f}", ""))
    if "swd" in m:
        for k, v in m["swd"].items():
            name = "SWD avg x1e3" if k == "avg" else f"SWD {k}px x1e3"
            rows.append((name, f"{v:.3f}", ""))
    width = max([len(r[0]) for r in rows] + [6])
    lines.append("")
    lines.append(f"{'metric':{width}s}  {'value':>12s}  {'std':>10s}")
    for name, value, std in rows:
        lines.append(f"{name:{width}s}  {value:>12s}  {std:>10s}".rstrip())
    return "\n".join(lines)
