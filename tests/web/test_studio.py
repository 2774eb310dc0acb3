"""The studio's handlers without a browser: the result at once is the CLI's file (same pixels,
same metadata), Refine runs the Gatys pipeline with previews and stops within a second when
cancelled, GAN grids, the runs folder's catalog and its path-traversal refusals, the session
folders, and the offline settings."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_vgg
from PIL import Image
from studio_fixtures import clip, make_runs

from impasto.cli import main
from impasto.errors import InputError
from impasto.io import read_png_metadata
from impasto.web.catalog import resolve_under, scan
from impasto.web.offline import OFFLINE_ENV, apply_offline_env, is_loopback, public_warning
from impasto.web.studio import Studio, StudioOptions, progress_html, style_request
from impasto.web.stylize import StyleRequest, Stylizer, parse_weights

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return make_runs(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def stylizer(runs):
    """One for the module: it keeps the pipelines it loaded (the instant networks)."""
    return Stylizer(scan(runs), device="cpu", gatys_encoder=tiny_vgg(), preview_every=2)


@pytest.fixture
def studio(runs, stylizer, tmp_path):
    s = Studio(StudioOptions(runs=runs, max_jobs=1, device="cpu", temp_dir=tmp_path),
               catalog=stylizer.catalog, stylizer=stylizer)
    yield s
    s.close()


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_catalog_lists_the_models_and_refuses_paths_outside(runs, tmp_path):
    catalog = scan(runs)
    assert [(e.name, e.kind) for e in catalog.entries] == [
        ("gans/squares.pt", "gan/dcgan"), ("styles/stripes.pt", "fast-style/transformer")]
    assert catalog.get("styles/stripes.pt").thumbnail.shape == (3, 64, 64)
    assert catalog.path("styles/stripes.pt") == (runs / "styles" / "stripes.pt").resolve()
    outside = tmp_path / "secret.pt"
    outside.write_bytes(b"x")
    (runs / "link.pt").symlink_to(outside)
    try:
        for bad in ("../secret.pt", str(outside), "styles/../../secret.pt", "link.pt", ""):
            with pytest.raises(InputError):
                resolve_under(runs, bad)
        with pytest.raises(InputError, match="not a model"):
            catalog.path("notes.txt")
        assert [e.name for e in scan(runs).entries] == [e.name for e in catalog.entries]
    finally:
        (runs / "link.pt").unlink()
    with pytest.raises(InputError, match="runs folder does not exist"):
        scan(tmp_path / "missing")


def test_instant_result_is_the_cli_file(studio, runs, tmp_path):
    # The same photo through `impasto stylize --model` and through the studio.
    src = runs / "photo.png"
    cli_out = tmp_path / "cli.png"
    assert main(["stylize", str(src), "--model", str(runs / "styles" / "stripes.pt"),
                 "--size", "80", "--preserve-color", "luminance", "-o", str(cli_out),
                 "--device", "cpu", "-q"]) == 0
    req = StyleRequest(model="styles/stripes.pt", size=80, preserve_color="luminance")
    r = studio.stylize_now("s1", str(src), req)
    assert r is not None and r.method == "fast" and r.path.parent.parent == studio.root
    assert Image.open(r.path).size == (80, 53)
    assert np.array_equal(_pixels(r.path), _pixels(cli_out))
    assert read_png_metadata(r.path) == read_png_metadata(cli_out)
    meta = read_png_metadata(r.path)
    assert meta["model"] == "stripes.pt" and meta["style"] == "stripes"
    assert json.loads(meta["settings"])["preserve_color"] == "luminance"
    # without colour preservation the colours change
    plain = studio.stylize_now("s1", str(src), StyleRequest(model="styles/stripes.pt", size=80))
    assert np.abs(_pixels(plain.path) - _pixels(r.path)).mean() > 1
    assert [x.path for x in studio.session("s1").results] == [r.path, plain.path]


def test_instant_results_are_the_pipeline_s(studio, stylizer, runs, tmp_path):
    # Presets and paintings through the studio give InstantStyle's own pixels.
    from impasto.io import resize, to_pil, to_tensor
    from impasto.style.color import combine_luminance
    from impasto.style.instant import parse_preset, preset_label

    inst = stylizer.instant()
    photo_path, style = runs / "photo.png", runs / "painting.png"
    r = studio.stylize_now("s", str(photo_path),
                           style_request("preset:19", None, "", 0.7, 80, "luminance"))
    cli = tmp_path / "cli.png"  # the command line's file: the same pixels and metadata
    assert main(["stylize", str(photo_path), "--preset", "19", "--strength", "0.7",
                 "--size", "80", "--preserve-color", "luminance", "-o", str(cli),
                 "--device", "cpu", "-q"]) == 0
    assert np.array_equal(_pixels(r.path), _pixels(cli))
    assert read_png_metadata(r.path) == read_png_metadata(cli)
    r = studio.stylize_now("s", str(photo_path),
                           style_request("preset:19", None, "", 0.7, 80, "none"))
    want = inst(photo_path, preset=19, strength=0.7, size=80, output="pil")
    assert r.method == "instant" and np.array_equal(_pixels(r.path), np.asarray(want))
    meta = read_png_metadata(r.path)
    assert meta["preset"] == preset_label(parse_preset(19)) == "19 starry-blue"
    settings = json.loads(meta["settings"])
    assert (settings["method"], settings["strength"], settings["size"]) == ("instant", 0.7, 80)
    assert "alpha" not in settings

    two = style_request("", [str(style), str(photo_path)], "3, 1", 0.8, 80, "none")
    r2 = studio.stylize_now("s", str(photo_path), two)
    want2 = inst(photo_path, [style, photo_path], weights=[3, 1], strength=0.8, size=80,
                 output="pil")
    assert np.array_equal(_pixels(r2.path), np.asarray(want2))
    meta2 = read_png_metadata(r2.path)
    assert json.loads(meta2["style"]) == ["painting.png", "photo.png"]
    assert json.loads(meta2["settings"])["style_blend_weights"] == [3.0, 1.0]

    lum = studio.stylize_now("s", str(photo_path),
                             style_request("", [str(style)], "", 1, 80, "luminance"))
    x = to_tensor(resize(Image.open(photo_path).convert("RGB"), longest=80))
    want3 = to_pil(combine_luminance(inst(x, style, output="tensor"), x))
    assert np.abs(_pixels(lum.path) - np.asarray(want3, np.int16)).max() <= 1
    assert np.abs(_pixels(lum.path) - _pixels(
        studio.stylize_now("s", str(photo_path),
                           style_request("", [str(style)], "", 1, 80, "none")).path)).mean() > 1


def test_bad_input_is_one_line(studio, runs):
    req = StyleRequest(paintings=[str(runs / "painting.png")], size=64)
    with pytest.raises(InputError, match="upload a photo"):
        studio.stylize_now("s", None, req)
    with pytest.raises(InputError, match="choose a style"):
        studio.stylize_now("s", str(runs / "photo.png"), StyleRequest(size=64))
    with pytest.raises(InputError, match="^notes.txt: not an image"):  # a bad upload: one
        # line naming the file, not the server's folders
        studio.stylize_now("s", str(runs / "photo.png"),
                           StyleRequest(paintings=[str(runs / "notes.txt")]))
    with pytest.raises(InputError, match="2 blend weights for 1"):
        parse_weights("1, 2", 1)
    assert parse_weights(" ", 3) is None and parse_weights("1;3", 2) == [1.0, 3.0]
    with pytest.raises(InputError, match="unknown preset|preset"):
        studio.stylize_now("s", str(runs / "photo.png"), StyleRequest(preset="nope"))
    with pytest.raises(InputError, match="Refine runs Gatys on a painting"):
        studio.start_refine("s", str(runs / "photo.png"), None, StyleRequest(preset="3"), 10)


def test_the_style_menu(studio):
    styles = studio.styles()
    presets = [st for st in styles if st.value.startswith("preset:")]
    assert len(presets) == 26 and presets[19].label == "19 starry-blue"
    assert all(st.thumbnail is not None and st.thumbnail.size == (96, 96) for st in presets)
    models = [st for st in styles if st.value.startswith("model:")]
    assert [st.value for st in models] == ["model:styles/stripes.pt"]
    assert models[0].thumbnail.size == (64, 64) and styles[-1].value == ""
    req = style_request("model:styles/stripes.pt", ["x.png"], "1", 0.5, 256, "luminance")
    assert (req.model, req.preset, list(req.paintings), req.size) == (
        "styles/stripes.pt", None, [], 256)
    req = style_request("", ["a.png", "b.png"], "1,2", 0.5, 256.0, "none")
    assert (req.model, req.preset, req.weights, req.strength) == (None, None, [1.0, 2.0], 0.5)


def test_refine_runs_gatys_from_the_result_with_previews(studio, runs, tmp_path):
    src, style = runs / "photo.png", runs / "painting.png"
    start = studio.stylize_now("s", str(src), StyleRequest(model="styles/stripes.pt", size=64))
    req = StyleRequest(paintings=[str(style)], size=64)
    job = studio.start_refine("s", str(src), str(start.path), req, 12)
    assert job.wait(60), job.status()
    st = job.status()
    assert (st.state, st.done, st.total) == ("done", 12, 12), st
    assert "scale 1/1" in st.message
    preview = job.preview
    assert preview is not None and preview.size == (64, 43)
    r = studio.finish("s", job)
    assert r.method == "gatys" and r.image.size == (64, 43)
    meta = read_png_metadata(r.path)
    settings = json.loads(meta["settings"])
    assert (meta["method"], meta["content"], json.loads(meta["style"])) == (
        "gatys", "photo.png", ["painting.png"])
    assert (settings["size"], settings["scales"], settings["iterations"]) == (64, 1, 12)
    # the same settings through the library's pipeline give the same picture
    import impasto
    from impasto.style import GatysConfig, GatysStyleTransfer

    config = GatysConfig(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in settings.items()})
    same = impasto.stylize(src, style, init_image=start.path,
                           transfer=GatysStyleTransfer(config, encoder=tiny_vgg()))
    assert np.abs(np.asarray(same, np.int16) - _pixels(r.path)).max() <= 1
    assert "done in" in progress_html(st) and 'data-state="done"' in progress_html(st)


def test_refine_from_the_photo_starts_from_the_instant_result(studio, runs):
    """No result shown: Refine is ``--init instant`` (the instant network's start, then the
    iterations at full size only), the same picture as the library's pipeline gives."""
    src, style = runs / "photo.png", runs / "painting.png"
    req = StyleRequest(paintings=[str(style)], size=64)
    job = studio.start_refine("s", str(src), None, req, 6)
    assert job.wait(60), job.status()
    st = job.status()
    assert (st.state, st.done, st.total) == ("done", 6, 6), st
    assert "scale 1/1" in st.message
    r = studio.finish("s", job)
    settings = json.loads(read_png_metadata(r.path)["settings"])
    assert (settings["init"], settings["scales"], settings["iterations"]) == ("instant", 1, 6)
    import impasto
    from impasto.style import GatysConfig, GatysStyleTransfer

    config = GatysConfig(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in settings.items()})
    same = np.asarray(impasto.stylize(src, style, transfer=GatysStyleTransfer(
        config, encoder=tiny_vgg())), np.int16)
    assert np.abs(same - _pixels(r.path)).max() <= 1
    # ... and not the photo's start: from the photo the same 6 iterations give another picture
    photo = np.asarray(impasto.stylize(src, style, transfer=GatysStyleTransfer(
        dataclasses.replace(config, init="content"), encoder=tiny_vgg())), np.int16)
    assert np.abs(photo - same).mean() > 2.0


