"""The studio's page: gradio Blocks over :class:`~impasto.web.studio.Studio`'s handlers.

Everything here is layout and wiring: each event calls one handler of the studio and turns an
:class:`~impasto.errors.InputError` into a message in the page. Imports gradio; call
:func:`~impasto.web.offline.apply_offline_env` before importing this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from impasto.errors import InputError
from impasto.temporal.blend import DEFAULT_STRENGTH
from impasto.web.jobs import JobLimitError
from impasto.web.offline import offline_theme
from impasto.web.runs import RunReport, default_scalars
from impasto.web.studio import Studio, progress_html, style_request
from impasto.web.stylize import MAX_VIDEO_SECONDS, SAMPLES

__all__ = ["CSS", "build_app"]

POLL = 0.25  # seconds between looks at a running refinement
DEFAULT_STYLE = "preset:19"  # starry-blue

CSS = """
.impasto-progress { display: flex; align-items: center; gap: 0.6em; font-size: 0.9em; }
.impasto-progress progress { width: 14em; }
footer { display: none !important; }
"""

INTRO = """# impasto studio
Paint a photo in the style of a painting. The result comes **at once**: one of 26 built-in
styles, any painting you upload, or a per-style network you trained. **Refine** then runs
Gatys's optimisation on your painting, starting from that result, with a live preview.
Everything runs on this machine; nothing is sent anywhere."""


def _key(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "local"


def _gallery(studio: Studio, key: str) -> list[tuple[str, str]]:
    return [(str(r.path), r.caption) for r in reversed(studio.session(key).results)]


def build_app(studio: Studio) -> gr.Blocks:
    """The page (not launched)."""
    with gr.Blocks(title="impasto studio", analytics_enabled=False) as app:
        gr.Markdown(INTRO)
        with gr.Tab("Stylize", id="stylize"):
            _stylize_tab(studio)
        with gr.Tab("Video", id="video"):
            _video_tab(studio)
        with gr.Tab("Generate", id="generate"):
            _generate_tab(studio)
        with gr.Tab("Runs", id="runs") as runs:
            _runs_tab(studio, runs)

        def end(request: gr.Request) -> None:
            studio.end_session(_key(request))

        app.unload(end)
    return app


def _stylize_tab(studio: Studio) -> None:
    pictured = [st for st in studio.styles() if st.thumbnail is not None]
    with gr.Row():
        with gr.Column(scale=1):
            content = gr.Image(label="Photo", type="filepath", image_mode=None,
                               sources=["upload", "clipboard"], height=300,
                               elem_id="content")
            sample = gr.Dropdown(choices=list(SAMPLES), value=None, label="or a sample photo",
                                 elem_id="sample")
            gallery = gr.Gallery(value=[(st.thumbnail, st.label) for st in pictured],
                                 label="Styles (click one)", columns=6, height=250,
                                 object_fit="cover", allow_preview=False, preview=False,
                                 visible=bool(pictured), elem_id="styles")
            settings = _style_inputs(studio, "", size=512, max_size=2048)
            style, paintings = settings[:2]
        with gr.Column(scale=1):
            result = gr.Image(label="Result", type="filepath", interactive=False, height=420,
                              format="png", elem_id="result")
            progress = gr.HTML(elem_id="progress")
            with gr.Row():
                go = gr.Button("Stylize", variant="primary", elem_id="go")
                iterations = gr.Slider(10, 500, value=100, step=10,
                                       label="Refine: iterations at full size",
                                       elem_id="iterations")
            with gr.Row():
                refine = gr.Button("Refine (Gatys)", elem_id="refine")
                cancel = gr.Button("Cancel", variant="stop", elem_id="cancel")
                download = gr.DownloadButton("Download PNG", visible=False, elem_id="download")
            message = gr.Markdown(elem_id="message")
            history = gr.Gallery(label="This session's results", columns=4, height=220,
                                 elem_id="history")

    shown = gr.State(None)  # the path of the result shown (Refine starts from it)
    _, _, weights, strength, size, colour = settings

    def pick_sample(name: str | None, request: gr.Request) -> Any:
        if not name:
            return gr.update()
        return str(studio.sample_photo(_key(request), name))

    def pick_thumbnail(evt: gr.SelectData) -> Any:
        return pictured[evt.index].value if 0 <= evt.index < len(pictured) else gr.update()

    def now(photo, style, paintings, weights, strength, size, colour, request: gr.Request):
        key = _key(request)
        if not photo or not (style or paintings):
            return gr.update(), gr.update(), gr.update(), "", gr.update()
        try:
            r = studio.stylize_now(key, photo, style_request(style, paintings, weights,
                                                             strength, size, colour))
        except InputError as e:
            return gr.update(), gr.update(), gr.update(), f"**{e}**", gr.update()
        return (str(r.path), str(r.path), gr.update(value=str(r.path), visible=True),
                f"{r.caption}.", _gallery(studio, key))

    outs = [result, shown, download, message, history]
    sample.change(pick_sample, sample, content)
    gallery.select(pick_thumbnail, None, style)
    for trigger in (content.change, style.change, paintings.change, colour.change,
                    size.release, strength.release, weights.submit):
        trigger(now, [content, *settings], outs, show_progress="minimal")
    go.click(now, [content, *settings], outs)

    def run_refine(photo, start, iterations, style, paintings, weights, strength, size, colour,
                   request: gr.Request) -> Iterator[tuple]:
        key = _key(request)
        try:
            req = style_request(style, paintings, weights, strength, size, colour)
            job = studio.start_refine(key, photo, start, req, int(iterations))
        except (InputError, JobLimitError) as e:
            yield gr.update(), gr.update(), "", f"**{e}**", gr.update(), gr.update()
            return
        for preview, bar in _follow(job, "iterations"):
            yield preview, gr.update(), bar, "", gr.update(), gr.update()
        status = job.status()
        r = studio.finish(key, job)
        if r is None:
            text = f"**{status.error}**" if status.state == "failed" else "Cancelled."
            yield (start or gr.update(), gr.update(), progress_html(status), text, gr.update(),
                   gr.update())
            return
        yield (str(r.path), str(r.path), progress_html(status), f"{r.caption}.",
               gr.update(value=str(r.path), visible=True), _gallery(studio, key))

    refine.click(run_refine, [content, shown, iterations, *settings],
                 [result, shown, progress, message, download, history],
                 concurrency_limit=None, show_progress="hidden")

    def stop(request: gr.Request) -> str:
        return "Cancelling…" if studio.cancel(_key(request)) else "Nothing to cancel."

    cancel.click(stop, None, message, concurrency_limit=None, show_progress="hidden")


def _follow(job: Any, unit: str) -> Iterator[tuple[Any, str]]:
    """(preview update, progress bar) every POLL seconds until ``job`` ends."""
    last = None
    while not job.wait(POLL):
        preview = job.preview
        yield (gr.update() if preview is None or preview is last else preview,
               progress_html(job.status(), unit))
        last = preview


def _follow_to_file(studio: Studio, key: str, job: Any) -> Iterator[tuple]:
    """A video job's page updates (preview, progress bar, file, message) until it ends."""
    for image, bar in _follow(job, "frames"):
        yield image, bar, gr.update(), ""
    status = job.status()
    r = studio.finish(key, job)
    if r is None:
        text = f"**{status.error}**" if status.state == "failed" else "Cancelled."
        yield gr.update(), progress_html(status, "frames"), gr.update(), text
        return
    yield gr.update(), progress_html(status, "frames"), str(r.path), f"{r.caption}."


