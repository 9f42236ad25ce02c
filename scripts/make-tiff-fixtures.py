"""Writes the TIFF fixtures in tests/fixtures/tiff/ from the CMU-1-Small-Region sample slide.

Usage: python3 scripts/make-tiff-fixtures.py CMU-1-Small-Region.svs
Needs: pip install tifffile imagecodecs numpy

The slide is OpenSlide's test file CMU-1-Small-Region.svs (Aperio SVS, 0.499 µm/px, released
CC0 by Carnegie Mellon University). Outputs:

- svs-crop.svs: four of its level-0 tiles (480x480 px) copied byte for byte: JPEG/RGB tiles
  with shared JPEGTables and the Aperio description (MPP = 0.499), followed by a small LZW
  "label" image that is not part of the pyramid. svs-crop.png: those pixels as decoded by
  libjpeg-turbo.
- region.png: the top-left 288x192 px of the crop, and the same pixels as
  tiled-lzw.tif (112-px tiles, so edge tiles are partial; 0.499 µm/px in px/cm),
  pyramid-deflate.tif (levels 1, 1/2, 1/4 in successive IFDs, deflate with predictor),
  striped.tif (uncompressed strips; resolution in px/inch),
  bigtiff-jpeg-ycbcr.tif (BigTIFF, JPEG tiles in YCbCr with 2x2 chroma subsampling),
  gray16.tif (16-bit greyscale tiles: the luma of the region times 257).

"""

import sys
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tiff"
MPP = 0.499
PX_PER_CM = 1e4 / MPP


def main(svs: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffFile(svs) as slide:
        page = slide.pages[0]
        tile = page.tilewidth
        across = -(-page.imagewidth // tile)
        col0, row0, cols, rows = 4, 6, 2, 2
        handle = slide.filehandle
        raw = []
        for r in range(row0, row0 + rows):
            for c in range(col0, col0 + cols):
                i = r * across + c
                handle.seek(page.dataoffsets[i])
                raw.append(handle.read(page.databytecounts[i]))
        height, width = rows * tile, cols * tile
        pixels = page.asarray()[
            row0 * tile : row0 * tile + height, col0 * tile : col0 * tile + width
        ]
        fields = page.description.split("|")[1:]
        description = "|".join(
            [f"Aperio Image Library v11.2.1 \r\n{width}x{height} ({tile}x{tile}) JPEG/RGB Q=30"]
            + fields
        )
        label = slide.pages[2].asarray()[::4, ::4]
        with tifffile.TiffWriter(OUT / "svs-crop.svs") as out:
            out.write(
                iter(raw),
                shape=(height, width, 3),
                dtype=np.uint8,
                tile=(tile, tile),
                compression="jpeg",
                photometric="rgb",
                subsampling=(1, 1),
                jpegtables=page.jpegtables,
                description=description,
                metadata=None,
            )
            out.write(
                label,
                compression="lzw",
                subfiletype=1,
                description=f"Aperio Image Library v11.2.1\r\nlabel {label.shape[1]}x{label.shape[0]}",
                metadata=None,
            )
    # tifffile records JPEG tiles of RGB data as YCbCr; Aperio's tiles are RGB, as their
    # description says ("JPEG/RGB"), so the tag is set back to what the slide had.
    with tifffile.TiffFile(OUT / "svs-crop.svs", mode="r+b") as copy:
        copy.pages[0].tags["PhotometricInterpretation"].overwrite(2)
    (OUT / "svs-crop.png").write_bytes(imagecodecs.png_encode(pixels))

    region = np.ascontiguousarray(pixels[:192, :288])
    (OUT / "region.png").write_bytes(imagecodecs.png_encode(region))
    cm = dict(resolution=(PX_PER_CM, PX_PER_CM), resolutionunit="CENTIMETER", metadata=None)
    tifffile.imwrite(OUT / "tiled-lzw.tif", region, tile=(112, 112), compression="lzw", **cm)
    with tifffile.TiffWriter(OUT / "pyramid-deflate.tif") as out:
        level = region
        for i in range(3):
            out.write(
                level,
                tile=(48, 48),
                compression="zlib",
                predictor=True,
                subfiletype=0 if i == 0 else 1,
                **cm,
            )
            level = level.reshape(level.shape[0] // 2, 2, level.shape[1] // 2, 2, 3).mean(
                axis=(1, 3)
            ).round().astype(np.uint8)
    inch = 2.54 * PX_PER_CM
    tifffile.imwrite(
        OUT / "striped.tif",
        region,
        rowsperstrip=40,
        resolution=(inch, inch),
        resolutionunit="INCH",
        metadata=None,
    )
    tifffile.imwrite(
        OUT / "bigtiff-jpeg-ycbcr.tif",
        region,
        bigtiff=True,
        tile=(96, 96),
        compression="jpeg",
        compressionargs={"level": 95},
        # RGB pixels, which libjpeg encodes as YCbCr with 2x2 chroma subsampling: tifffile
        # records PhotometricInterpretation YCbCr.
        photometric="rgb",
        subsampling=(2, 2),
        **cm,
    )
    luma = region.astype(np.float64) @ [0.299, 0.587, 0.114]
    gray = (luma.round() * 257).astype(np.uint16)
    tifffile.imwrite(OUT / "gray16.tif", gray, tile=(96, 96), **cm)


if __name__ == "__main__":
    main(sys.argv[1])