def test_cancel_stops_a_refinement_at_its_next_iteration_and_writes_nothing(studio, runs):
    req = StyleRequest(paintings=[str(runs / "painting.png")], size=96)
    job = studio.start_refine("s", str(runs / "photo.png"), None, req, 2000)
    deadline = time.monotonic() + 30
    while job.status().done < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert job.status().state == "running"
    assert "about" in progress_html(job.status())  # an ETA
    # The job stops at its next iteration (an iteration at 96 px takes well under a second on
    # an idle machine); counted in iterations, not seconds, so a loaded machine cannot fail it.
    before = job.status().done
    assert studio.cancel("s")
    assert job.wait(30.0)
    st = job.status()
    assert st.state == "cancelled" and st.done <= before + 2 < st.total, (before, st.done)
    assert studio.finish("s", job) is None
    assert not list(studio.session("s").folder.glob("*refined*"))
    assert "cancelled after" in progress_html(st)


def test_one_job_per_session_and_the_queue_place(studio, runs):
    req = StyleRequest(paintings=[str(runs / "painting.png")], size=64)
    a = studio.start_refine("a", str(runs / "photo.png"), None, req, 2000)
    from impasto.web.jobs import JobLimitError

    deadline = time.monotonic() + 30
    while a.status().state == "queued" and time.monotonic() < deadline:
        time.sleep(0.01)

    with pytest.raises(JobLimitError):
        studio.start_refine("a", str(runs / "photo.png"), None, req, 10)
    b = studio.start_refine("b", str(runs / "photo.png"), None, req, 10)
    assert b.status().position == 1
    assert "place 1 in the queue" in progress_html(b.status())
    studio.end_session("a")  # the page was closed: its job goes, b starts
    assert a.wait(2) and b.wait(60) and b.status().state == "done"