def _style_inputs(studio: Studio, prefix: str, *, size: int, max_size: int) -> list[Any]:
    """The style, paintings, weights, strength, size and colour controls of a tab (their
    ``elem_id``s start with ``prefix``)."""
    styles = studio.styles()
    default = next((st.value for st in styles if st.value == DEFAULT_STYLE), styles[0].value)
    style = gr.Dropdown(choices=[(st.label, st.value) for st in styles], value=default,
                        label="Style", elem_id=f"{prefix}style")
    paintings = gr.File(label="Your paintings (one or more)", file_count="multiple",
                        file_types=["image"], elem_id=f"{prefix}paintings")
    weights = gr.Textbox(label="Blend weights, one per painting (empty: equal)",
                         placeholder="1, 1", elem_id=f"{prefix}weights")
    with gr.Row():
        strength = gr.Slider(0, 1, value=1, step=0.05, label="Strength (instant styles)",
                             elem_id=f"{prefix}strength")
        size_ = gr.Slider(64, max_size, value=size, step=16, label="Size (longest side, px)",
                          elem_id=f"{prefix}size")
    colour = gr.Radio(["none", "luminance", "histogram"], value="none",
                      label="Preserve the colours", elem_id=f"{prefix}colour")
    return [style, paintings, weights, strength, size_, colour]


