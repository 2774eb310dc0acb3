"""The ``families`` and ``extractors`` sections of ``benchmarks/gpu_check.py``: every training
family of :data:`impasto.families.FAMILIES` a few steps on the device with the tiny configs of
``tests/test_families.py`` (``ADAPTERS``), checkpoints crossing to the CPU and back, the model
file through the family's pipeline, and every metric extractor on the device against the CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: More settings run for a family besides its tiny config (name -> (family, overrides)).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "gan-sngan": ("gan", dict(arch="sngan", d_steps=2)),
    "gan-wgan-gp": ("gan", dict(loss="wgan-gp", diffaugment="color,translation,cutout")),
    "gan-conditional-r1": ("gan", dict(conditional=True, r1_gamma=0.5)),
    "fast-style-adversarial": ("fast-style", dict(adversarial_weight=0.1, adv_crop=24)),
}


def _on(config: Any, device: str, **overrides: Any) -> Any:
    return dataclasses.replace(config, device=device, precision="auto", deterministic=False,
                               **overrides)


@contextlib.contextmanager
def _syncs(device: Any) -> Iterator[Any]:
    """``conftest.cuda_syncs`` on CUDA (the synchronising calls per step), else nothing."""
    if getattr(device, "type", device) == "cuda":
        from conftest import cuda_syncs

        with cuda_syncs() as log:
            yield log
    else:
        yield None


def _stats(result: Any) -> dict[str, float]:
    return {k: float(v) for k, v in (result.stats or {}).items()}


def run_family(c: Any, name: str, family: str, overrides: dict[str, Any],
               cross: bool) -> dict[str, Any]:
    """One family on the device: a short run, its model file through the pipeline and, with
    ``cross``, a checkpoint written on the device resumed on the CPU and the other way."""
    import torch
    from test_families import ADAPTERS

    from impasto.families import FAMILIES

    fam, ad = FAMILIES.get(family), ADAPTERS[family]
    dev = c.device.type
    tmp = c.tmp / "families" / name
    short = {"steps": 2} if c.smoke and hasattr(ad.config(tmp, "probe"), "steps") else {}
    config = _on(ad.config(tmp, "a"), dev, **short, **overrides)
    rec: dict[str, Any] = {}
    with _syncs(c.device) as log:
        t = time.perf_counter()
        result = fam.train(config, progress=(lambda p: log.mark(p.step)) if log else None,
                           **ad.train_kwargs())
        c.sync()
        seconds = time.perf_counter() - t
    stats = _stats(result)
    s = rec["straight"] = {"steps": result.step, "seconds": seconds, "stats": stats,
                           "finite": all(math.isfinite(v) for v in stats.values())}
    if log is not None:
        counts = log.per_step()
        s["sync_per_step"] = dict(sorted(counts.items()))
        s["busy_sync_steps"] = sum(1 for k, n in counts.items()
                                   if n and 1 < k < result.step)
        s["sync_sites"] = sorted(set(log.where()))[:12]
    if not s["finite"]:
        c.fail(f"families: {name} ended with non-finite losses {stats}")

    if cross:
        rec["cross_device"] = cross_device(c, fam, ad, tmp, overrides)
        if not rec["cross_device"]["ok"]:
            c.fail(f"families: {name} checkpoint did not cross devices")

    out = fam.export_model(tmp / "a", tmp / "model.pt")
    pipe = fam.pipeline.from_file(out, device=dev, **ad.pipe_kwargs())
    y1, y2 = ad.call(pipe, 3), ad.call(pipe, 3)
    rec["pipeline"] = {"shape": list(y1.shape), "finite": bool(torch.isfinite(y1).all()),
                       "seeded": bool(torch.equal(y1, y2))}
    if not (rec["pipeline"]["finite"] and rec["pipeline"]["seeded"]):
        c.fail(f"families: {name} pipeline output {rec['pipeline']}")
    if family == "classify":
        c.cache["classifier_run"] = tmp / "a"
    return rec


def cross_device(c: Any, fam: Any, ad: Any, tmp: Path,
                 overrides: dict[str, Any]) -> dict[str, Any]:
    """Abort half way on one device, resume on the other (device -> CPU, then CPU -> device):
    each resumed run reaches its end with finite losses."""
    dev = c.device.type
    rec: dict[str, Any] = {"ok": True}
    for first, then in ((dev, "cpu"), ("cpu", dev)):
        run = f"{len(rec)}-{first}-to-{then}"
        polls = itertools.count(1)
        try:
            half = fam.train(_on(ad.config(tmp, run), first, **overrides),
                             abort=lambda polls=polls: next(polls) >= ad.abort_after,
                             **ad.train_kwargs())
            done = fam.train(_on(ad.config(tmp, run), then, **overrides), resume=tmp / run,
                             **ad.train_kwargs())
            stats = _stats(done)
            ok = (half.aborted and not done.aborted and done.step > half.step
                  and all(math.isfinite(v) for v in stats.values()))
            rec[run] = {"aborted_at": half.step, "resumed_to": done.step, "stats": stats,
                        "ok": ok}
        except Exception as e:  # noqa: BLE001  (recorded, the other direction still runs)
            ok = False
            rec[run] = {"error": f"{type(e).__name__}: {e}"}
        rec["ok"] = rec["ok"] and ok
    return rec


def section_families(c: Any) -> dict[str, Any]:
    from test_families import ADAPTERS

    from impasto.families import FAMILIES

    cases = {name: (name, {}) for name in FAMILIES.names()}
    if not c.smoke:
        cases.update(VARIANTS)
    out: dict[str, Any] = {}
    for name, (family, overrides) in cases.items():
        if family not in ADAPTERS:
            out[name] = {"error": "no adapter in tests/test_families.py"}
            c.fail(f"families: {name} has no adapter")
            continue
        try:  # the smoke run crosses devices once: the code is the same for every family
            cross = not c.smoke or name == "gan"
            out[name] = run_family(c, name, family, overrides, cross)
        except Exception as e:  # noqa: BLE001  (one family must not hide the others)
            import traceback

            out[name] = {"error": f"{type(e).__name__}: {e}",
                         "traceback": traceback.format_exc()[-2000:]}
            c.fail(f"families: {name}: {type(e).__name__}: {e}")
    return out


def section_extractors(c: Any) -> dict[str, Any]:
    """Every metric extractor on the device and on the CPU, the same images: feature size,
    finiteness and the largest difference relative to the features' largest magnitude (a
    failure above 0.1: more than TF32 convolutions explain)."""
    import torch

    from impasto.metrics.extractors import EXTRACTORS, build_extractor, encode

    from gpu_check import inception

    # --smoke leaves out the Inception (a 299 px network: seconds per image on a CPU);
    # gpu_check.inception is tested on its own.
    specs = {"vgg19": "vgg19:32"} if c.smoke else {"inception": None, "vgg19": "vgg19"}
    n = 1 if c.smoke else 2  # images per batch, two batches
    if c.cache.get("classifier_run"):
        specs["classifier"] = f"classifier:{c.cache['classifier_run']}"
    out: dict[str, Any] = {"not_checked": sorted(set(EXTRACTORS.names()) - set(specs))}
    x = torch.rand(2 * n, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for name, spec in specs.items():
        try:
            feats = []
            places = [c.device] + ([torch.device("cpu")] if c.device.type != "cpu" else [])
            for where in places:
                ext = inception(where)[0] if spec is None else build_extractor(spec, device=where)
                with torch.inference_mode():
                    enc = encode(ext, [x[:n], x[n:]], keep_logits=False)
                feats.append(torch.from_numpy(enc.features))
            a, b = feats[0], feats[-1]  # on the device, on the CPU
            rel = float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
            out[name] = {"dim": int(a.shape[1]), "finite": bool(torch.isfinite(a).all()),
                         "max_rel_diff_vs_cpu": rel}
            if not out[name]["finite"] or rel > 0.1:  # TF32 convolutions allowed
                c.fail(f"extractors: {name} {out[name]}")
        except Exception as e:  # noqa: BLE001
            out[name] = {"error": f"{type(e).__name__}: {e}"}
            c.fail(f"extractors: {name}: {type(e).__name__}: {e}")
    if "classifier" not in specs:
        out["classifier"] = {"skipped": "no classifier run (the families section makes one)"}
    return out
