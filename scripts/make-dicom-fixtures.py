"""Writes the DICOM whole-slide fixtures in tests/fixtures/dicom/ from tests/fixtures/tiff/svs-crop.svs.

Usage: python3 scripts/make-dicom-fixtures.py
Needs: pip install wsidicomizer pydicom imagecodecs tifffile numpy, and libjpeg-turbo
(Debian: libturbojpeg0), which wsidicomizer loads.

wsidicomizer (the converter of the wsidicom project) turns the four-tile Aperio crop (480x480
px, 0.499 µm/px) into a DICOM VL Whole Slide Microscopy Image study of two levels (480 and 240
px, one file each), three ways:

- jpeg/: the crop's JPEG tiles copied as they are, with a basic offset table;
- jpeg2000/: transcoded to JPEG 2000 at 40 dB, with an extended offset table; level-0.png is
  its level 0 as OpenJPEG (through imagecodecs) decodes the frames;
- jpeg-no-table/: as jpeg/, with an empty offset table (the reader walks the fragments);
- jpeg-sparse/level-0.dcm: jpeg/'s level 0 made TILED_SPARSE here with pydicom: its frames in
  reverse order, each placed by Plane Position (Slide), the top-right tile left out (glass).

Files are named level-N.dcm, finest first. Their UIDs are new on every run.
"""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
import tifffile

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "fixtures" / "tiff" / "svs-crop.svs"
OUT = ROOT / "tests" / "fixtures" / "dicom"
FLAVOURS = {
    "jpeg": ["--offset-table", "basic"],
    "jpeg2000": [
        "--offset-table",
        "extended",
        "--force-transcoding",
        "--format",
        "jpeg2000",
        "--quality",
        "40",
    ],
    "jpeg-no-table": ["--offset-table", "empty"],
}


def without_label(svs: Path, out: Path) -> None:
    """The crop's level 0 alone: wsidicomizer's SVS reader refuses the LZW label image."""
    with tifffile.TiffFile(svs) as slide:
        page = slide.pages[0]
        handle = slide.filehandle
        tiles = []
        for offset, count in zip(page.dataoffsets, page.databytecounts):
            handle.seek(offset)
            tiles.append(handle.read(count))
        with tifffile.TiffWriter(out) as copy:
            copy.write(
                iter(tiles),
                shape=page.shape,
                dtype=np.uint8,
                tile=(page.tilelength, page.tilewidth),
                compression="jpeg",
                photometric="rgb",
                subsampling=(1, 1),
                jpegtables=page.jpegtables,
                description=page.description,
                metadata=None,
            )
    # tifffile records JPEG tiles of RGB data as YCbCr; Aperio's are RGB.
    with tifffile.TiffFile(out, mode="r+b") as copy:
        copy.pages[0].tags["PhotometricInterpretation"].overwrite(2)


def sparse(full: Path, out: Path) -> None:
    """A TILED_FULL level rewritten as TILED_SPARSE: frames reversed, the top-right one gone."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    level = pydicom.dcmread(full)
    tile = level.Rows
    across = -(-level.TotalPixelMatrixColumns // tile)
    frames = list(
        pydicom.encaps.generate_frames(level.PixelData, number_of_frames=level.NumberOfFrames)
    )
    kept = [i for i in reversed(range(len(frames))) if i != across - 1]
    groups = []
    for i in kept:
        position = Dataset()
        position.ColumnPositionInTotalImagePixelMatrix = (i % across) * tile + 1
        position.RowPositionInTotalImagePixelMatrix = (i // across) * tile + 1
        group = Dataset()
        group.PlanePositionSlideSequence = Sequence([position])
        groups.append(group)
    level.PerFrameFunctionalGroupsSequence = Sequence(groups)
    level.DimensionOrganizationType = "TILED_SPARSE"
    level.NumberOfFrames = len(kept)
    level.PixelData = pydicom.encaps.encapsulate([frames[i] for i in kept], has_bot=True)
    level.SOPInstanceUID = pydicom.uid.generate_uid()
    out.parent.mkdir(parents=True, exist_ok=True)
    level.save_as(out, enforce_file_format=True)


def main() -> None:
    converter = shutil.which("wsidicomizer") or str(Path(sys.executable).parent / "wsidicomizer")
    with tempfile.TemporaryDirectory() as scratch:
        svs = Path(scratch) / "crop.svs"
        without_label(SOURCE, svs)
        for name, options in FLAVOURS.items():
            converted = Path(scratch) / name
            subprocess.run(
                [converter, "-i", svs, "-o", converted, "--no-label", "--no-overview",
                 "--add-missing-levels", *options],
                check=True,
            )
            files = sorted(
                converted.glob("*.dcm"),
                key=lambda f: -pydicom.dcmread(f, stop_before_pixels=True).TotalPixelMatrixColumns,
            )
            target = OUT / name
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            for level, file in enumerate(files):
                shutil.copy(file, target / f"level-{level}.dcm")
    sparse(OUT / "jpeg" / "level-0.dcm", OUT / "jpeg-sparse" / "level-0.dcm")
    # OpenJPEG's pixels of the JPEG 2000 level 0.
    level0 = pydicom.dcmread(OUT / "jpeg2000" / "level-0.dcm")
    tile = level0.Rows
    across = -(-level0.TotalPixelMatrixColumns // tile)
    pixels = np.zeros((level0.TotalPixelMatrixRows, level0.TotalPixelMatrixColumns, 3), np.uint8)
    frames = pydicom.encaps.generate_frames(level0.PixelData, number_of_frames=level0.NumberOfFrames)
    for i, frame in enumerate(frames):
        y, x = (i // across) * tile, (i % across) * tile
        decoded = imagecodecs.jpeg2k_decode(frame)
        part = pixels[y : y + tile, x : x + tile]
        part[:] = decoded[: part.shape[0], : part.shape[1]]
    (OUT / "jpeg2000" / "level-0.png").write_bytes(imagecodecs.png_encode(pixels))


if __name__ == "__main__":
    main()