def _video_tab(studio: Studio) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            clip = gr.Video(label=f"Clip (at most {MAX_VIDEO_SECONDS} s)", sources=["upload"],
                            elem_id="clip")
            settings = _style_inputs(studio, "video-", size=480, max_size=1920)
            with gr.Row():
                smooth = gr.Checkbox(value=False, label="Reduce flicker (optical flow)",
                                     elem_id="video-temporal")
                smooth_strength = gr.Slider(0.0, 1.0, value=DEFAULT_STRENGTH, step=0.05,
                                            label="Flicker reduction strength",
                                            elem_id="video-temporal-strength")
        with gr.Column(scale=1):
            preview = gr.Image(label="Frames as they are done", type="pil", interactive=False,
                               height=240, elem_id="video-preview")
            progress = gr.HTML(elem_id="video-progress")
            with gr.Row():
                start = gr.Button("Stylize the clip", variant="primary", elem_id="video-go")
                cancel = gr.Button("Cancel", variant="stop", elem_id="video-cancel")
            result = gr.Video(label="Result", interactive=False, elem_id="video-result")
            message = gr.Markdown(elem_id="video-message")

    def run(clip, style, paintings, weights, strength, size, colour, temporal, temporal_strength,
            request: gr.Request):
        key = _key(request)
        try:
            req = style_request(style, paintings, weights, strength, size, colour)
            job = studio.start_video(key, clip, req,
                                     float(temporal_strength) if temporal else None)
        except (InputError, JobLimitError) as e:
            yield gr.update(), "", gr.update(), f"**{e}**"
            return
        yield from _follow_to_file(studio, key, job)

    start.click(run, [clip, *settings, smooth, smooth_strength],
                [preview, progress, result, message],
                concurrency_limit=None, show_progress="hidden")

    def stop(request: gr.Request) -> str:
        return "Cancelling…" if studio.cancel(_key(request)) else "Nothing to cancel."

    cancel.click(stop, None, message, concurrency_limit=None, show_progress="hidden")


def _generate_tab(studio: Studio) -> None:
    gans = studio.gan_choices()
    if not gans:
        gr.Markdown("No GAN under the runs folder: start the studio with `--runs DIR`, where "
                    "DIR holds GAN model files (`impasto gan train ... -o model.pt`) or run "
                    "folders.")
    with gr.Row():
        with gr.Column(scale=1):
            model = gr.Dropdown(choices=gans, value=gans[0] if gans else None, label="GAN",
                                elem_id="gan")
            seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", elem_id="seed")
            truncation = gr.Slider(0, 2, value=0, step=0.05,
                                   label="Truncation (0: off; smaller is cleaner, less varied)",
                                   elem_id="truncation")
            side = gr.Slider(1, 8, value=4, step=1, label="Grid (images a side)",
                             elem_id="grid")
            names = _classes(studio, gans[0]) if gans else []
            klass = gr.Dropdown(choices=[""] + names, value="", visible=bool(names),
                                label="Class (conditional models; empty: each in turn)",
                                elem_id="class")
            button = gr.Button("Generate", variant="primary", elem_id="generate-button")
        with gr.Column(scale=1):
            grid = gr.Image(label="Samples", type="filepath", interactive=False,
                            format="png", elem_id="samples")
            download = gr.DownloadButton("Download PNG", visible=False)
            message = gr.Markdown()

    def classes(name: str | None) -> Any:
        names = _classes(studio, name)
        return gr.update(choices=[""] + names, value="", visible=bool(names))

    def run(name, seed, truncation, side, klass, request: gr.Request):
        try:
            path = studio.generate(_key(request), name, seed=int(seed or 0),
                                   truncation=float(truncation) or None, side=int(side),
                                   class_=klass or None)
        except InputError as e:
            return gr.update(), gr.update(), f"**{e}**"
        return str(path), gr.update(value=str(path), visible=True), ""

    model.change(classes, model, klass)
    button.click(run, [model, seed, truncation, side, klass], [grid, download, message])
    _interpolation(studio, model, truncation, klass)