def test_generate_grid_with_metadata(studio):
    path = studio.generate("g", "gans/squares.pt", seed=3, truncation=0.7, side=2,
                           class_="blue")
    assert Image.open(path).size == (70, 70)  # 2 x 32 px + 3 x 2 px padding
    meta = read_png_metadata(path)
    assert (meta["source"], meta["seed"], meta["n"], meta["truncation"], meta["class"]) == (
        "squares.pt", "3", "4", "0.7", "blue")
    again = studio.generate("g", "gans/squares.pt", seed=3, truncation=0.7, side=2,
                            class_="blue")
    assert np.array_equal(_pixels(path), _pixels(again))
    other = studio.generate("g", "gans/squares.pt", seed=4, truncation=0.7, side=2,
                            class_="blue")
    assert not np.array_equal(_pixels(path), _pixels(other))
    assert studio.sampler.classes("gans/squares.pt") == ["red", "blue"]
    for bad, match in ((dict(side=9), "1 to 8"), (dict(truncation=-1.0), "truncation"),
                       (dict(class_="green"), "unknown class")):
        kw = {**dict(seed=0, truncation=None, side=2, class_=None), **bad}
        with pytest.raises(InputError, match=match):
            studio.generate("g", "gans/squares.pt", **kw)
    with pytest.raises(InputError, match="not a GAN"):
        studio.generate("g", "styles/stripes.pt", seed=0, truncation=None, side=1,
                        class_=None)
    with pytest.raises(InputError, match="not a model"):
        studio.generate("g", "../gans/squares.pt", seed=0, truncation=None, side=1,
                        class_=None)


