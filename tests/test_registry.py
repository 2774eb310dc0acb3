"""impasto.registry.Registry, and the registries built on it."""

from __future__ import annotations

import hashlib

import pytest
import torch

from impasto.errors import InputError
from impasto.registry import Registry


def test_register_get_names_in_order():
    reg: Registry[int] = Registry("widget")
    assert reg.register("b", 2) == 2
    reg.register("a", 1)

    @reg.register("c")
    def c() -> int:
        return 3

    assert reg.names() == ("b", "a", "c")  # registration order, not sorted
    assert list(reg) == ["b", "a", "c"] and len(reg) == 3
    assert reg.get("a") == 1 and reg["b"] == 2 and reg.get("c") is c and c() == 3
    assert reg.items() == (("b", 2), ("a", 1), ("c", c))
    assert "a" in reg and "z" not in reg and ["a"] not in reg  # unhashable: just absent
    assert repr(reg) == "Registry('widget': b, a, c)"


def test_unknown_name_is_one_line_listing_the_choices():
    reg: Registry[int] = Registry("widget")
    reg.register("b", 2)
    reg.register("a", 1)
    with pytest.raises(InputError) as e:
        reg.get("x\ny")
    assert str(e.value) == r"unknown widget 'x\ny'; choose from b, a"
    with pytest.raises(InputError, match="unknown widget"):
        reg[["b"]]  # unhashable


def test_duplicates_and_bad_names_are_programming_errors():
    reg: Registry[int] = Registry("widget")
    reg.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 2)
    assert reg.get("a") == 1
    reg.register("a", 2, replace=True)
    assert reg.get("a") == 2
    with pytest.raises(ValueError, match="non-empty string"):
        reg.register("", 3)
    assert reg.unregister("a") == 2 and "a" not in reg and reg.names() == ()
    with pytest.raises(KeyError):
        reg.unregister("a")


# --------------------------------------------------------------------------------------------
# the registries built on it


def test_colour_modes_are_defined_once():
    from impasto.style import adain, gatys
    from impasto.style.color import COLOR_MODE_REGISTRY, COLOR_MODES

    assert COLOR_MODES == COLOR_MODE_REGISTRY.names() == ("none", "luminance", "histogram")
    assert gatys.COLOR_MODES is COLOR_MODES and adain.COLOR_MODES is COLOR_MODES
    assert all(COLOR_MODE_REGISTRY.get(n) for n in COLOR_MODES)  # a description each


def test_every_weight_file_is_described_once():
    from impasto.nets import FID_INCEPTION, MAGENTA_FILES, VGG19_WEIGHTS, WEIGHT_FILES

    assert set(WEIGHT_FILES) == {"vgg19-caffe", "vgg19-torchvision", "inception-fid",
                                 "magenta-predict", "magenta-transform", "magenta-multistyle"}
    assert all(WEIGHT_FILES.get(f"magenta-{k}") is w for k, w in MAGENTA_FILES.items())
    assert [VGG19_WEIGHTS.get(s) for s in ("caffe", "torchvision")] == [
        WEIGHT_FILES.get("vgg19-caffe"), WEIGHT_FILES.get("vgg19-torchvision")]
    assert WEIGHT_FILES.get("inception-fid") is FID_INCEPTION
    for name, w in WEIGHT_FILES.items():
        assert w.name == name and w.how_to_get and w.filename and w.env_var
    # The preprocessing each expects, as numbers: caffe is BGR 0-255 minus the mean.
    x = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1)
    caffe = VGG19_WEIGHTS.get("caffe").preprocessing(x).flatten().tolist()
    assert caffe == pytest.approx([255 - 103.939, 127.5 - 116.779, 0 - 123.68])
    fid = FID_INCEPTION.preprocessing(x).flatten().tolist()
    assert fid == [-1.0, 0.0, 1.0] and FID_INCEPTION.input_size == 299


def test_weight_file_locate_and_verify(tmp_path, monkeypatch):
    from impasto.errors import WeightsNotFoundError
    from impasto.nets.weights import Preprocessing, WeightFile, file_sha256

    prep = Preprocessing(bgr=False, scale=1.0, mean=(0.0,) * 3, std=(1.0,) * 3)
    # A package that ships the file: found with no path (impasto ships registry.py).
    shipped = WeightFile("t", "Test", "registry.py", prep, "get it somewhere",
                         env_var="IMPASTO_TEST_WEIGHTS", package="impasto")
    monkeypatch.delenv("IMPASTO_TEST_WEIGHTS", raising=False)
    assert shipped.locate().name == "registry.py"
    f = tmp_path / "w.bin"
    f.write_bytes(b"weights")
    monkeypatch.setenv("IMPASTO_TEST_WEIGHTS", str(f))
    assert shipped.locate() == f  # the environment beats the package
    assert shipped.locate(tmp_path / "w.bin") == f
    with pytest.raises(WeightsNotFoundError) as e:
        shipped.locate(tmp_path / "no\nne.bin")
    assert str(e.value) == (
        f"Test weight file not found: {tmp_path}/no\\nne.bin; get it somewhere"
    )
    given = WeightFile("g", "Given", "g.bin", prep, "pass --weights")
    with pytest.raises(WeightsNotFoundError, match="^no Given weight file given; pass --weights$"):
        given.locate()
    # Checksums: the full digest or its start; None takes any file.
    digest = file_sha256(f)
    assert digest == hashlib.sha256(b"weights").hexdigest()
    check = WeightFile("c", "Check", "w.bin", prep, "-", sha256=digest[:8])
    assert check.verify(f) == digest and given.matches("anything")
    f.write_bytes(b"tampered")
    with pytest.raises(InputError, match=r"w.bin: checksum does not match the known Check "
                       r"weights \(w.bin\)"):
        check.verify(f)
