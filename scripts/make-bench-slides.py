"""Writes the large inputs of the slide-view benchmark (not committed; about 2.5 GB):

- region-4000.tif: 4000x4000 px at 1 µm/px, a pyramidal TIFF with JPEG tiles, mirrored tiles of
  the CMU sample resampled to 1 µm/px;
- large-slide.tif: a 100,000 x 80,000 px BigTIFF at 0.5 µm/px with levels 1, 1/4, 1/16, 1/64,
  whose 256-px JPEG tiles repeat 64 tiles cut from the CMU sample (so it writes in seconds):
  the size of a whole-slide scan, for opening, viewing and memory, not for its scores;
- large-slide-jp2k.svs: the same slide as an Aperio SVS with JPEG 2000 tiles (33005, 38 dB),
  MPP = 0.5 in its description;
- large-slide-dicom/: the same slide as a DICOM whole-slide image, one file a level (1, 1/4,
  1/16, 1/64), its 256-px JPEG 2000 frames the same tiles, basic offset tables where they fit
  in 32 bits, extended ones otherwise; the attributes are those of
  tests/fixtures/dicom/jpeg2000/level-0.dcm.

Usage: python3 scripts/make-bench-slides.py CMU-1-Small-Region.svs OUTDIR
Needs: pip install tifffile imagecodecs numpy pillow pydicom
"""

import sys
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile
from PIL import Image

TILE = 256


def mirrored(source: np.ndarray, height: int, width: int) -> np.ndarray:
    """`source` tiled to `height` x `width`, every other copy mirrored so edges meet."""
    h, w = source.shape[:2]
    block = np.concatenate([source, source[::-1]], axis=0)
    block = np.concatenate([block, block[:, ::-1]], axis=1)
    reps = (-(-height // (2 * h)), -(-width // (2 * w)), 1)
    return np.tile(block, reps)[:height, :width]


def pyramid(
    levels, path: Path, mpp: float, bigtiff: bool = False, compression="jpeg", description=None
) -> None:
    px_per_cm = 1e4 / mpp
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tif:
        for i, (scale, data, shape) in enumerate(levels):
            tif.write(
                data,
                shape=shape,
                dtype=np.uint8,
                photometric="rgb",
                tile=(TILE, TILE),
                compression=compression,
                compressionargs={"level": 85} if compression == "jpeg" else None,
                resolution=(px_per_cm / scale, px_per_cm / scale),
                resolutionunit="CENTIMETER",
                subfiletype=1 if i else 0,
                description=description if i == 0 else None,
                metadata=None,
            )


def main(svs: str, out: str) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffFile(svs) as slide:
        level0 = slide.pages[0].asarray()

    at_1um = np.asarray(
        Image.fromarray(level0).resize((level0.shape[1] // 2, level0.shape[0] // 2), Image.BOX)
    )
    region = mirrored(at_1um, 4000, 4000)
    levels = [(1, region, region.shape)]
    for scale in (2, 4):
        small = np.asarray(Image.fromarray(region).resize((4000 // scale, 4000 // scale), Image.BOX))
        levels.append((scale, small, small.shape))
    pyramid(levels, out / "region-4000.tif", 1.0)

    # 64 distinct JPEG tiles from the sample, repeated across every level of a slide-sized file.
    tiles = [
        imagecodecs.jpeg_encode(level0[y:y + TILE, x:x + TILE], level=85)
        for y in range(0, 8 * TILE, TILE)
        for x in range(0, 8 * TILE, TILE)
    ]
    jp2k = [
        imagecodecs.jpeg2k_encode(
            np.ascontiguousarray(level0[y:y + TILE, x:x + TILE]), level=38, codecformat="J2K"
        )
        for y in range(0, 8 * TILE, TILE)
        for x in range(0, 8 * TILE, TILE)
    ]
    width, height = 100_000, 80_000

    def repeated(tiles, w: int, h: int):
        count = (-(-w // TILE)) * (-(-h // TILE))
        return (tiles[i % len(tiles)] for i in range(count))

    def levels_of(tiles):
        levels = []
        for scale in (1, 4, 16, 64):
            w, h = width // scale, height // scale
            levels.append((scale, repeated(tiles, w, h), (h, w, 3)))
        return levels

    pyramid(levels_of(tiles), out / "large-slide.tif", 0.5, bigtiff=True)
    aperio = f"Aperio Image Library v12.0.15\r\n{width}x{height} ({TILE}x{TILE}) J2K/KDU Q=70|MPP = 0.5"
    pyramid(
        levels_of(jp2k),
        out / "large-slide-jp2k.svs",
        0.5,
        bigtiff=True,
        compression=33005,
        description=aperio,
    )

    dicom_slide(jp2k, width, height, out / "large-slide-dicom")


def dicom_slide(tiles, width: int, height: int, out: Path) -> None:
    """The tiles repeated as a DICOM whole-slide image, one file a level."""
    import struct

    import pydicom

    template = Path(__file__).resolve().parent.parent / "tests/fixtures/dicom/jpeg2000/level-0.dcm"
    out.mkdir(parents=True, exist_ok=True)
    series = pydicom.uid.generate_uid()
    for level, scale in enumerate((1, 4, 16, 64)):
        w, h = width // scale, height // scale
        count = (-(-w // TILE)) * (-(-h // TILE))
        frames = [tiles[i % len(tiles)] for i in range(count)]
        ds = pydicom.dcmread(template)
        ds.Rows = ds.Columns = TILE
        ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows = w, h
        ds.NumberOfFrames = count
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        spacing = 0.0005 * scale
        ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing = [spacing, spacing]
        ds.ImagedVolumeWidth, ds.ImagedVolumeHeight = w * spacing, h * spacing
        items = [struct.pack("<HHI", 0xFFFE, 0xE000, len(f) + len(f) % 2) + f + b"\0" * (len(f) % 2) for f in frames]
        offsets, at = [], 0
        for item in items:
            offsets.append(at)
            at += len(item)
        for name in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
            if name in ds:
                delattr(ds, name)
        if at < 2**32:
            table = struct.pack(f"<{len(offsets)}I", *offsets)
        else:
            table = b""
            ds.ExtendedOffsetTable = struct.pack(f"<{len(offsets)}Q", *offsets)
            ds.ExtendedOffsetTableLengths = struct.pack(f"<{len(items)}Q", *(len(i) - 8 for i in items))
        header = struct.pack("<HHI", 0xFFFE, 0xE000, len(table)) + table
        ds.PixelData = header + b"".join(items) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        ds["PixelData"].is_undefined_length = True
        ds.save_as(out / f"level-{level}.dcm", enforce_file_format=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