def test_session_folders_go_when_the_session_ends_or_idles(runs, tmp_path):
    s = Studio(StudioOptions(runs=runs, max_jobs=1, device="cpu", temp_dir=tmp_path,
                             session_ttl=0.05))
    a = s.session("a").folder
    p = s.sample_photo("a", "astronaut")
    assert p.parent == a and Image.open(p).size == (512, 512)
    assert a.stat().st_mode & 0o777 == 0o700
    time.sleep(0.1)
    b = s.session("b").folder  # a's idle time is over: swept on the way
    assert not a.exists() and b.exists()
    s.end_session("b")
    assert not b.exists()
    root = s.root
    s.close()
    assert not root.exists()


def test_offline_environment_theme_and_address_warning():
    env: dict[str, str] = {"GRADIO_ANALYTICS_ENABLED": "True"}
    apply_offline_env(env)
    assert env == OFFLINE_ENV and env["GRADIO_ANALYTICS_ENABLED"] == "False"
    assert env["HF_HUB_OFFLINE"] == "1" and env["HF_HUB_DISABLE_TELEMETRY"] == "1"
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert is_loopback(host) and public_warning(host) is None
    for host in ("0.0.0.0", "192.168.1.5", "example.org"):
        assert "warning" in public_warning(host) and host in public_warning(host)


