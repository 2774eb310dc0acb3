""".ci/run installs what the browser tests need (Debian's Chromium) and still runs `make test`."""

from __future__ import annotations

from pathlib import Path

CI = Path(__file__).resolve().parents[2] / ".ci" / "run"


def test_ci_installs_chromium_then_runs_make_test():
    lines = [line.strip() for line in CI.read_text().splitlines()
             if line.strip() and not line.strip().startswith("#")]
    assert lines[0].startswith("set -euo pipefail")
    install = next(i for i, line in enumerate(lines) if "apt-get install" in line)
    assert "chromium" in lines[install].split()
    assert lines[-1] == "make test" and install < len(lines) - 1
    assert CI.stat().st_mode & 0o111  # executable
