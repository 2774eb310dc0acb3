"""A load test of ``impasto serve`` (not a test of the suite): N sessions at once, each through
gradio's own client over HTTP on 127.0.0.1, ask for an instant result and then a Gatys
refinement (the heavy job). Every job must be queued and finish; the server's peak memory
(resident set, sampled every 0.2 s from /proc) is reported. Writes JSON with --json.

    python benchmarks/studio_load.py --sessions 20 --max-jobs 1 --iterations 10 --size 64

Bounded in count and time: it sends one request of each kind per session, only to the server
it started on this machine, and stops the server at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its children, MiB (Linux /proc)."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--max-jobs", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=10, help="of Refine (the page's slider "
                    "takes 10 to 500)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds for the whole run")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="3 sessions (a smoke run)")
    args = ap.parse_args()
    if args.quick:
        args.sessions = 3

    sys.path.insert(0, str(ROOT / "tests" / "web"))
    from studio_fixtures import make_runs
    from gradio_client import Client, handle_file

    work = Path(tempfile.mkdtemp(prefix="studio-load-"))
    runs = make_runs(work)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    server = subprocess.Popen(
        [sys.executable, "-m", "impasto", "serve", "--port", str(port), "--runs", str(runs),
         "--max-jobs", str(args.max_jobs), "--device", "cpu"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                sys.exit("the server did not start")
            time.sleep(0.5)
    idle_mib = _rss_mib(server.pid)
    peak = [idle_mib]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            peak[0] = max(peak[0], _rss_mib(server.pid))

    threading.Thread(target=sample, daemon=True).start()
    results: list[dict] = [{} for _ in range(args.sessions)]

    def session(i: int) -> None:
        r = results[i]
        t0 = time.monotonic()
        try:
            client = Client(url, verbose=False)
            photo, painting = handle_file(str(runs / "photo.png")), handle_file(
                str(runs / "painting.png"))
            out = client.predict(photo, "", [painting], "", 1, args.size, "none",
                                 api_name="/now")
            r["instant_s"] = time.monotonic() - t0
            r["instant_ok"] = bool(out[0])
            job = client.submit(photo, args.iterations, "", [painting], "", 1, args.size,
                                "none", api_name="/run_refine")
            saw_queue = False
            for update in job:
                text = str(update[1])
                saw_queue |= "in the queue" in text
            if not job.outputs():
                raise RuntimeError(f"no answer: {job.exception()}")
            final = job.outputs()[-1]
            r["refine_s"] = time.monotonic() - t0
            r["queued"] = saw_queue
            r["done"] = 'data-state="done"' in str(final[1])
        except Exception as e:  # noqa: BLE001  (reported, not raised)
            r["error"] = f"{type(e).__name__}: {e}"

    threads = [threading.Thread(target=session, args=(i,)) for i in range(args.sessions)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, args.timeout - (time.monotonic() - t0)))
    wall = time.monotonic() - t0
    stop.set()
    alive = server.poll() is None
    server.terminate()
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()

    done = sum(bool(r.get("done")) for r in results)
    report = {
        "sessions": args.sessions, "max_jobs": args.max_jobs, "iterations": args.iterations,
        "size": args.size, "finished": done, "queued_seen": sum(bool(r.get("queued"))
                                                               for r in results),
        "errors": [r["error"] for r in results if "error" in r],
        "server_alive_at_end": alive, "wall_s": round(wall, 1),
        "instant_s_max": round(max((r.get("instant_s", 0) for r in results), default=0), 2),
        "refine_s_max": round(max((r.get("refine_s", 0) for r in results), default=0), 1),
        "rss_idle_mib": round(idle_mib), "rss_peak_mib": round(peak[0]),
        "cpu": os.cpu_count(),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if done == args.sessions and alive else 1


if __name__ == "__main__":
    sys.exit(main())
