"""The peer of `cargo bench --bench jpeg2000`: OpenJPEG (through imagecodecs) on the same tiles.

    python benches/openjpeg_tiles.py make SLIDE DIR   # level 0 of SLIDE as 240x240 px .j2k tiles
    python benches/openjpeg_tiles.py decode DIR [ROUNDS]

`make` encodes every whole 240x240 px tile (Aperio's tile size) of the slide's level 0 with
OpenJPEG at 38 dB PSNR through the irreversible colour transform, as a 33005 slide holds them.
`decode` decodes every .j2k in DIR once to warm up, then ROUNDS times (default 5) on one
thread, and prints the median tiles/s.

Needs: pip install imagecodecs tifffile numpy
"""

import sys
import time
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile

TILE = 240


def make(slide: str, out: str) -> None:
    pixels = tifffile.imread(slide, key=0)
    Path(out).mkdir(parents=True, exist_ok=True)
    count = 0
    for y in range(0, pixels.shape[0] - TILE + 1, TILE):
        for x in range(0, pixels.shape[1] - TILE + 1, TILE):
            tile = np.ascontiguousarray(pixels[y : y + TILE, x : x + TILE, :3])
            data = imagecodecs.jpeg2k_encode(tile, level=38, codecformat="J2K")
            (Path(out) / f"t{count:05d}.j2k").write_bytes(data)
            count += 1
    print(f"{count} tiles in {out}")


def decode(folder: str, rounds: int) -> None:
    tiles = [p.read_bytes() for p in sorted(Path(folder).glob("*.j2k"))]
    for tile in tiles:
        imagecodecs.jpeg2k_decode(tile, numthreads=1)
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for tile in tiles:
            imagecodecs.jpeg2k_decode(tile, numthreads=1)
        rates.append(len(tiles) / (time.perf_counter() - start))
    rates.sort()
    print(f"{imagecodecs.jpeg2k_version()}: median {rates[len(rates) // 2]:.1f} tiles/s")


if __name__ == "__main__":
    if sys.argv[1:2] == ["make"] and len(sys.argv) == 4:
        make(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["decode"] and len(sys.argv) in (3, 4):
        decode(sys.argv[2], int(sys.argv[3]) if len(sys.argv) == 4 else 5)
    else:
        sys.exit(__doc__)