def test_the_page_builds_offline():
    pytest.importorskip("gradio")
    from impasto.web.offline import offline_theme

    theme = offline_theme()
    css = theme._get_theme_css() if hasattr(theme, "_get_theme_css") else ""
    assert "googleapis" not in css and "http" not in "".join(theme._stylesheets)
    assert "Source Sans Pro" in theme.font


def test_serve_refuses_bad_options_in_one_line(tmp_path, capsys):
    pytest.importorskip("gradio")
    assert main(["serve", "--runs", str(tmp_path / "missing"), "--port", "7999"]) == 2
    err = capsys.readouterr().err.strip()
    assert "runs folder does not exist" in err and len(err.splitlines()) == 1
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"


def test_video_is_stylised_frame_by_frame_and_can_be_cancelled(studio, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    from impasto.io.video import probe_video, read_frames

    short = clip(tmp_path / "clip.mp4", 10)
    req = StyleRequest(model="styles/stripes.pt", size=48)
    job = studio.start_video("v", str(short), req)
    assert job.wait(60) and job.status().state == "done", job.status()
    assert job.status().done == 10 and job.preview.size == (48, 32)
    r = studio.finish("v", job)
    info = probe_video(r.path)
    assert r.path.suffix == ".mp4" and info.size == (48, 32) and info.fps == 12.0
    assert len(list(read_frames(r.path))) == 10
    assert studio.session("v").results == []  # the gallery is for pictures
    assert "frames" in progress_html(job.status(), "frames")

    long = clip(tmp_path / "long.mp4", 400, fps=24.0)
    job = studio.start_video("v", str(long), req)
    deadline = time.monotonic() + 30
    while job.status().done < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    before = job.status().done
    job.cancel()
    # it stops at its next frame; counted in frames, not seconds (a loaded machine took 1.03 s)
    assert job.wait(30.0)
    st = job.status()
    assert st.state == "cancelled" and st.done <= before + 8 < 400, (before, st.done)
    assert studio.finish("v", job) is None
    assert not list(studio.session("v").folder.glob("*.mp4*"))[1:]  # only the first clip

    too_long = clip(tmp_path / "too-long.mp4", 62, fps=1.0)
    job = studio.start_video("v", str(too_long), req)
    assert job.wait(30) and job.status().state == "failed"
    assert job.status().error == "too-long.mp4: 62 s long; the studio takes clips of at most 60 s"
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    job = studio.start_video("v", str(bad), req)
    assert job.wait(30) and job.status().error.startswith("bad.mp4: cannot decode the video")
    pytest.importorskip("cv2")
    job = studio.start_video("v", str(short), req, temporal=0.5)  # stylize --temporal 0.5
    assert job.wait(60) and job.status().state == "done", job.status()
    r = studio.finish("v", job)
    assert "--temporal 0.5" in r.caption and len(list(read_frames(r.path))) == 10
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        studio.start_video("v", str(short), req, temporal=2.0)
