"""`adain train --deterministic` reaches the config (the DDP runs of AdaIN are part of the
contract every family keeps: tests/test_families.py)."""

from __future__ import annotations

from impasto.style.adain import AdaINTrainConfig


def test_cli_passes_deterministic_to_the_config(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from impasto.cli import main
    from impasto.style import adain as adain_module

    seen = []

    def fake_train(config, **kw):
        seen.append(config)
        return SimpleNamespace(aborted=False, output=None, step=config.steps, run=config.run)

    monkeypatch.setattr(adain_module, "train", fake_train)
    base = ["adain", "train", "--content", "c", "--styles", "s", "-o", str(tmp_path / "d.pt"),
            "-q"]
    assert main(base) == 0 and main([*base, "--deterministic"]) == 0
    assert [c.deterministic for c in seen] == [False, True]
    assert AdaINTrainConfig(content="", styles="").deterministic is False
