"""``--run RUN`` is the run folder of every ``train`` command; the old ``-o RUN`` / ``--out RUN``
of ``gan train`` and ``classify train`` still works with a one-line deprecation note;
``-o MODEL.pt`` is the model file and names the run folder ``MODEL.run``; ``adain train`` continues an earlier
release's ``MODEL-run`` folder. The training functions are replaced by fakes that record the
config they are given: these tests check the command line, not training."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import impasto.classify.training
import impasto.gan.training
import impasto.style.adain
from impasto.cli import main
from impasto.cli._args import default_run


@pytest.fixture
def trained(monkeypatch):
    """The configs the training functions of gan, classify and adain were called with."""
    configs: list = []

    def fake(config, resume=None, progress=None, abort=None):
        configs.append(config)
        return SimpleNamespace(aborted=False, step=0, images_seen=0, checkpoint=None,
                               run=config.run, best_val_acc=None, output=None)

    for module in (impasto.gan.training, impasto.classify.training, impasto.style.adain):
        monkeypatch.setattr(module, "train", fake)
    return configs


def _run(capsys, argv):
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("command", ["gan", "classify"])
def test_run_names_the_run_folder(tmp_path, capsys, trained, command):
    rc, err = _run(capsys, [command, "train", tmp_path / "data", "--run", tmp_path / "r", "-q"])
    assert (rc, err) == (0, [])
    assert trained[-1].run == str(tmp_path / "r")


@pytest.mark.parametrize("command", ["gan", "classify"])
@pytest.mark.parametrize("flag", ["-o", "--out"])
def test_old_o_run_spelling_works_with_one_deprecation_line(tmp_path, capsys, trained, command,
                                                            flag):
    run = tmp_path / "old"
    rc, err = _run(capsys, [command, "train", tmp_path / "data", flag, run, "-q"])
    assert rc == 0 and trained[-1].run == str(run)
    assert len(err) == 1 and "deprecated" in err[0] and f"--run {run}" in err[0]


def test_o_naming_an_existing_folder_is_the_old_spelling_whatever_its_name(tmp_path, capsys,
                                                                          trained):
    run = tmp_path / "weird.pt"
    run.mkdir()
    rc, err = _run(capsys, ["gan", "train", tmp_path / "data", "-o", run, "-q"])
    assert rc == 0 and trained[-1].run == str(run) and "deprecated" in err[0]


@pytest.mark.parametrize("command", ["gan", "classify"])
def test_o_model_file_names_the_run_folder_beside_it(tmp_path, capsys, trained, command):
    rc, err = _run(capsys, [command, "train", tmp_path / "data", "-o", tmp_path / "m.pt", "-q"])
    assert (rc, err) == (0, [])
    assert trained[-1].run == str(tmp_path / "m.run")
    assert trained[-1].output == str(tmp_path / "m.pt")  # the model file the run writes
    rc, err = _run(capsys, [command, "train", tmp_path / "data", "-o", tmp_path / "m.pt",
                            "--run", tmp_path / "elsewhere", "-q"])
    assert rc == 0 and trained[-1].run == str(tmp_path / "elsewhere")
    rc, err = _run(capsys, [command, "train", tmp_path / "data", "-o",
                            tmp_path / "s.safetensors", "-q"])
    assert (rc, err) == (0, []) and trained[-1].run == str(tmp_path / "s.run")


def test_run_given_twice_is_one_line_and_status_2(tmp_path, capsys, trained):
    rc, err = _run(capsys, ["gan", "train", tmp_path / "data", "-o", tmp_path / "a",
                            "--run", tmp_path / "b", "-q"])
    assert rc == 2 and len(err) == 1 and "--run" in err[0] and not trained


def test_default_run_folder_is_stem_dot_run_and_finds_the_old_dash_run(tmp_path):
    model = tmp_path / "decoder.pt"
    assert default_run(str(model)) == str(tmp_path / "decoder.run")
    (tmp_path / "decoder-run").mkdir()  # an adain run of the release before
    assert default_run(str(model)) == str(tmp_path / "decoder-run")
    (tmp_path / "decoder.run").mkdir()
    assert default_run(str(model)) == str(tmp_path / "decoder.run")


def test_adain_train_run_folder(tmp_path, capsys, trained):
    argv = ["adain", "train", "--content", tmp_path, "--styles", tmp_path, "-o",
            tmp_path / "dec.pt", "-q"]
    assert _run(capsys, argv) == (0, [])
    assert trained[-1].run == str(tmp_path / "dec.run")
    assert trained[-1].output == str(tmp_path / "dec.pt")
    assert _run(capsys, [*argv, "--run", tmp_path / "mine", "--steps", "7"]) == (0, [])
    assert (trained[-1].run, trained[-1].steps) == (str(tmp_path / "mine"), 7)
