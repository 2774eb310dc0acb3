"""Runs ``impasto`` commands as forked children of one process that imported torch and the
CLI once, so that a drill can SIGKILL a command many times without paying the import each
time (seconds on a loaded machine).

Protocol on stdin/stdout, one JSON line each: the drill writes ``{"argv": [...], "stderr":
PATH or null, "session": bool}``; the server forks a child that runs
``impasto.cli.main(argv)`` (its stderr to PATH if given; in a new session, thus its own process
group, if asked: what a terminal's Ctrl-C reaches), answers ``{"pid": PID}`` at once and
``{"pid": PID, "status": N}`` when the child ends (N: its exit status, or -signal when a
signal killed it). Nothing runs torch before the fork (imports only), so the children start
with no thread pools to inherit.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import torch  # noqa: F401  (the costly import, done once)
import torch._dynamo  # noqa: F401  (what an optimiser's first step imports)

import impasto.cli
import impasto.gan.training  # noqa: F401  (what gan train imports when it runs)


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            if request.get("session"):
                os.setsid()
            if request.get("stderr"):
                fd = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 2)
            os.dup2(2, 1)  # the child's prints must not mix with the protocol
            signal.signal(signal.SIGINT, signal.default_int_handler)
            status = 1
            try:
                status = impasto.cli.main(request["argv"])
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        print(json.dumps({"pid": pid}), flush=True)
        _, raw = os.waitpid(pid, 0)
        status = -os.WTERMSIG(raw) if os.WIFSIGNALED(raw) else os.WEXITSTATUS(raw)
        print(json.dumps({"pid": pid, "status": status}), flush=True)


if __name__ == "__main__":
    main()
