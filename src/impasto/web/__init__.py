"""``impasto serve``: the web studio, a page over the same pipelines as the command line.

A layer above the library (the library never imports it). :mod:`~impasto.web.studio` holds
the sessions, the job queue (:mod:`~impasto.web.jobs`) and the handlers, and
:mod:`~impasto.web.stylize`/:mod:`~impasto.web.generate` the work they call, all without
gradio; :mod:`~impasto.web.app` is the gradio page and :mod:`~impasto.web.offline` keeps it
offline. gradio is imported only by :func:`serve` (``pip install 'impasto[web]'``).
"""

from __future__ import annotations

import os
import sys

from impasto.errors import InputError

__all__ = ["serve"]


def serve(host: str = "127.0.0.1", port: int = 7860, runs: str | None = None,
          max_jobs: int | None = None, *, device: str = "auto") -> int:
    """Serve the studio on ``host:port`` until interrupted; returns 0. ``runs``: the folder of
    trained models (per-style networks, GANs); ``max_jobs``: heavy jobs at
    once (default one per two cores)."""
    import shutil
    import signal
    import tempfile
    import threading

    from impasto.web.offline import apply_offline_env, public_warning

    apply_offline_env()
    # Everything the server writes, gradio's copies of uploads and results included, lives
    # in one folder, removed when the server stops (Ctrl-C or SIGTERM).
    folder = tempfile.mkdtemp(prefix="impasto-serve-")
    os.environ["GRADIO_TEMP_DIR"] = os.path.join(folder, "gradio")  # read at gradio's import
    studio = None
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        try:
            import gradio  # noqa: F401
        except ImportError:
            raise InputError("impasto serve needs gradio: pip install 'impasto[web]'") from None
        from impasto.web.studio import Studio, StudioOptions, default_max_jobs

        options = StudioOptions(runs=runs, max_jobs=max_jobs or default_max_jobs(),
                                device=device, temp_dir=folder)
        studio = Studio(options)
        warning = public_warning(host)
        if warning:
            print(warning, file=sys.stderr)
        print(f"impasto serve: {len(studio.catalog.entries)} model(s) under {runs}; at most "
              f"{options.max_jobs} heavy job(s) at once; files in {folder}", file=sys.stderr,
              flush=True)
        threading.Thread(target=studio.warm_up, name="impasto-warm-up", daemon=True).start()
        from impasto.web.app import launch

        launch(studio, host=host, port=port)
    finally:
        if studio is not None:
            studio.close()
        shutil.rmtree(folder, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)
    return 0


def _stop(signum: int, frame: object) -> None:
    """SIGTERM ends the server as Ctrl-C does (its files are removed on the way out)."""
    raise KeyboardInterrupt