def _interpolation(studio: Studio, model: Any, truncation: Any, klass: Any) -> None:
    """The Generate tab's interpolation video (the GAN, truncation and class of the grid)."""
    gr.Markdown("### Interpolation video\nA walk through the latent space from seed to seed "
                "(spherical interpolation, as `impasto gan interpolate`).")
    with gr.Row():
        with gr.Column(scale=1):
            seeds = gr.Textbox(value="0, 1, 2", label="Seeds (two or more, in order)",
                               elem_id="interp-seeds")
            frames = gr.Slider(2, 600, value=48, step=1, label="Frames", elem_id="interp-frames")
            fps = gr.Slider(1, 60, value=12, step=1, label="Frames per second",
                            elem_id="interp-fps")
            loop = gr.Checkbox(value=False, label="Loop back to the first seed",
                               elem_id="interp-loop")
            length = gr.Markdown(_length(48, 12), elem_id="interp-length")
            with gr.Row():
                go = gr.Button("Make the video", variant="primary", elem_id="interp-go")
                cancel = gr.Button("Cancel", variant="stop", elem_id="interp-cancel")
        with gr.Column(scale=1):
            preview = gr.Image(label="Frames as they are done", type="pil", interactive=False,
                               height=200, elem_id="interp-preview")
            progress = gr.HTML(elem_id="interp-progress")
            result = gr.Video(label="Interpolation", interactive=False, elem_id="interp-result")
            message = gr.Markdown(elem_id="interp-message")

    for control in (frames, fps):
        control.change(_length, [frames, fps], length, show_progress="hidden")

    def run(name, seeds, frames, fps, truncation, klass, loop, request: gr.Request):
        key = _key(request)
        try:
            job = studio.start_interpolation(key, name, seeds=seeds, frames=int(frames),
                                             fps=float(fps),
                                             truncation=float(truncation) or None,
                                             class_=klass or None, loop=bool(loop))
        except (InputError, JobLimitError) as e:
            yield gr.update(), "", gr.update(), f"**{e}**"
            return
        yield from _follow_to_file(studio, key, job)

    go.click(run, [model, seeds, frames, fps, truncation, klass, loop],
             [preview, progress, result, message], concurrency_limit=None,
             show_progress="hidden")

    def stop(request: gr.Request) -> str:
        return "Cancelling…" if studio.cancel(_key(request)) else "Nothing to cancel."

    cancel.click(stop, None, message, concurrency_limit=None, show_progress="hidden")


def _length(frames: float, fps: float) -> str:
    return f"{int(frames)} frames at {float(fps):g} fps: {float(frames) / max(float(fps), 1):.1f} s"


RUN_COLUMNS = ["run", "kind", "step", "updated (UTC)", "note"]


