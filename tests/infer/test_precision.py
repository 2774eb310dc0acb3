"""The precision decision of inference pipelines (impasto.infer.precision): the table of
request x hardware x network kind x compile setting, its refusals, and that a runner uses the
decision it is handed (int8 calibration included) without deciding again."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_transformer
from torch import nn

import impasto.device as device_mod
import impasto.nets.int8 as int8_mod
from impasto.errors import InputError
from impasto.infer import runner as runner_mod
from impasto.infer.precision import InferencePrecision, decide_precision, int8_capable
from impasto.infer.runner import InferenceRunner
from impasto.nets.adain import AdaINStylizer
from impasto.nets.transformer import TransformerNet

CPU = torch.device("cpu")
F32, BF16 = torch.float32, torch.bfloat16


@pytest.fixture
def hardware(monkeypatch):
    """Sets what the CPU can do: ``hardware(vnni=..., bf16=...)``."""

    def set_(*, vnni: bool, bf16: bool) -> None:
        monkeypatch.setattr(int8_mod, "int8_supported", lambda device="cpu": vnni)
        monkeypatch.setattr(device_mod, "fast_bf16", lambda device: bf16)

    return set_


@pytest.mark.parametrize("request_, vnni, bf16, kind, compile, want", [
    # auto: int8 for the networks that have one, on VNNI, unless compiled
    ("auto", True, True, TransformerNet, "auto", ("int8", F32, BF16)),
    ("auto", True, False, AdaINStylizer, "off", ("int8", F32, F32)),
    ("auto", True, True, TransformerNet, "on", ("bf16", BF16, BF16)),
    ("auto", True, True, nn.Conv2d, "auto", ("bf16", BF16, BF16)),
    ("auto", True, True, None, "auto", ("bf16", BF16, BF16)),
    ("auto", False, True, TransformerNet, "auto", ("bf16", BF16, BF16)),
    ("auto", False, False, TransformerNet, "auto", ("fp32", F32, F32)),
    # explicit requests are kept; int8's float work is what auto picks
    ("int8", True, True, AdaINStylizer, "on", ("int8", F32, BF16)),
    ("int8", True, False, TransformerNet, "auto", ("int8", F32, F32)),
    ("bf16", True, False, TransformerNet, "auto", ("bf16", BF16, BF16)),
    ("fp32", True, True, TransformerNet, "auto", ("fp32", F32, F32)),
])
def test_decision_table(hardware, request_, vnni, bf16, kind, compile, want):
    hardware(vnni=vnni, bf16=bf16)
    got = decide_precision(request_, CPU, kind, compile=compile)
    assert (got.name, got.dtype, got.work_dtype) == want
    assert got.request == request_ and got.int8 == (want[0] == "int8")


@pytest.mark.parametrize("request_, vnni, kind, device, words", [
    ("int4", True, TransformerNet, "cpu",
     "unknown precision 'int4'; choose from auto, fp32, bf16, int8"),
    ("int8", True, nn.Conv2d, "cpu", "per-style networks, AdaIN and the instant styles only"),
    ("int8", False, TransformerNet, "cpu", "needs a CPU with VNNI"),
    ("bf16", True, TransformerNet, "mps", "not supported on MPS"),
])
def test_refusals_are_one_line_input_errors(hardware, request_, vnni, kind, device, words):
    hardware(vnni=vnni, bf16=True)
    with pytest.raises(InputError, match=words) as e:
        decide_precision(request_, torch.device(device), kind)
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="compile must be one of"):
        decide_precision("auto", CPU, TransformerNet, compile="sometimes")


def test_int8_capable_kinds():
    assert int8_capable(TransformerNet) and int8_capable(AdaINStylizer)
    assert not int8_capable(nn.Conv2d) and not int8_capable(None)


def test_runner_decides_once_and_keeps_a_decision_it_is_handed(hardware, monkeypatch):
    hardware(vnni=False, bf16=True)
    calls = []
    real = runner_mod.decide_precision

    def counting(*args, **kw):
        calls.append(args[0])
        return real(*args, **kw)

    monkeypatch.setattr(runner_mod, "decide_precision", counting)
    net = tiny_transformer()
    r = InferenceRunner(net, device="cpu", tile=0)
    assert calls == ["auto"] and r.precision == "bf16" and r.dtype == BF16
    assert next(r.net.parameters()).dtype == BF16
    fp32 = InferencePrecision("fp32", "fp32", F32, F32)
    r = InferenceRunner(net, device="cpu", precision=fp32, tile=0)
    assert calls == ["auto"] and r.choice is fp32 and r.precision == "fp32"
    x = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(r(x), net(x).clamp(0, 1))


@pytest.mark.skipif(not int8_mod.int8_supported("cpu"), reason="no VNNI CPU")
@pytest.mark.parametrize("work", [F32, BF16])
def test_int8_calibrates_under_the_decided_float_precision(monkeypatch, work):
    seen = []
    real = int8_mod.Int8TransformerNet.calibrate.__func__

    def spy(cls, net, images, **kw):
        seen.append(kw.get("dtype"))
        return real(cls, net, images, **kw)

    monkeypatch.setattr(int8_mod.Int8TransformerNet, "calibrate", classmethod(spy))
    choice = InferencePrecision("int8", "int8", F32, work)
    r = InferenceRunner(tiny_transformer(), device="cpu", precision=choice, tile=0)
    y = r(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    assert seen == [work] and r.precision == "int8" and y.dtype == F32


@pytest.mark.parametrize("native", [True, False])
def test_explicit_bf16_on_a_cpu_without_native_bf16_warns_once(monkeypatch, caplog, native):
    from impasto.device import resolve_precision

    monkeypatch.setattr(device_mod, "cpu_has_fast_bf16", lambda: native)
    device_mod._warn_slow_bf16.cache_clear()
    with caplog.at_level("WARNING", logger="impasto.device"):
        assert resolve_precision("bf16", CPU) == BF16
        assert resolve_precision("bf16", CPU) == BF16
        assert resolve_precision("auto", CPU) == (BF16 if native else F32)
    slow = [r for r in caplog.records if "10x slower than fp32" in r.getMessage()]
    assert len(slow) == (0 if native else 1)
    device_mod._warn_slow_bf16.cache_clear()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_runner_leaves_the_callers_network_as_it_was(precision):
    # a channels_last runner works on its own copy: converting the caller's module in place
    # made AdaIN's style statistics (from the shared encoder) round differently after the
    # first call, so two identical calls differed (1.5e-8) on a CPU where auto is fp32
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))
    before = {k: (v.clone(), v.stride()) for k, v in net.state_dict().items()}
    r = InferenceRunner(net, device="cpu", precision=precision, channels_last=True, tile=0)
    x = torch.rand(1, 3, 16, 20, generator=torch.Generator().manual_seed(0))
    y = r(x)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k][0]) and v.stride() == before[k][1], k
        assert v.dtype == F32 and v.is_contiguous(), k
    assert r.net is not net
    assert next(r.net.parameters()).is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        want = net(x).clamp(0, 1)
    assert torch.allclose(y, want, atol=0.05 if precision == "bf16" else 1e-5)
