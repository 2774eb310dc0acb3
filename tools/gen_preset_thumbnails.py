"""Writes the studio's preset thumbnails, src/impasto/web/presets/NN-name.jpg: each of the 26
built-in instant styles (impasto.style.instant) on scikit-image's cat photo (chelsea, CC0),
a centred square at 96 px. Run again when the presets change:

    python tools/gen_preset_thumbnails.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

OUT = Path(__file__).resolve().parents[1] / "src" / "impasto" / "web" / "presets"
SIDE = 96


def main() -> None:
    from skimage import data

    from impasto.style.instant import PRESETS, InstantStyle

    photo = Image.fromarray(data.chelsea())
    s = min(photo.size)
    left, top = (photo.width - s) // 2, (photo.height - s) // 2
    photo = photo.crop((left, top, left + s, top + s)).resize((SIDE, SIDE), Image.LANCZOS)
    inst = InstantStyle.from_file(device="cpu", precision="fp32")
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.jpg"):
        old.unlink()
    for name in PRESETS:
        preset = PRESETS.get(name)
        out = inst(photo, preset=preset.index, output="pil")
        out.save(OUT / f"{preset.index:02d}-{preset.name}.jpg", quality=85)
    print(f"wrote {len(PRESETS)} thumbnails to {OUT}")


if __name__ == "__main__":
    main()
