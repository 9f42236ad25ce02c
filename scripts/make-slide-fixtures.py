"""Writes the slide-view fixtures in tests/fixtures/slide/, and the page's example field of view
www/samples/field-of-view.tif, from the CMU-1-Small-Region sample slide.

Usage: python3 scripts/make-slide-fixtures.py CMU-1-Small-Region.svs
Needs: pip install tifffile imagecodecs numpy pillow

The slide is OpenSlide's test file CMU-1-Small-Region.svs (Aperio SVS, 0.499 µm/px, released
CC0 by Carnegie Mellon University). Outputs, both at 0.499 µm/px:

- field-of-view.png: 448x448 px from (1000, 1750), with the pixel size in its pHYs chunk (as a
  screenshot tool that knows the scan's resolution would write it).
- pyramid-jpeg.tif: 1024x1024 px from (800, 1600) as a tiled pyramidal TIFF: levels 1, 1/2 and
  1/4 in successive IFDs, 256-px JPEG tiles (quality 90), resolution in px/cm.
- www/samples/field-of-view.tif: 1280x1280 px from (600, 1400), written the same way at JPEG
  quality 70: the example a class can open without a file of its own.
"""

import sys
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "slide"
EXAMPLE = ROOT / "www" / "samples" / "field-of-view.tif"
MPP = 0.499


def main(svs: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffFile(svs) as slide:
        level0 = slide.pages[0].asarray()
    field = level0[1750:1750 + 448, 1000:1000 + 448]
    Image.fromarray(field).save(OUT / "field-of-view.png", dpi=(25400 / MPP, 25400 / MPP), optimize=True)

    write_pyramid(level0[1600:1600 + 1024, 800:800 + 1024], OUT / "pyramid-jpeg.tif", 90)
    write_pyramid(level0[1400:1400 + 1280, 600:600 + 1280], EXAMPLE, 70)


def write_pyramid(region, path: Path, quality: int) -> None:
    """`region` and its 2x2 and 4x4 means as a tiled JPEG TIFF at MPP µm/px."""
    levels = [region]
    for _ in range(2):
        r = levels[-1].astype(np.float32)
        h, w = r.shape[0] // 2 * 2, r.shape[1] // 2 * 2
        r = r[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
        levels.append(np.round(r).astype(np.uint8))
    px_per_cm = 1e4 / MPP
    with tifffile.TiffWriter(path) as tif:
        for i, level in enumerate(levels):
            scale = 2 ** i
            tif.write(
                level,
                photometric="rgb",
                tile=(256, 256),
                compression="jpeg",
                compressionargs={"level": quality},
                resolution=(px_per_cm / scale, px_per_cm / scale),
                resolutionunit="CENTIMETER",
                subfiletype=1 if i else 0,
            )


if __name__ == "__main__":
    main(sys.argv[1])
