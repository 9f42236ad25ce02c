//! Winograd's minimal filtering for stride-1 3x3 convolutions (A. Lavin and S. Gray, "Fast
//! Algorithms for Convolutional Neural Networks", CVPR 2016): F(4x4, 3x3) with AVX-512
//! ([`avx512`]), F(2x2, 3x3) here for the other kernels.
//!
//! Each 2x2 block of outputs comes from a 4x4 block of inputs as `A^T [(G g G^T) * (B^T d B)] A`:
//! 16 multiplications per input and output channel instead of 36. The weights are transformed
//! once per call (`U = G g G^T`), the input once per tile and channel (`V = B^T d B`), and the
//! products are summed over input channels for each of the 16 positions, four output channels
//! by `LANES` tiles (8 in wasm, 16 natively) at a time, before the output transform. All
//! transforms are additions done on those tiles at once: the padded input is split into even
//! and odd columns, so a tile row's four inputs for consecutive tiles are four contiguous loads.

use std::cell::Cell;
use std::ops::Range;

use super::{
    CHANNELS, Epilogue, Kernel, LANES, Shape4, Unwritten, channel_bands, madd_block, per_band,
    per_image, unwritten, written,
};
#[cfg(target_arch = "x86_64")]
use super::{avx2_fma, avx512};

#[cfg(target_arch = "x86_64")]
mod avx512;

/// Tile rows per band of output rows computed by one thread.
const BAND: usize = 8;

/// Positions in a transformed 4x4 tile.
const POSITIONS: usize = 16;

/// Eight values, one per tile.
type Lanes = [f32; LANES];

/// [`super::conv3x3_f32`] at stride 1 by Winograd's minimal filtering (shapes checked there).
pub fn winograd3x3(
    x: &[f32],
    shape: Shape4,
    weight: &[f32],
    c_out: usize,
    epilogue: Epilogue,
) -> Vec<f32> {
    winograd3x3_with(Kernel::best(), x, shape, weight, c_out, epilogue)
}

/// [`winograd3x3`] with the given kernel, which the CPU must run (see [`Kernel::available`]):
/// F(4x4, 3x3) with AVX-512 ([`avx512`]), F(2x2, 3x3) otherwise.
pub(super) fn winograd3x3_with(
    kernel: Kernel,
    x: &[f32],
    shape: Shape4,
    weight: &[f32],
    c_out: usize,
    epilogue: Epilogue,
) -> Vec<f32> {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => {
            assert!(avx512(), "the CPU has no AVX-512");
            // SAFETY: the CPU has AVX-512 (asserted above).
            unsafe { avx512::winograd3x3(x, shape, weight, c_out, epilogue) }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2Fma => {
            assert!(avx2_fma(), "the CPU has no AVX2 and FMA");
            f2x2(x, shape, weight, c_out, |tiles, x, weights, rows, out| {
                // SAFETY: the CPU has AVX2 and FMA (asserted above).
                unsafe { tiles.convolve_rows_avx2_fma(x, weights, epilogue, rows, out) }
            })
        }
        Kernel::Baseline => f2x2(x, shape, weight, c_out, |tiles, x, weights, rows, out| {
            tiles.convolve_rows(x, weights, epilogue, rows, out)
        }),
    }
}

/// F(2x2, 3x3) of every image, `rows` computing a range of tile rows of one image with the
/// transformed weights.
fn f2x2(
    x: &[f32],
    shape: Shape4,
    weight: &[f32],
    c_out: usize,
    rows: impl Fn(&Tiles, &[f32], &[[f32; CHANNELS]], Range<usize>, &mut [&mut [Unwritten]])
    + Sync
    + Send,
) -> Vec<f32> {
    let [batch, c_in, height, width] = shape;
    let tiles = Tiles::new(shape);
    let weights = transform_weights::<CHANNELS>(weight, c_in, c_out);
    let image_out = c_out * height * width;
    let mut out = unwritten(batch * image_out);
    per_image(x, c_in * height * width, &mut out, image_out, |x, out| {
        tiles.convolve(out, |range, out| rows(&tiles, x, &weights, range, out));
    });
    // SAFETY: the tiles cover every output row and column of every channel and image.
    unsafe { written(out) }
}

