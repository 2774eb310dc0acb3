"""impasto: neural style transfer and GANs on PyTorch, fast on ordinary CPUs and fully offline.

Quick start::

    import impasto
    image = impasto.stylize("photo.jpg", "painting.jpg", size=512, seed=0)
    image.save("out.png")
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "AdaIN", "Classifier", "FastStyle", "GanGenerator", "GatysConfig", "GatysStyleTransfer",
    "InputError", "InstantStyle", "stylize", "stylize_video", "__version__",
]


def __getattr__(name: str):
    # Lazy, so that `impasto --help` and `import impasto.io` stay quick.
    if name == "stylize":
        from impasto.style.pipeline import stylize

        return stylize
    if name == "stylize_video":
        from impasto.style.gatys_video import stylize_video

        return stylize_video
    if name in ("GatysConfig", "GatysStyleTransfer"):
        from impasto.style import gatys

        return getattr(gatys, name)
    if name == "AdaIN":
        from impasto.style.adain import AdaIN

        return AdaIN
    if name == "InstantStyle":
        from impasto.style.instant import InstantStyle

        return InstantStyle
    if name == "FastStyle":
        from impasto.style.fast import FastStyle

        return FastStyle
    if name == "Classifier":
        from impasto.classify.pipeline import Classifier

        return Classifier
    if name == "GanGenerator":
        from impasto.gan.pipeline import GanGenerator

        return GanGenerator
    if name == "InputError":
        from impasto.errors import InputError

        return InputError
    raise AttributeError(f"module 'impasto' has no attribute {name!r}")
