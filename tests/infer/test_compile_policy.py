"""When inference compiles (impasto.infer: ``compile="auto"|"on"|"off"``,
``impasto stylize --compile``): the policy's decisions, the announcements of folders, videos and
tiles, the fallback to eager when compiling fails, and a real compile against eager."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pytest
import torch
from conftest import noise_image as noise
from conftest import run_cli as cli
from conftest import tiny_transformer
from PIL import Image

import impasto.infer.compile_policy as policy_mod
from impasto.errors import InputError
from impasto.infer.compile_policy import (
    CompilePolicy,
    batch_work,
    compile_mode,
    default_compile_policy,
)
from impasto.infer.runner import InferenceRunner
from impasto.infer.tiling import plan_tiles
from impasto.style.apply import apply_folder, apply_video
from impasto.style.fast import save_fast_style

pytestmark = pytest.mark.usefixtures("one_thread")

#: Compiles anything seen twice: lets tiny test workloads reach the compiled path.
EAGER_TO_COMPILE = CompilePolicy(min_calls=2, min_megapixels=0.0)


class FakeCompile:
    """Stands in for ``torch.compile``: records what it compiles and the shapes the compiled
    function runs; ``fail`` makes the compiled function (or ``torch.compile`` itself) raise."""

    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail
        self.compiles: list[dict] = []
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, net, **kwargs):
        self.compiles.append(kwargs)
        if self.fail == "compile":
            raise RuntimeError("Dynamo is not supported here")

        def compiled(x):
            self.shapes.append(tuple(x.shape))
            if self.fail == "call":
                raise RuntimeError("C++ compile error\nIn file included from ...\n...")
            return net(x)

        return compiled


@pytest.fixture
def fake_compile(monkeypatch):
    fake = FakeCompile()
    monkeypatch.setattr(torch, "compile", fake)
    return fake


def runner(compile="auto", policy=None, **kw) -> InferenceRunner:
    kw.setdefault("tile", 0)
    return InferenceRunner(tiny_transformer(), device="cpu", precision="fp32", compile=compile,
                           compile_policy=policy, **kw)


# --------------------------------------------------------------------------------------------
# the policy


def test_default_policy_decisions():
    p = CompilePolicy()
    # a single image never compiles, however large
    assert not p.compiles((1, 3, 8192, 8192), 1)
    # a long video: 2000 frames of 720p in batches of 4
    assert p.compiles((4, 3, 720, 1280), 500)
    # a short clip of the same frames does not pay: 40 frames
    assert not p.compiles((4, 3, 720, 1280), 10)
    # a folder: below min_calls (N) images of one size -> eager, even when large
    n = p.min_calls
    assert not p.compiles((1, 3, 4000, 4000), n - 1)
    assert p.compiles((1, 3, 4000, 4000), n)
    # many small images: the pixel threshold decides
    need = int(np.ceil(p.min_megapixels * 1e6 / (512 * 512)))
    assert not p.compiles((1, 3, 512, 512), need - 1)
    assert p.compiles((1, 3, 512, 512), need)


def test_runner_expect_applies_the_policy_per_shape(fake_compile):
    r = runner()  # default policy
    video = {(4, 3, 720, 1280): 500, (2, 3, 720, 1280): 1}  # 2002 frames
    assert r.expect(video) == {(4, 3, 720, 1280)}  # the lone last batch stays eager
    folder = {(1, 3, 512, 512): CompilePolicy().min_calls - 1}
    r2 = runner()
    assert r2.expect(folder) == set()
    # off and on ignore announcements
    assert runner("off").expect(video) == set()
    assert runner("on").expect({}) == set()
    assert fake_compile.compiles == []  # compiling is lazy: nothing ran yet


def test_conv_only_networks_never_compile_on_a_cpu():
    # AdaIN's VGG encoder/decoder gained nothing from compiling on a CPU: auto leaves it eager
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.ReLU())
    r = InferenceRunner(conv, device="cpu", precision="fp32", tile=0)
    assert r.expect({(4, 3, 1080, 1920): 10_000}) == set()
    assert not r.compile_policy.compiles((4, 3, 1080, 1920), 10**9)
    assert default_compile_policy(tiny_transformer(), torch.device("cpu")).compiles(
        (4, 3, 1080, 1920), 10_000)


def test_compile_mode_values():
    assert [compile_mode(v) for v in (True, False, "auto", "on", "off")] == [
        "on", "off", "auto", "on", "off"]
    with pytest.raises(InputError, match="compile"):
        compile_mode("yes")


def test_batch_work_counts_the_calls_apply_folder_makes(tmp_path, fake_compile):
    # sizes in name order: 3 of 16x16, then 2 of 24x20 (landscape), then 16x16 again
    sizes = [(16, 16)] * 3 + [(24, 20)] * 2 + [(16, 16)]
    src = tmp_path / "in"
    src.mkdir()
    for i, (w, h) in enumerate(sizes):
        noise(w, h, i).save(src / f"p{i}.png")
    seen: list[tuple[int, ...]] = []
    announced: list[dict] = []
    net = tiny_transformer()

    def transform(x):
        seen.append(tuple(x.shape))
        return net(x).detach()

    transform.expect = announced.append
    apply_folder(transform, src, tmp_path / "out", batch_size=2)
    assert announced == [dict(Counter(seen))]
    assert announced[0] == {(2, 3, 16, 16): 1, (1, 3, 16, 16): 2, (2, 3, 20, 24): 1}
    assert batch_work([(16, 16)] * 3 + [(20, 24)] * 2 + [(16, 16)], 2) == announced[0]
    # resized on the way in: the announced shapes follow --size
    announced.clear()
    seen.clear()
    apply_folder(transform, src, tmp_path / "out2", batch_size=4, size=12)
    assert announced == [dict(Counter(seen))]


# --------------------------------------------------------------------------------------------
# folders, videos, tiles


def test_folder_below_the_threshold_stays_eager_above_it_compiles(tmp_path, fake_compile):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(5):
        noise(16, 16, i).save(src / f"p{i}.png")
    small = runner(policy=CompilePolicy(min_calls=6, min_megapixels=0.0))
    apply_folder(small, src, tmp_path / "a", batch_size=1)
    assert fake_compile.compiles == [] and not small.compiled
    big = runner(policy=CompilePolicy(min_calls=5, min_megapixels=0.0))
    written = apply_folder(big, src, tmp_path / "b", batch_size=1)
    assert len(fake_compile.compiles) == 1 and big.compiled
    assert fake_compile.compiles[0]["dynamic"] is False  # one compile per chosen shape
    assert fake_compile.shapes == [(1, 3, 16, 16)] * 5
    for p in written:  # same network, same numbers
        assert np.array_equal(np.asarray(Image.open(p)),
                              np.asarray(Image.open(tmp_path / "a" / p.name)))


def test_video_of_many_frames_compiles_its_full_batches(tmp_path, fake_compile):
    iio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    src = tmp_path / "clip.mp4"
    with iio.get_writer(src, fps=10, macro_block_size=1) as w:
        for i in range(11):
            w.append_data(np.asarray(noise(32, 16, i)))
    r = runner(policy=CompilePolicy(min_calls=2, min_megapixels=0.0))
    apply_video(r, src, tmp_path / "out.mp4", batch_size=4)
    assert r.compile_shapes == {(4, 3, 16, 32)}
    # two full batches compiled; the last 3 frames ran eagerly
    assert fake_compile.shapes == [(4, 3, 16, 32)] * 2


def test_one_image_in_many_tiles_may_compile_and_matches_eager(fake_compile):
    x = torch.rand(1, 3, 150, 130, generator=torch.Generator().manual_seed(0))
    eager = runner("off", tile=48)(x)
    assert fake_compile.compiles == []
    # the default policy: a few tiles of a small image do not pay
    runner(tile=48)(x)
    assert fake_compile.compiles == []
    r = runner(policy=EAGER_TO_COMPILE, tile=48)
    y = r(x)
    tiles = Counter((1, 3, t.y1 - t.y0, t.x1 - t.x0)
                    for t in plan_tiles(150, 130, 48, r.overlap_for(48), r.align))
    assert r.compile_shapes == {s for s, n in tiles.items() if n >= 2}
    assert Counter(fake_compile.shapes) == {s: n for s, n in tiles.items() if n >= 2}
    assert torch.equal(y, eager)


def test_expect_counts_tiles_of_a_tiled_batch_and_skips_custom_tiling():
    r = runner(policy=CompilePolicy(min_calls=40, min_megapixels=0.0), tile=64)
    # 256x256 in 64 px tiles: 9 tiles of 64x64 per call (and some edge tiles)
    chosen = r.expect({(1, 3, 256, 256): 10})
    assert chosen and all(s[-2:] != (256, 256) for s in chosen)
    custom = runner(policy=EAGER_TO_COMPILE, tile=64, tiled=lambda run, x, t: x)
    assert custom.expect({(1, 3, 256, 256): 10}) == set()  # AdaIN's tiling runs eagerly


# --------------------------------------------------------------------------------------------
# failures and off


@pytest.mark.parametrize("where", ["compile", "call"])
def test_failed_compile_warns_once_and_runs_eagerly(monkeypatch, caplog, where):
    fake = FakeCompile(fail=where)
    monkeypatch.setattr(torch, "compile", fake)
    x = torch.rand(2, 3, 24, 20, generator=torch.Generator().manual_seed(1))
    expected = runner("off")(x)
    r = runner("on")
    with caplog.at_level(logging.WARNING, logger="impasto"):
        y1, y2 = r(x), r(x)
    assert torch.equal(y1, expected) and torch.equal(y2, expected)
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert "torch.compile failed" in warnings[0] and "eager" in warnings[0]
    assert len(fake.compiles) == 1 and len(fake.shapes) == (1 if where == "call" else 0)
    assert r.compile_error and not r.compiled


@pytest.fixture
def model_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return save_fast_style(tiny_transformer(1), tmp_path / "fast.pt", {"style": {"name": "x"}})


def folder_of(path, n=4):
    path.mkdir()
    for i in range(n):
        noise(16, 12, 20 + i).save(path / f"p{i}.png")
    return path


def test_cli_fallback_when_compile_fails(tmp_path, model_file, monkeypatch, capsys, caplog):
    src = folder_of(tmp_path / "in")
    rc, _, err = cli(capsys, "stylize", src, "--model", model_file, "-o", tmp_path / "off",
                     "-q", "--device", "cpu", "--compile", "off", "--precision", "fp32")
    assert rc == 0, err
    fake = FakeCompile(fail="call")
    monkeypatch.setattr(torch, "compile", fake)
    with caplog.at_level(logging.WARNING):
        # the same precision on both sides (auto is bf16 or fp32 depending on the CPU)
        rc, _, err = cli(capsys, "stylize", src, "--model", model_file, "-o", tmp_path / "on",
                         "-q", "--device", "cpu", "--compile", "on", "--batch-size", "2",
                         "--precision", "fp32")
    assert rc == 0, err
    assert "Traceback" not in err
    assert len(fake.compiles) == 1 and fake.shapes == [(2, 3, 12, 16)]
    failed = [r for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert len(failed) == 1
    for i in range(4):
        a = np.asarray(Image.open(tmp_path / "off" / f"p{i}.png"))
        b = np.asarray(Image.open(tmp_path / "on" / f"p{i}.png"))
        assert np.array_equal(a, b)


def test_cli_compile_modes(tmp_path, model_file, monkeypatch, capsys, fake_compile):
    # With a policy that compiles anything seen twice, auto compiles a folder and off never
    # does; a single image never compiles under auto.
    monkeypatch.setattr(policy_mod, "DEFAULT_COMPILE_POLICY", EAGER_TO_COMPILE)
    src = folder_of(tmp_path / "in")
    # (bf16: on a CPU with VNNI, auto precision means int8, which is never compiled)
    common = ["--model", model_file, "-q", "--device", "cpu", "--batch-size", "1",
              "--precision", "bf16"]
    rc, _, err = cli(capsys, "stylize", src, "-o", tmp_path / "off", *common, "--compile", "off")
    assert rc == 0, err
    assert fake_compile.compiles == []
    rc, _, err = cli(capsys, "stylize", src, "-o", tmp_path / "auto", *common)  # the default
    assert rc == 0, err
    assert len(fake_compile.compiles) == 1 and len(fake_compile.shapes) == 4
    image = src / "p0.png"
    rc, _, err = cli(capsys, "stylize", image, "-o", tmp_path / "one.png", *common)
    assert rc == 0, err
    assert len(fake_compile.compiles) == 1  # unchanged: one image stays eager
    rc, _, err = cli(capsys, "stylize", image, "-o", tmp_path / "on.png", *common, "--compile")
    assert rc == 0, err  # a bare --compile means on
    assert len(fake_compile.compiles) == 2
    # luminance preservation wraps the runner and still passes the announcement on
    rc, _, err = cli(capsys, "stylize", src, "-o", tmp_path / "lum", *common,
                     "--preserve-color", "luminance")
    assert rc == 0, err
    assert len(fake_compile.compiles) == 3
    rc, _, err = cli(capsys, "stylize", image, "-o", tmp_path / "x.png", *common,
                     "--compile", "sometimes")
    assert rc == 2 and "--compile" in err


def test_cli_export_ignores_compile(tmp_path, model_file, monkeypatch, capsys, fake_compile):
    monkeypatch.setattr(policy_mod, "DEFAULT_COMPILE_POLICY", EAGER_TO_COMPILE)
    for mode in ("auto", "on"):
        out = tmp_path / f"net-{mode}.pt"
        rc, stdout, err = cli(capsys, "stylize", "--model", model_file, "--export",
                              "torchscript", "-o", out, "--compile", mode)
        assert rc == 0, err
        assert out.is_file() and "max" in stdout.lower()
    assert fake_compile.compiles == []


# --------------------------------------------------------------------------------------------
# a real compile


@pytest.mark.slow  # 15-25 s: inductor compiles C++ (less with a warm inductor cache)
def test_real_compile_matches_eager_within_bf16_tolerance():
    pytest.importorskip("torch._inductor")
    frames = torch.rand(3, 3, 32, 40, generator=torch.Generator().manual_seed(2))
    eager = InferenceRunner(tiny_transformer(), device="cpu", compile="off", tile=0,
                            precision="bf16")
    r = InferenceRunner(tiny_transformer(), device="cpu", compile="auto", tile=0,
                        compile_policy=EAGER_TO_COMPILE, precision="bf16")
    assert r.expect({(1, 3, 32, 40): 3}) == {(1, 3, 32, 40)}
    outs = [r(f[None]) for f in frames]
    if r.compile_error:  # no C++ compiler here: the fallback is tested above
        pytest.skip(f"torch.compile unavailable: {r.compile_error}")
    assert r.compiled
    ref = torch.cat([eager(f[None]) for f in frames])
    got = torch.cat(outs)
    # bf16 (where the CPU does it fast) rounds at 2^-8 relative and fused kernels round at
    # other places (measured: max 0.008, mean 0.0012 here; 0.012 max for the full network)
    tol = 2e-2 if r.dtype == torch.bfloat16 else 1e-4
    assert (got - ref).abs().max() < tol
    assert (got - ref).abs().mean() < tol / 5
    assert not torch.equal(got, torch.zeros_like(got))