/// `U = G g G^T` for every pair of channels, grouped as `[c_out / N][16][c_in][N]` (channels
/// past `c_out` zero) so the `N` output channels of one product are adjacent.
fn transform_weights<const N: usize>(weight: &[f32], c_in: usize, c_out: usize) -> Vec<[f32; N]> {
    const G: [[f32; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    let groups = c_out.div_ceil(N);
    let mut u = vec![[0.0; N]; groups * POSITIONS * c_in];
    for o in 0..c_out {
        for i in 0..c_in {
            let g = &weight[(o * c_in + i) * 9..][..9];
            // G g (4x3), then (G g) G^T (4x4).
            let gg: [[f32; 3]; 4] = std::array::from_fn(|r| {
                std::array::from_fn(|b| (0..3).map(|a| G[r][a] * g[a * 3 + b]).sum())
            });
            for (r, gg_row) in gg.iter().enumerate() {
                for (c, g_row) in G.iter().enumerate() {
                    let value = (0..3).map(|b| gg_row[b] * g_row[b]).sum();
                    u[((o / N) * POSITIONS + r * 4 + c) * c_in + i][o % N] = value;
                }
            }
        }
    }
    u
}

thread_local! {
    /// Each thread's transformed inputs of a row of tiles, kept from one band to the next.
    static TRANSFORMED: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// A buffer for transformed inputs that each thread keeps between calls, so that a band does
/// not allocate and zero them again (their contents are unspecified); given back when dropped.
/// A guard rather than a closure: a closure's body is compiled without the target features of
/// the kernel it is written in (relaxed SIMD, AVX2), and its multiply-adds became calls.
struct Transformed(Vec<f32>, usize);

impl Transformed {
    fn take(len: usize) -> Self {
        let mut buffer = TRANSFORMED.take();
        if buffer.len() < len {
            buffer.resize(len, 0.0);
        }
        Self(buffer, len)
    }

    /// The `len` values taken.
    fn values(&mut self) -> &mut [f32] {
        &mut self.0[..self.1]
    }
}

impl Drop for Transformed {
    fn drop(&mut self) {
        TRANSFORMED.set(std::mem::take(&mut self.0));
    }
}

/// The tiling of one image: 2x2 output tiles, rows of them padded to whole blocks of
/// [`LANES`].
struct Tiles {
    c_in: usize,
    height: usize,
    width: usize,
    /// Tile rows.
    rows: usize,
    /// Tile columns, rounded up to whole blocks of [`LANES`].
    cols_padded: usize,
}

impl Tiles {
    fn new([_, c_in, height, width]: Shape4) -> Self {
        Self {
            c_in,
            height,
            width,
            rows: height.div_ceil(2),
            cols_padded: width.div_ceil(2).next_multiple_of(LANES),
        }
    }

    /// Length of one padded row's even or odd columns in [`Tiles::transform_row`]'s scratch.
    fn half_len(&self) -> usize {
        self.cols_padded + 1
    }

    /// Scratch for [`Tiles::transform_row`]: one channel's four padded rows, each split into even
    /// and odd padded columns (`[4][2][half_len]`). Zeroed once: the columns that are padding are
    /// never written, so they stay zero.
    fn row_scratch(&self) -> Vec<f32> {
        vec![0.0; 8 * self.half_len()]
    }

    /// Padded row `padded_row` of channel `c` split into even and odd padded columns: padded
    /// column 2j is `even[j]`, 2j + 1 is `odd[j]`, and padded (row, column) is input (row - 1,
    /// column - 1).
    #[inline(always)]
    fn split_row(
        &self,
        image: &[f32],
        c: usize,
        padded_row: usize,
        even: &mut [f32],
        odd: &mut [f32],
    ) {
        let Some(y) = padded_row.checked_sub(1).filter(|&y| y < self.height) else {
            even.fill(0.0);
            odd.fill(0.0);
            return;
        };
        let src_row = &image[(c * self.height + y) * self.width..][..self.width];
        // Input column 2k is padded column 2k + 1 (odd[k]); 2k + 1 is 2k + 2 (even[k + 1]).
        // Whole pairs in one loop without branches, which vectorises.
        let pairs = src_row.chunks_exact(2);
        let (n, last) = (pairs.len(), pairs.remainder().first().copied());
        for ((o, e), pair) in odd.iter_mut().zip(&mut even[1..=n]).zip(pairs) {
            *o = pair[0];
            *e = pair[1];
        }
        if let Some(last) = last {
            odd[n] = last;
        }
    }

    /// Length of [`Tiles::transform_row`]'s output.
    fn transformed_len(&self) -> usize {
        POSITIONS * self.c_in * self.cols_padded
    }

    /// The transformed inputs of the block of [`LANES`] tiles from tile column `col` at
    /// `position`: `[c_in][LANES]`, contiguous, in [`Tiles::transform_row`]'s output `v`.
    #[inline(always)]
    fn block_inputs<'v>(&self, v: &'v [f32], col: usize, position: usize) -> &'v [f32] {
        let len = self.c_in * LANES;
        &v[((col / LANES) * POSITIONS + position) * len..][..len]
    }

    /// `V = B^T d B` of one row of tiles for every input channel, into `v` (`[cols_padded /
    /// LANES][16][c_in][LANES]`: what one block of tiles multiplies is contiguous), each
    /// channel's four input rows split into `scratch` first (see [`Tiles::row_scratch`]) so
    /// that a tile row's four inputs for consecutive tiles are four contiguous loads.
    #[inline(always)]
    fn transform_row(&self, image: &[f32], row: usize, scratch: &mut [f32], v: &mut [f32]) {
        let half_len = self.half_len();
        let load = |half: &[f32], at: usize| -> Lanes { half[at..at + LANES].try_into().unwrap() };
        for c in 0..self.c_in {
            for (r, halves) in scratch.chunks_exact_mut(2 * half_len).enumerate() {
                let (even, odd) = halves.split_at_mut(half_len);
                self.split_row(image, c, 2 * row + r, even, odd);
            }
            let half =
                |r: usize, parity: usize| &scratch[(2 * r + parity) * half_len..][..half_len];
            for col in (0..self.cols_padded).step_by(LANES) {
                // d B for each of the tile's four input rows: [a - c, b + c, c - b, b - e] for the
                // row's inputs a, b, c, e.
                let mut d_b = [[[0.0; LANES]; 4]; 4];
                for (r, transformed) in d_b.iter_mut().enumerate() {
                    let (even, odd) = (half(r, 0), half(r, 1));
                    let (a, b) = (load(even, col), load(odd, col));
                    let (c, e) = (load(even, col + 1), load(odd, col + 1));
                    *transformed = [sub(a, c), add(b, c), sub(c, b), sub(b, e)];
                }
                // B^T (d B): the same combination down the columns.
                #[allow(clippy::needless_range_loop)] // k picks a column across the rows
                for k in 0..4 {
                    let [t0, t1, t2, t3] = [d_b[0][k], d_b[1][k], d_b[2][k], d_b[3][k]];
                    let rows = [sub(t0, t2), add(t1, t2), sub(t2, t1), sub(t1, t3)];
                    for (r, values) in rows.iter().enumerate() {
                        let block = (col / LANES) * POSITIONS + r * 4 + k;
                        let at = (block * self.c_in + c) * LANES;
                        v[at..at + LANES].copy_from_slice(values);
                    }
                }
            }
        }
    }

    /// The convolution of one image into `out` (`[c_out, height, width]`) by `rows`, which
    /// computes a range of tile rows into each output channel's rows from `2 * rows.start`:
    /// bands of [`BAND`] tile rows, in parallel natively.
    fn convolve(
        &self,
        out: &mut [Unwritten],
        rows: impl Fn(Range<usize>, &mut [&mut [Unwritten]]) + Sync + Send,
    ) {
        let plane = self.height * self.width;
        // Band b: the output rows of tile rows b * BAND.. in every output channel.
        let bands = channel_bands(out, plane, 2 * BAND * self.width);
        per_band(bands, |band, mut out| {
            rows(band * BAND..((band + 1) * BAND).min(self.rows), &mut out);
        });
    }

    /// Tile rows `rows` into `out` (each output channel's rows from `2 * rows.start`) with the
    /// build's baseline instructions.
    fn convolve_rows(
        &self,
        image: &[f32],
        u: &[[f32; CHANNELS]],
        epilogue: Epilogue,
        rows: Range<usize>,
        out: &mut [&mut [Unwritten]],
    ) {
        #[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
        {
            self.convolve_rows_relaxed(image, u, epilogue, rows, out);
            return;
        }
        #[allow(unreachable_code)] // in the build with relaxed SIMD
        self.convolve_rows_with::<false>(image, u, epilogue, rows, out);
    }

    #[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
    #[target_feature(enable = "relaxed-simd")]
    fn convolve_rows_relaxed(
        &self,
        image: &[f32],
        u: &[[f32; CHANNELS]],
        epilogue: Epilogue,
        rows: Range<usize>,
        out: &mut [&mut [Unwritten]],
    ) {
        self.convolve_rows_with::<true>(image, u, epilogue, rows, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn convolve_rows_avx2_fma(
        &self,
        image: &[f32],
        u: &[[f32; CHANNELS]],
        epilogue: Epilogue,
        rows: Range<usize>,
        out: &mut [&mut [Unwritten]],
    ) {
        self.convolve_rows_with::<true>(image, u, epilogue, rows, out);
    }

    /// [`Tiles::convolve_rows`] a row of tiles at a time: transform the row's inputs, sum
    /// `U * V` over input channels for each position, four output channels by `LANES` tiles at a
    /// time, and write `A^T M A + bias`.
    #[inline(always)]
    fn convolve_rows_with<const FMA: bool>(
        &self,
        image: &[f32],
        u: &[[f32; CHANNELS]],
        epilogue: Epilogue,
        rows: Range<usize>,
        out: &mut [&mut [Unwritten]],
    ) {
        let c_out = out.len();
        let first_row = 2 * rows.start;
        let mut scratch = self.row_scratch();
        let mut transformed = Transformed::take(self.transformed_len());
        let v = transformed.values();
        for row in rows {
            self.transform_row(image, row, &mut scratch, v);
            for col in (0..self.cols_padded).step_by(LANES) {
                for group in 0..c_out.div_ceil(CHANNELS) {
                    let mut m = [[[0.0f32; LANES]; CHANNELS]; POSITIONS];
                    for (position, sums) in m.iter_mut().enumerate() {
                        // A local accumulator stays in registers.
                        let mut acc = [[0.0f32; LANES]; CHANNELS];
                        let weights = &u[(group * POSITIONS + position) * self.c_in..][..self.c_in];
                        let tiles = self.block_inputs(v, col, position);
                        for (w, values) in weights.iter().zip(tiles.as_chunks::<LANES>().0) {
                            madd_block::<FMA>(&mut acc, w, values);
                        }
                        *sums = acc;
                    }
                    let channels = CHANNELS.min(c_out - group * CHANNELS);
                    for c in 0..channels {
                        let o = group * CHANNELS + c;
                        let y = output_transform(&m, c);
                        self.write_tiles(&mut out[o][..], row, first_row, col, y, epilogue, o);
                    }
                }
            }
        }
    }

    /// Writes the 2x2 outputs of `LANES` tiles (`y[i][j]`: output row i, column j of each tile)
    /// of output channel `channel`, after `epilogue`, where they fall inside the image, into
    /// rows that start at output row `first_row`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)] // the inner step's state, one call site per kernel
    fn write_tiles(
        &self,
        out: &mut [Unwritten],
        row: usize,
        first_row: usize,
        col: usize,
        y: [[Lanes; 2]; 2],
        epilogue: Epilogue,
        channel: usize,
    ) {
        let bias = epilogue.bias(channel);
        for (i, pair) in y.iter().enumerate() {
            let out_row = 2 * row + i;
            if out_row >= self.height {
                break;
            }
            let first = 2 * col;
            let count = (2 * LANES).min(self.width.saturating_sub(first));
            let mut interleaved = [0.0f32; 2 * LANES];
            for l in 0..LANES {
                interleaved[2 * l] = epilogue.activate(pair[0][l] + bias);
                interleaved[2 * l + 1] = epilogue.activate(pair[1][l] + bias);
            }
            let at = (out_row - first_row) * self.width + first;
            if count == 2 * LANES {
                // A whole block: a store of known length, not a call to copy `count` values.
                out[at..at + 2 * LANES].write_copy_of_slice(&interleaved);
            } else {
                out[at..at + count].write_copy_of_slice(&interleaved[..count]);
            }
        }
    }
}

/// `A^T M A` for `LANES` tiles: with `A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]`, row 0 adds the first
/// three and row 1 takes the second minus the last two, down then across.
#[inline(always)]
fn output_transform(m: &[[Lanes; CHANNELS]; POSITIONS], c: usize) -> [[Lanes; 2]; 2] {
    let mut rows = [[[0.0; LANES]; 4]; 2];
    for k in 0..4 {
        let [m0, m1, m2, m3] = [m[k][c], m[4 + k][c], m[8 + k][c], m[12 + k][c]];
        rows[0][k] = add(add(m0, m1), m2);
        rows[1][k] = sub(sub(m1, m2), m3);
    }
    rows.map(|[t0, t1, t2, t3]| [add(add(t0, t1), t2), sub(sub(t1, t2), t3)])
}

#[inline(always)]
fn add(mut a: Lanes, b: Lanes) -> Lanes {
    for l in 0..LANES {
        a[l] += b[l];
    }
    a
}

#[inline(always)]
fn sub(mut a: Lanes, b: Lanes) -> Lanes {
    for l in 0..LANES {
        a[l] -= b[l];
    }
    a
}