def _runs_tab(studio: Studio, tab: Any) -> None:
    """The training runs under --runs: a table, then one run's curves, samples and metrics."""
    if studio.runs.root is None:
        gr.Markdown("No runs folder: start the studio with `--runs DIR`, where DIR holds run "
                    "folders (`impasto gan train --run DIR/name ...`, or any family's).")
    with gr.Row():
        choice = gr.Dropdown(choices=[], value=None, label="Run", elem_id="run", scale=3)
        refresh = gr.Button("Refresh", elem_id="runs-refresh", scale=0, min_width=100)
        board = gr.Button("Start TensorBoard on the runs", elem_id="tensorboard", scale=1)
    board_message = gr.Markdown(elem_id="tensorboard-message")
    table = gr.Dataframe(headers=RUN_COLUMNS, interactive=False, wrap=True, max_height=260,
                         elem_id="runs-table")
    summary = gr.Markdown(elem_id="run-summary")
    with gr.Row():
        with gr.Column(scale=2):
            curves = gr.Image(label="Curves", type="filepath", interactive=False,
                              format="png", elem_id="run-curves")
        with gr.Column(scale=1):
            scalars = gr.CheckboxGroup(choices=[], label="Curves", elem_id="run-scalars")
            samples = gr.Gallery(label="Latest samples", columns=2, height=220, format="png",
                                 preview=False, object_fit="contain", elem_id="run-samples")
    with gr.Accordion("config.json", open=False):
        config = gr.JSON(elem_id="run-config")

    def view(name, keys, request: gr.Request) -> tuple:
        """The run ``name`` with the curves of ``keys`` (None: its losses and metrics)."""
        if not name:
            return "", gr.update(choices=[], value=[]), None, [], None
        try:
            report, picture = studio.run_view(_key(request), name, keys)
        except InputError as e:
            return f"**{e}**", gr.update(choices=[], value=[]), None, [], None
        chosen = default_scalars(report.scalars) if keys is None else [
            k for k in keys if k in report.scalars]
        pictures = _sample_pictures(report)
        return (_run_markdown(report), gr.update(choices=report.scalars, value=chosen),
                picture, pictures, report.config or None)

    def reload(name, keys, request: gr.Request) -> tuple:
        """The table again, and the run shown (its curves kept) or the first."""
        rows = studio.runs.summaries()
        names = [r.name for r in rows]
        kept = name in names
        name = name if kept else (names[0] if names else None)
        table_rows = [[r.name, r.kind or "—", _steps(r), _when(r.updated), r.note]
                      for r in rows]
        return (gr.update(choices=names, value=name), table_rows,
                *view(name, list(keys) if kept and keys else None, request))

    def pick(name, request: gr.Request) -> tuple:
        return view(name, None, request)

    def redraw(name, keys, request: gr.Request) -> tuple:
        return view(name, list(keys or []), request)

    outs = [summary, scalars, curves, samples, config]
    tab.select(reload, [choice, scalars], [choice, table, *outs])
    refresh.click(reload, [choice, scalars], [choice, table, *outs])
    choice.input(pick, choice, outs)
    scalars.input(redraw, [choice, scalars], outs)

    def tensorboard() -> str:
        try:
            url = studio.tensorboard.start()
        except InputError as e:
            return f"**{e}**"
        note = "" if studio.runs.has_event_files() else (
            " No run under the runs folder has TensorBoard event files yet: runs write them "
            "while they train, unless trained with TensorBoard logging off.")
        return (f"TensorBoard runs at [{url}]({url}) (on this machine; it stops when the "
                f"studio stops).{note}")

    board.click(tensorboard, None, board_message, concurrency_limit=None)


def _steps(r: Any) -> str:
    if r.step is None:
        return "—"
    return f"{r.step} of {r.total}" if r.total else str(r.step)


def _when(t: float | None) -> str:
    import time

    return "—" if t is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))


def _md(text: str) -> str:
    """``text`` shown literally in Markdown."""
    import re

    return re.sub(r"([\\`*_{}\[\]()<>#+!|~])", r"\\\1", text)


def _run_markdown(report: RunReport) -> str:
    r = report.summary
    lines = [(f"**{_md(r.name)}** · {_md(r.kind or 'no checkpoint yet')} · step {_steps(r)} "
              f"· updated {_when(r.updated)} UTC")]
    if report.metrics:
        lines.append("**Metrics** (last): " + " · ".join(
            f"{_md(k)} {v:.4g} (step {step})" for k, (step, v) in report.metrics.items()))
    best = report.best
    if best and isinstance(best.get("value"), (int, float)):
        lines.append(f"**Best** {_md(str(best.get('metric', '')))} {best['value']:.4g} at step "
                     f"{best.get('step')} ({_md(str(best.get('file', 'best.pt')))})")
    lines += [f"⚠ {_md(p)}" for p in report.problems]
    return "\n\n".join(lines)


def _sample_pictures(report: RunReport) -> list[tuple[Any, str]]:
    from impasto.io import load_image

    out = []
    for path, caption in report.samples:
        try:
            out.append((load_image(path), caption))
        except InputError as e:
            report.problems.append(str(e))
    return out


def _classes(studio: Studio, name: str | None) -> list[str]:
    try:
        return studio.sampler.classes(name) if name else []
    except InputError:
        return []


def launch(studio: Studio, *, host: str, port: int, max_file_size: str = "64mb") -> None:
    """Serve the page until interrupted (Ctrl-C)."""
    app = build_app(studio)
    app.queue(default_concurrency_limit=1)
    app.launch(server_name=host, server_port=port, share=False, ssr_mode=False,
               footer_links=[], theme=offline_theme(), css=CSS, show_error=True,
               max_file_size=max_file_size, enable_monitoring=False, mcp_server=False,
               pwa=False, inbrowser=False, quiet=False)
