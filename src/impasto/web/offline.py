"""Keeping the studio offline and local: the environment that turns gradio's and the Hugging Face
hub's telemetry off (set before gradio is imported), a theme that uses only fonts shipped
inside gradio or the system's (no font service), and the warning for a public address."""

from __future__ import annotations

import ipaddress
import os

__all__ = ["OFFLINE_ENV", "apply_offline_env", "is_loopback", "offline_theme", "public_warning"]

#: Set in the server's environment before gradio is imported: no analytics, no telemetry, no
#: hub look-ups, no share tunnel, no server-side rendering (it would need Node.js).
OFFLINE_ENV = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "GRADIO_SHARE": "False",
    "GRADIO_SSR_MODE": "False",
    "GRADIO_MCP_SERVER": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}

#: The theme's fonts: gradio's own files (served by the studio itself) then the system's.
FONTS = ("Source Sans Pro", "ui-sans-serif", "system-ui", "sans-serif")
MONO_FONTS = ("IBM Plex Mono", "ui-monospace", "monospace")


def apply_offline_env(environ: dict[str, str] | None = None) -> None:
    """Put :data:`OFFLINE_ENV` into ``environ`` (default ``os.environ``), overriding what was
    there: the studio never reports to anyone."""
    env = os.environ if environ is None else environ
    env.update(OFFLINE_ENV)


def offline_theme() -> object:
    """gradio's default look with fonts that need no font service: the ones gradio ships
    (served from the studio) or the system's. Imports gradio."""
    import gradio as gr
    from gradio.themes.utils import fonts

    def font(name: str) -> object:
        if name.startswith(("ui-", "system-")) or name in ("sans-serif", "monospace"):
            return name
        if not fonts.local_font_available(name, (400, 600)):
            raise RuntimeError(f"gradio no longer ships the font {name!r}")
        return fonts.LocalFont(name)

    return gr.themes.Default(font=[font(f) for f in FONTS],
                             font_mono=[font(f) for f in MONO_FONTS])


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (``127.0.0.1``, ``::1``,
    ``localhost``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def public_warning(host: str) -> str | None:
    """The warning printed when the studio listens on an address other computers can reach."""
    if is_loopback(host):
        return None
    return (f"impasto serve: warning: listening on {host}: anyone who can reach this address "
            "can use the studio, run jobs on this machine and read its results; it has no "
            "login. Use the default 127.0.0.1 unless you mean it.")
