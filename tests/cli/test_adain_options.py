"""``impasto adain train --resume``: a setting that cannot change on resume (--vgg, the encoder
the decoder learns to invert) given with another value is refused with one line saying so
(exit 2); the same value, and every other option, is taken."""

from __future__ import annotations

import pytest

from impasto.cli import main
from impasto.cli.adain import FIXED_ON_RESUME
from impasto.style.adain import CHECKPOINT_KIND, CHECKPOINT_PREFIX
from impasto.train import save_checkpoint


@pytest.fixture()
def old_run(tmp_path):
    run = tmp_path / "dec.run"
    run.mkdir()
    save_checkpoint(run / f"{CHECKPOINT_PREFIX}-000000002.pt", kind=CHECKPOINT_KIND,
                    config={"content": str(tmp_path / "c"), "styles": str(tmp_path / "s"),
                            "run": str(run), "vgg": "caffe", "steps": 2},
                    step=2, images_seen=4, models={}, optimizers={}, rng=False)
    return run


@pytest.mark.parametrize("option, refused", [
    (["--vgg", "torchvision"], True),
    (["--vgg", "caffe"], False),             # the run's own value
    (["--vgg-weights", "elsewhere.pth"], False),  # where the weights lie may change
    (["--image-size", "64"], False),
])
def test_resume_refuses_a_change_of_the_encoder(old_run, capsys, option, refused):
    rc = main(["adain", "train", "--resume", str(old_run), *option])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "Traceback" not in err  # the tiny run cannot go on
    expected = ("--vgg cannot change on --resume (the decoder learns to invert the encoder it "
                "is trained with): the run's is caffe; start a new run for torchvision")
    assert (expected in err) == refused, err
    assert set(FIXED_ON_RESUME) == {"vgg"}
