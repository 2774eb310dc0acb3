"""Runs the ``pastiche`` command line (PyPI, installed in the venv) as a user would, and records
the CPU seconds of its process at each intermediate image it saves.

pastiche saves its image every ``--workspace-step`` steps when given ``--workspace``; a watcher
reads the process's own CPU time (``/proc/PID/stat``: user + system) when each file appears, so
one 1000-step run gives the whole score-against-CPU-seconds curve. The total comes from
``RUSAGE_CHILDREN`` around the run (the exact rusage of the finished process). Saving the intermediates costs pastiche
a PNG encode per saved step (measured and reported as ``save_seconds_each``).

    OMP_NUM_THREADS=1 python benchmarks/_pastiche.py --size 512   # the default run, ~30 min
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "styletransfer"
OUT = Path(__file__).resolve().parent / "out"
_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def pastiche_command() -> str:
    exe = Path(sys.executable).parent / "pastiche"
    if exe.is_file():
        return str(exe)
    found = shutil.which("pastiche")
    if found is None:
        sys.exit("pastiche is not installed (pip install pastiche)")
    return found


def run_pastiche(content: Path, style: Path, size: int, steps: int, workdir: Path,
                 workspace_step: int = 10, partial: Path | None = None) -> dict:
    """One pastiche run with its defaults (L-BFGS, the content as the start) at ``--size``;
    returns {"cpu_seconds", "wall_seconds", "output", "points": [(step, cpu_s, wall_s, png)]}
    (CPU seconds of pastiche's process since it started). ``partial``: a JSON file rewritten
    with the points so far at each new image, so a run cut short still leaves its curve."""
    if workdir.exists():
        shutil.rmtree(workdir)
    ws = workdir / "workspace"
    ws.mkdir(parents=True)
    out = workdir / "final.png"
    cmd = [pastiche_command(), "--size", str(size), "--num-steps", str(steps), "--seed", "0",
           "--content", str(content), "--styles", str(style), "--output", str(out),
           "--workspace", str(ws), "--workspace-step", str(workspace_step),
           "--info-step", str(workspace_step)]
    env = dict(os.environ)
    log = workdir / "log.txt"
    t0 = time.perf_counter()
    with open(log, "w") as logf:
        proc = subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT)
        seen: dict[str, tuple[float, float]] = {}
        while True:
            cpu = _proc_cpu(proc.pid)
            now = time.perf_counter() - t0
            new = False
            for name in sorted(os.listdir(ws)):
                if name not in seen and cpu is not None:
                    seen[name] = (cpu, now)
                    new = True
            if new and partial is not None:  # a record that a cut-short run leaves usable
                partial.write_text(json.dumps({"command": " ".join(cmd), "points": [
                    (int(Path(n).stem), c, w, str(ws / n)) for n, (c, w) in sorted(seen.items())],
                    "output": str(out), "finished": False}, indent=1))
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    wall = time.perf_counter() - t0
    log_lines = log.read_text().splitlines()
    if proc.returncode != 0:
        sys.exit("pastiche failed:\n" + "\n".join(log_lines[-30:]))
    points = [(int(Path(n).stem), c, w, str(ws / n)) for n, (c, w) in sorted(seen.items())]
    return {"command": " ".join(cmd), "points": points, "wall_seconds": wall,
            "output": str(out), "log": log_lines, "finished": True}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--workspace-step", type=int, default=10)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    rec = run_pastiche(DATA / "content" / "tubingen.jpg", DATA / "style" / "starry_night.jpg",
                       args.size, args.steps, OUT / f"pastiche_{args.size}",
                       args.workspace_step, partial=OUT / f"pastiche_{args.size}_partial.json")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    rec["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rec["omp_num_threads"] = os.environ.get("OMP_NUM_THREADS")
    path = args.json or OUT / f"pastiche_{args.size}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=2))
    print(f"pastiche: {rec['cpu_seconds']:.1f} CPU s, {rec['wall_seconds']:.1f} wall s; "
          f"wrote {path}")


if __name__ == "__main__":
    main()


#: pastiche's objective (its defaults) in impasto's terms: its content term is 0.01 x the MSE of
#: relu4_2 features, its style term per layer 10 / C^2 x the MSE of Gram matrices divided by
#: H*W, i.e. 10 x the MSE of impasto's Gram matrices (divided by C*H*W); no TV term. The VGG19
#: weights and preprocessing are the same file (the pastiche wheel's caffe weights).
PASTICHE_OBJECTIVE = {"content_weight": 0.01, "style_weight": 10.0, "tv_weight": 0.0}


def pastiche_sizes(content_wh: tuple[int, int], style_wh: tuple[int, int],
                   size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(width, height) pastiche resizes the content (longest side ``size``) and the style (as
    many pixels as the content) to, by its rounding."""
    w, h = content_wh
    if w > h:
        cw, ch = size, int(round(size / w * h, 0))
    elif w < h:
        cw, ch = int(round(size / h * w, 0)), size
    else:
        cw = ch = size
    pixels = cw * ch
    sw, sh = style_wh
    h_ = int(round(math.sqrt(pixels * sh / sw), 0))
    return (cw, ch), (int(round(sw / sh * h_, 0)), h_)


def pastiche_inputs(size: int, data: Path = DATA):
    """tubingen x starry_night as ``(1, 3, H, W)`` tensors in ``[0, 1]``, resized exactly as
    pastiche resizes them (PIL bilinear, the sizes of :func:`pastiche_sizes`)."""
    from PIL import Image

    from impasto.io import to_tensor

    c = Image.open(data / "content" / "tubingen.jpg").convert("RGB")
    s = Image.open(data / "style" / "starry_night.jpg").convert("RGB")
    cs, ss = pastiche_sizes(c.size, s.size, size)
    return (to_tensor(c.resize(cs, Image.BILINEAR)), to_tensor(s.resize(ss, Image.BILINEAR)))
