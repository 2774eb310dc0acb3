"""Sets of stylised images: each output's ``gatys-vgg19-v1`` figures (:mod:`impasto.metrics.nst`)
and an ArtFID-style figure for the set.

ArtFID (Wright & Ommer 2022, "ArtFID: Quantitative Evaluation of Neural Style Transfer") is
``(1 + content distance) * (1 + FID(stylised images, style images))``. The paper's content
distance is LPIPS (AlexNet) between each output and its content, and its FID uses an
Inception-v3 trained on art. Neither is available offline here, so this module computes

    ``(1 + mean vgg19-cos-v1 distance) * (1 + FID on the features of an impasto extractor)``

with the extractor named in the report (default ``vgg19``: ImageNet VGG19 ``relu5_4`` averaged
over space, 224x224; see :mod:`impasto.metrics.extractors`). The Fréchet distance is taken with
``frechet_distance(..., method="eigh")``, which stays finite for sets smaller than the feature
dimension (FID is biased upwards for small sets: compare figures only at equal set sizes). The
figure ranks methods against each other on the same images; it is **not comparable** with the
paper's numbers.

Which content and style belong to an output (:func:`match_sets`): by name (``NAME.png`` or
``NAME_STYLE.png`` for the content ``NAME.jpg`` and the style ``STYLE.jpg``; separators ``_``,
``-``, ``.``, space), else by sorted order when the counts agree, or the single content or style
for every output.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from impasto.errors import InputError, escape_line
from impasto.metrics.nst import (
    DEFAULT_SIZE,
    DISTANCE_NAME,
    OBJECTIVE_NAME,
    NSTScore,
    NSTScorer,
    load_8bit,
)

__all__ = ["NOT_COMPARABLE", "NSTMatch", "NSTSetReport", "artfid", "list_images", "match_sets"]

NOT_COMPARABLE = (
    "NOT comparable with the ArtFID of Wright & Ommer (2022), which uses LPIPS and an "
    "Inception-v3 trained on art; this figure uses {extractor} features for the FID and "
    f"{DISTANCE_NAME} for the content distance"
)
_SEPARATORS = ("_", "-", ".", " ")


def list_images(specs: Sequence[str | os.PathLike[str]], what: str) -> list[Path]:
    """The image files that ``specs`` name: files as given, folders searched recursively
    (sorted; hidden files skipped). :class:`InputError` for a missing path or no image."""
    from impasto.data.sources import list_folder

    found: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            found += [p / name for name in list_folder(p)]
        elif p.is_file():
            found.append(p)
        else:
            raise InputError(escape_line(f"{what} not found: {p}"))
    if not found:
        raise InputError(escape_line(f"no {what} image in {', '.join(map(str, specs))}"))
    return found


@dataclass(frozen=True)
class NSTMatch:
    """One output with its content and its style (None: not known)."""

    output: Path
    content: Path
    style: Path | None


def _rest(stem: str, prefix: str) -> str | None:
    """What follows ``prefix`` and a separator in ``stem`` ("" for ``stem == prefix``)."""
    if stem == prefix:
        return ""
    if stem.startswith(prefix) and stem[len(prefix):len(prefix) + 1] in _SEPARATORS:
        return stem[len(prefix) + 1:]
    return None


def _by_name(stem: str, candidates: Sequence[Path]) -> tuple[Path, str] | None:
    """The candidate whose stem starts ``stem`` (longest first) and what follows it."""
    best: tuple[Path, str] | None = None
    for c in candidates:
        rest = _rest(stem, c.stem)
        if rest is not None and (best is None or len(c.stem) > len(best[0].stem)):
            best = (c, rest)
    return best


def match_sets(outputs: Sequence[Path], contents: Sequence[Path], styles: Sequence[Path]
               ) -> tuple[list[NSTMatch], str, str]:
    """Pairs each output with its content and style: ``(matches, content_rule, style_rule)``,
    each rule ``"by name"``, ``"by order"``, ``"one for all"`` or (styles only) ``"unknown"``.

    Contents: the only one; else by name for every output (the output's file name starts with
    the content's, then a separator or nothing); else, when no output matches by name and the
    counts agree, by sorted order; else an :class:`InputError` naming an output without one.
    Styles: by name for every output (``CONTENT_STYLE``); else the only one; else by order
    when no output matches by name and the counts agree; else unknown (no per-image style
    loss; the set's FID still uses every style image).
    """
    named = [_by_name(o.stem, contents) for o in outputs]
    if len(contents) == 1:
        content_of, content_rule = [contents[0]] * len(outputs), "one for all"
        rests = [r[1] if r else None for r in named]
    elif all(named):
        content_of, content_rule = [r[0] for r in named], "by name"  # type: ignore[index]
        rests = [r[1] for r in named]  # type: ignore[index]
    elif not any(named) and len(contents) == len(outputs):
        content_of, content_rule, rests = list(contents), "by order", [None] * len(outputs)
    else:
        lost = next(o for o, r in zip(outputs, named) if not r)
        raise InputError(escape_line(
            f"output {lost} matches no content by name ({len(outputs)} outputs, "
            f"{len(contents)} contents): name each output CONTENT.png or CONTENT_STYLE.png "
            "after its content, or give as many contents as outputs, in the same order"
        ))
    by_style = [
        next((s for s in sorted(styles, key=lambda p: -len(p.stem)) if r and _rest(r, s.stem)
              is not None), None)
        for r in rests
    ]
    if all(by_style):
        style_of, style_rule = by_style, "by name"
    elif len(styles) == 1:
        style_of, style_rule = [styles[0]] * len(outputs), "one for all"
    elif not any(by_style) and len(styles) == len(outputs):
        style_of, style_rule = list(styles), "by order"
    else:
        style_of, style_rule = [None] * len(outputs), "unknown"
    matches = [NSTMatch(o, c, s) for o, c, s in zip(outputs, content_of, style_of)]
    return matches, content_rule, style_rule


@dataclass
class NSTSetReport:
    """What :func:`artfid` measured: per output (``rows``), the means, the FID, the ArtFID-style
    figure (None, with ``notes``, when a set is too small), and how everything was defined."""

    rows: list[tuple[NSTMatch, NSTScore]]
    content_rule: str
    style_rule: str
    info: dict[str, Any]
    n_styles: int
    extractor: dict[str, Any] = field(default_factory=dict)
    fid: float | None = None
    notes: list[str] = field(default_factory=list)

    def mean(self, key: str) -> float | None:
        values = [getattr(s, key) for _, s in self.rows]
        if not values or any(v is None for v in values):
            return None
        return float(sum(values) / len(values))

    @property
    def artfid(self) -> float | None:
        if self.fid is None:
            return None
        d = self.mean("content_distance")
        assert d is not None
        return (1.0 + d) * (1.0 + self.fid)

    def to_dict(self) -> dict[str, Any]:
        extractor = self.extractor.get("name", "?")
        return {
            **self.info,
            "outputs": len(self.rows),
            "styles": self.n_styles,
            "matched": {"contents": self.content_rule, "styles": self.style_rule},
            "mean": {k: self.mean(k)
                     for k in ("content_loss", "style_loss", "total", "content_distance")},
            "artfid_style": {
                "value": self.artfid,
                "fid": self.fid,
                "content_distance": self.mean("content_distance"),
                "definition": f"(1 + mean {DISTANCE_NAME} content distance) x (1 + FID("
                "outputs, style images)), Frechet distance by symmetric eigenvalues",
                "extractor": self.extractor,
                "comparable_with_paper": False,
                "note": NOT_COMPARABLE.format(extractor=extractor),
            },
            "images": [
                {"output": str(m.output), "content_image": str(m.content),
                 "style_image": None if m.style is None else str(m.style), **s.to_dict()}
                for m, s in self.rows
            ],
            "notes": list(self.notes),
        }

    def format_text(self) -> str:
        """The report as a few lines of text (what ``impasto metrics nst`` prints for sets)."""
        size = self.info["resize"]["size"]
        name = self.extractor.get("name", "?")
        head = (f"{len(self.rows)} outputs, contents matched {self.content_rule}, styles "
                f"{self.style_rule}; objective {OBJECTIVE_NAME} at {size} px (longer side)")
        rows = [
            ("mean content loss", self.mean("content_loss"), ""),
            ("mean style loss", self.mean("style_loss"), ""),
            ("mean total", self.mean("total"), ""),
            ("content distance", self.mean("content_distance"), f"{DISTANCE_NAME}, mean"),
        ]
        if self.fid is not None:
            rows += [
                ("FID", self.fid,
                 f"{name} features, {len(self.rows)} outputs vs {self.n_styles} style images"),
                ("ArtFID-style", self.artfid, "(1 + content distance) x (1 + FID)"),
            ]
        lines = [head] + [
            f"  {label:<18}  {'-' if v is None else f'{v:.6g}':>12}" + (f"  ({why})" if why else "")
            for label, v, why in rows
        ]
        if self.fid is not None:
            lines.append("  " + NOT_COMPARABLE.format(extractor=name))
        return "\n".join(lines)


def _batches(extractor: Any, paths: Sequence[Path], batch_size: int) -> Iterator[torch.Tensor]:
    for i in range(0, len(paths), batch_size):
        chunk = paths[i:i + batch_size]
        yield torch.cat([extractor.prepare(load_8bit(p).to(extractor.device)) for p in chunk])


def artfid(
    outputs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    contents: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    styles: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    size: int = DEFAULT_SIZE,
    extractor: Any = "vgg19",
    extractor_weights: str | os.PathLike[str] | None = None,
    device: str | torch.device = "auto",
    vgg_weights: str | os.PathLike[str] | None = None,
    encoder: torch.nn.Module | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> NSTSetReport:
    """Scores a set of stylised images: every output under ``gatys-vgg19-v1`` against its
    content and style (:func:`match_sets`), and the set's ArtFID-style figure (see the module
    doc; skipped with a note when there are fewer than 2 outputs or 2 style images).

    ``outputs``, ``contents`` and ``styles`` are folders or image files (or lists of them).
    ``extractor`` is a name from :data:`~impasto.metrics.extractors.EXTRACTORS` (weights from
    ``extractor_weights``) or a built :class:`~impasto.metrics.extractors.FeatureExtractor`.
    ``size``, ``device``, ``vgg_weights`` and ``encoder`` are :class:`NSTScorer`'s.
    """
    from tqdm.auto import tqdm

    from impasto.metrics.extractors import FeatureExtractor, build_extractor, encode
    from impasto.metrics.fid import frechet_distance

    def paths(x: Any, what: str) -> list[Path]:
        return list_images([x] if isinstance(x, (str, os.PathLike)) else list(x), what)

    out_p, con_p = paths(outputs, "output"), paths(contents, "content")
    sty_p = list(dict.fromkeys(paths(styles, "style")))
    matches, content_rule, style_rule = match_sets(out_p, con_p, sty_p)
    if isinstance(extractor, str):
        from impasto.metrics.extractors import parse_extractor_name

        parse_extractor_name(extractor)  # an unknown name fails before any work
    scorer = NSTScorer(size, device=device, vgg_weights=vgg_weights, encoder=encoder)
    report = NSTSetReport([], content_rule, style_rule, scorer.info(), len(sty_p))
    if style_rule == "unknown":
        report.notes.append(
            "no per-image style loss: which style made each output is unknown (name outputs "
            "CONTENT_STYLE.png, or give one style image, or as many as outputs in order)")

    targets: dict[Path, Any] = {}
    cached: tuple[Any, Any] = (None, None)  # (content path, size), its features
    order = sorted(range(len(matches)), key=lambda i: str(matches[i].content))
    scores: dict[int, NSTScore] = {}
    for i in tqdm(order, desc="nst scores", unit="img", disable=not progress, leave=False):
        m = matches[i]
        out_img = scorer.output_image(m.output)
        hw = (int(out_img.shape[-2]), int(out_img.shape[-1]))
        if cached[0] != (m.content, hw):
            con = scorer.content_image(m.content, hw, output_name=str(m.output))
            cached = ((m.content, hw), scorer.features(con))
        target = None
        if m.style is not None:
            if m.style not in targets:
                targets[m.style] = scorer.style_target([m.style], [str(m.style)])
            target = targets[m.style]
        scores[i] = scorer.score_features(scorer.features(out_img), cached[1], target, hw)
    report.rows = [(m, scores[i]) for i, m in enumerate(matches)]

    if len(out_p) < 2 or len(sty_p) < 2:
        report.notes.append(
            f"no ArtFID-style figure: its FID needs at least 2 outputs and 2 style images "
            f"(got {len(out_p)} and {len(sty_p)})")
        return report
    fx = extractor if isinstance(extractor, FeatureExtractor) else build_extractor(
        extractor, weights=extractor_weights, device=scorer.device)
    report.extractor = fx.info()
    stats = [
        encode(fx, _batches(fx, p, batch_size), total=len(p), keep_features=False,
               keep_logits=False, progress=progress, desc=f"{what} features").stats
        for p, what in ((out_p, "output"), (sty_p, "style"))
    ]
    report.fid = frechet_distance(stats[0].mu, stats[0].sigma, stats[1].mu, stats[1].sigma,
                                  method="eigh")
    return report
