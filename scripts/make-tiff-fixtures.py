"""Writes the TIFF fixtures in tests/fixtures/tiff/ from the CMU-1-Small-Region sample slide.

Usage: python3 scripts/make-tiff-fixtures.py CMU-1-Small-Region.svs
Needs: pip install tifffile imagecodecs numpy

The slide is OpenSlide's test file CMU-1-Small-Region.svs (Aperio SVS, 0.499 µm/px, released
CC0 by Carnegie Mellon University). Outputs:

- svs-crop.svs: four of its level-0 tiles (480x480 px in all) copied byte for byte: JPEG/RGB tiles
  with shared JPEGTables and the Aperio description (MPP = 0.499), followed by a small LZW
  "label" image that is not part of the pyramid. svs-crop.png: those pixels as decoded by
  libjpeg-turbo.
- region.png: the top-left 288x192 px of the crop, and the same pixels as
  tiled-lzw.tif (112-px tiles, so edge tiles are partial; 0.499 µm/px in px/cm),
  pyramid-deflate.tif (levels 1, 1/2, 1/4 in successive IFDs, deflate with predictor),
  striped.tif (uncompressed strips; resolution in px/inch),
  bigtiff-jpeg-ycbcr.tif (BigTIFF, JPEG tiles in YCbCr with 2x2 chroma subsampling),
  gray16.tif (16-bit greyscale tiles: the luma of the region times 257),
  ome-lzw.ome.tif (OME-TIFF, LZW tiles; its OME-XML gives 499 nm per pixel, while its
  resolution tags say 72 dpi, as an image editor would),
  ome-pyramid.ome.tif (OME-TIFF, the region and its 2x2 and 4x4 means in level 0's SubIFDs,
  lossless JPEG 2000 tiles, 0.499 µm in the OME-XML).
- JPEG 2000: svs-jp2k-ycbcr.svs (Aperio's 33003: the region's Y, Cb, Cr, lossless, no colour
  transform in the codestream), svs-jp2k-rgb.svs (Aperio's 33005: the whole crop, lossy at
  35 dB, the codestream's irreversible colour transform) with svs-jp2k-rgb.png, its pixels as
  OpenJPEG decodes them, jpeg2000.tif (tifffile's 34712, lossless) and vips-jp2k.tif
  (libvips' 33004, Q 90; needs the `vips` command).

"""

import subprocess
import sys
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tiff"
OME_PYRAMID = OUT / "ome-pyramid.ome.tif"
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
    tifffile.imwrite(
        OUT / "ome-lzw.ome.tif",
        region,
        ome=True,
        photometric="rgb",
        tile=(96, 96),
        compression="lzw",
        resolution=(72, 72),
        resolutionunit="INCH",
        metadata={
            "axes": "YXS",
            "PhysicalSizeX": MPP * 1000,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": MPP * 1000,
            "PhysicalSizeYUnit": "nm",
        },
    )
    # An OME-TIFF pyramid: levels 1/2 and 1/4 in level 0's SubIFDs, JPEG 2000 tiles.
    with tifffile.TiffWriter(OME_PYRAMID, ome=True) as out:
        ome = dict(
            photometric="rgb",
            tile=(48, 48),
            compression="jpeg2000",
            compressionargs={"level": 0, "reversible": True},
        )
        levels = [region]
        for _ in range(2):
            level = levels[-1]
            levels.append(
                level.reshape(level.shape[0] // 2, 2, level.shape[1] // 2, 2, 3)
                .mean(axis=(1, 3))
                .round()
                .astype(np.uint8)
            )
        out.write(
            region,
            subifds=2,
            metadata={
                "axes": "YXS",
                "PhysicalSizeX": MPP,
                "PhysicalSizeXUnit": "µm",
                "PhysicalSizeY": MPP,
                "PhysicalSizeYUnit": "µm",
            },
            **ome,
        )
        for level in levels[1:]:
            out.write(level, subfiletype=1, **ome)

    jpeg2000(pixels, region, description)


def aperio_jp2k(path: Path, tiles, shape, tile: int, code: int, description: str) -> None:
    """An Aperio-like SVS whose tiles are the raw codestreams `tiles`, compression `code`."""
    with tifffile.TiffWriter(path) as out:
        out.write(
            iter(tiles),
            shape=shape,
            dtype=np.uint8,
            tile=(tile, tile),
            compression=code,
            photometric="rgb",
            description=description,
            metadata=None,
        )


def tiles_of(image: np.ndarray, tile: int):
    """The tile x tile blocks of `image`, row by row, zero-padded at the edges."""
    height, width = image.shape[:2]
    for y in range(0, height, tile):
        for x in range(0, width, tile):
            block = np.zeros((tile, tile) + image.shape[2:], image.dtype)
            part = image[y : y + tile, x : x + tile]
            block[: part.shape[0], : part.shape[1]] = part
            yield block


def jpeg2000(crop: np.ndarray, region: np.ndarray, description: str) -> None:
    rgb = region.astype(np.float64)
    ycbcr = np.stack(
        [
            rgb @ [0.299, 0.587, 0.114],
            rgb @ [-0.168736, -0.331264, 0.5] + 128,
            rgb @ [0.5, -0.418688, -0.081312] + 128,
        ],
        axis=-1,
    )
    ycbcr = ycbcr.round().clip(0, 255).astype(np.uint8)
    tile = 96
    codestreams = [
        imagecodecs.jpeg2k_encode(block, codecformat="J2K", reversible=True, mct=False)
        for block in tiles_of(ycbcr, tile)
    ]
    fields = description.split("|")[1:]
    header = "Aperio Image Library v11.2.1 \r\n{}x{} ({}x{}) {}"
    height, width = region.shape[:2]
    aperio = "|".join([header.format(width, height, tile, tile, "J2K/YUV")] + fields)
    aperio_jp2k(OUT / "svs-jp2k-ycbcr.svs", codestreams, region.shape, tile, 33003, aperio)

    tile = 240
    codestreams = [
        imagecodecs.jpeg2k_encode(block, level=35, codecformat="J2K", mct=True)
        for block in tiles_of(crop, tile)
    ]
    height, width = crop.shape[:2]
    decoded = np.zeros_like(crop)
    across = width // tile
    for i, codestream in enumerate(codestreams):
        y, x = (i // across) * tile, (i % across) * tile
        decoded[y : y + tile, x : x + tile] = imagecodecs.jpeg2k_decode(codestream)
    aperio = "|".join([header.format(width, height, tile, tile, "J2K/KDU Q=35")] + fields)
    aperio_jp2k(OUT / "svs-jp2k-rgb.svs", codestreams, crop.shape, tile, 33005, aperio)
    (OUT / "svs-jp2k-rgb.png").write_bytes(imagecodecs.png_encode(decoded))

    cm = dict(resolution=(PX_PER_CM, PX_PER_CM), resolutionunit="CENTIMETER", metadata=None)
    tifffile.imwrite(
        OUT / "jpeg2000.tif",
        region,
        tile=(96, 96),
        compression="jpeg2000",
        compressionargs={"level": 0, "reversible": True},
        photometric="rgb",
        **cm,
    )
    subprocess.run(
        [
            "vips",
            "tiffsave",
            OUT / "region.png",
            OUT / "vips-jp2k.tif",
            "--tile",
            "--tile-width=96",
            "--tile-height=96",
            "--compression=jp2k",
            "--Q=90",
            f"--xres={PX_PER_CM / 10}",
            f"--yres={PX_PER_CM / 10}",
            "--resunit=cm",
        ],
        check=True,
    )


if __name__ == "__main__":
    main(sys.argv[1])
