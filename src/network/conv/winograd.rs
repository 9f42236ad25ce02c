//! Winograd's minimal filtering for stride-1 3x3 convolutions (A. Lavin and S. Gray, "Fast
//! Algorithms for Convolutional Neural Networks", CVPR 2016): F(4x4, 3x3).
//!
//! Each 4x4 block of outputs comes from a 6x6 block of inputs as
//! `A^T [(G g G^T) * (B^T d B)] A`: 36 multiplications per input and output channel for 16
//! outputs, where the direct form takes 144. The weights are transformed once per call
//! (`U = G g G^T`), the input once per tile and channel (`V = B^T d B`), and the products are
//! summed over input channels for each of the 36 positions, a group of output channels by a
//! block of tiles at a time, before the output transform. The transforms are Lavin and Gray's
//! (`G` below, `B^T` and `A^T` at [`input_transform`] and [`inverse_transform`]); their larger
//! constants round more than F(2x2, 3x3)'s, still far below the model's tolerance in f32
//! (about 1e-6 of each sum's magnitude, checked by the tests against Burn's convolution).
//!
//! Two forms share the tiling and the weights: four output channels by [`LANES`] tiles as plain
//! arrays that LLVM turns into SIMD (wasm's simd128 and relaxed SIMD, AVX2, SSE), and sixteen
//! by sixteen with AVX-512 intrinsics ([`avx512`]). Each padded input row is split into its
//! columns modulo 4, so that a tile's six inputs along a row for consecutive tiles are six
//! contiguous loads.

use std::cell::Cell;
use std::ops::Range;

use super::{
    CHANNELS, Epilogue, Kernel, LANES, Shape4, Unwritten, channel_bands, madd_block, per_band,
    per_image, unwritten, written, zero_outside,
};
#[cfg(target_arch = "x86_64")]
use super::{avx2_fma, avx512};

#[cfg(target_arch = "x86_64")]
mod avx512;

/// Outputs along each side of a tile, and inputs along each side of its input block.
const OUT: usize = 4;
const IN: usize = 6;

/// Positions in a transformed 6x6 tile.
const POSITIONS: usize = IN * IN;

/// Tile rows per band of output rows computed by one thread (16 output rows).
const BAND: usize = 4;

/// `LANES` values, one per tile.
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

/// [`winograd3x3`] with the given kernel, which the CPU must run (see [`Kernel::available`]).
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
            convolve(x, shape, weight, c_out, LANES, |tiles, x, u, rows, out| {
                // SAFETY: the CPU has AVX2 and FMA (asserted above).
                unsafe { tiles.convolve_rows_avx2_fma(x, u, epilogue, rows, out) }
            })
        }
        Kernel::Baseline => convolve(x, shape, weight, c_out, LANES, |tiles, x, u, rows, out| {
            tiles.convolve_rows(x, u, epilogue, rows, out)
        }),
    }
}

/// Every image tiled by `lanes` tiles, its weights transformed in groups of `N` output
/// channels, and its bands of tile rows computed by `rows` (in parallel natively) into each
/// output channel's rows from `4 * rows.start`.
fn convolve<const N: usize>(
    x: &[f32],
    shape: Shape4,
    weight: &[f32],
    c_out: usize,
    lanes: usize,
    rows: impl Fn(&Tiles, &[f32], &[[f32; N]], Range<usize>, &mut [&mut [Unwritten]]) + Sync + Send,
) -> Vec<f32> {
    let [batch, c_in, height, width] = shape;
    let tiles = Tiles::new(shape, lanes);
    let u = transform_weights::<N>(weight, c_in, c_out);
    let plane = height * width;
    let image_out = c_out * plane;
    let mut out = unwritten(batch * image_out);
    per_image(x, c_in * plane, &mut out, image_out, |x, out| {
        // Band b: the output rows of tile rows b * BAND.. in every output channel.
        let bands = channel_bands(out, plane, OUT * BAND * width);
        per_band(bands, |band, mut out| {
            let range = band * BAND..((band + 1) * BAND).min(tiles.rows);
            rows(&tiles, x, &u, range, &mut out);
        });
    });
    // SAFETY: the bands cover every tile row, the blocks of tiles every column, and each tile
    // writes its outputs inside the image, of every output channel and image.
    unsafe { written(out) }
}

/// `U = G g G^T` (6x6) for every pair of channels, grouped as `[c_out / N][36][c_in][N]`
/// (channels past `c_out` zero) so that the `N` output channels of one product are adjacent.
fn transform_weights<const N: usize>(weight: &[f32], c_in: usize, c_out: usize) -> Vec<[f32; N]> {
    const G: [[f64; 3]; IN] = [
        [1.0 / 4.0, 0.0, 0.0],
        [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
        [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
        [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
        [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
        [0.0, 0.0, 1.0],
    ];
    let groups = c_out.div_ceil(N);
    let mut u = vec![[0.0; N]; groups * POSITIONS * c_in];
    for o in 0..c_out {
        for i in 0..c_in {
            let g = &weight[(o * c_in + i) * 9..][..9];
            // G g (6x3), then (G g) G^T (6x6), in f64 so that only the final value rounds.
            let gg: [[f64; 3]; IN] = std::array::from_fn(|r| {
                std::array::from_fn(|b| (0..3).map(|a| G[r][a] * f64::from(g[a * 3 + b])).sum())
            });
            for (r, gg_row) in gg.iter().enumerate() {
                for (c, g_row) in G.iter().enumerate() {
                    let value: f64 = (0..3).map(|b| gg_row[b] * g_row[b]).sum();
                    u[((o / N) * POSITIONS + r * IN + c) * c_in + i][o % N] = value as f32;
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

/// The tiling of one image: 4x4 output tiles, rows of them padded to whole blocks of `lanes`
/// tiles (the tiles one vector, or a few, hold).
struct Tiles {
    c_in: usize,
    height: usize,
    width: usize,
    /// Tiles per block.
    lanes: usize,
    /// Tile rows.
    rows: usize,
    /// Tile columns, rounded up to whole blocks.
    cols_padded: usize,
}

impl Tiles {
    fn new([_, c_in, height, width]: Shape4, lanes: usize) -> Self {
        Self {
            c_in,
            height,
            width,
            lanes,
            rows: height.div_ceil(OUT),
            cols_padded: width.div_ceil(OUT).next_multiple_of(lanes),
        }
    }

    /// Length of one padded row's columns of one residue modulo 4 (one more than the tile
    /// columns: a tile's last two inputs are the next tile's first two).
    fn quarter_len(&self) -> usize {
        self.cols_padded + 1
    }

    /// Scratch for one channel's six padded input rows, each split into its columns modulo 4
    /// (`[6][4][quarter_len]`). Zeroed once: the columns that are padding are never written,
    /// so they stay zero.
    fn row_scratch(&self) -> Vec<f32> {
        vec![0.0; IN * 4 * self.quarter_len()]
    }

    /// Length of a row of tiles' transformed inputs: `[cols_padded / lanes][36][c_in][lanes]`,
    /// so that what one block of tiles multiplies is contiguous.
    fn transformed_len(&self) -> usize {
        POSITIONS * self.c_in * self.cols_padded
    }

    /// Where the transformed inputs of input channel `c` at `position` for the block of tiles
    /// from tile column `col` start in a row's transformed inputs.
    #[inline(always)]
    fn transformed_at(&self, col: usize, position: usize, c: usize) -> usize {
        (((col / self.lanes) * POSITIONS + position) * self.c_in + c) * self.lanes
    }

    /// The transformed inputs of the block of tiles from tile column `col` at `position`:
    /// `[c_in][lanes]`, contiguous.
    #[inline(always)]
    fn block_inputs<'v>(&self, v: &'v [f32], col: usize, position: usize) -> &'v [f32] {
        &v[self.transformed_at(col, position, 0)..][..self.c_in * self.lanes]
    }

    /// Padded row `padded_row` of channel `c` into `quarters` (`[4][quarter_len]`): padded
    /// column `4j + k` is `quarters[k][j]`, and padded (row, column) is input (row - 1,
    /// column - 1).
    #[inline(always)]
    fn split_row(&self, image: &[f32], c: usize, padded_row: usize, quarters: &mut [f32]) {
        let Some(y) = padded_row.checked_sub(1).filter(|&y| y < self.height) else {
            quarters.fill(0.0);
            return;
        };
        let row = &image[(c * self.height + y) * self.width..][..self.width];
        let (q0, rest) = quarters.split_at_mut(self.quarter_len());
        let (q1, rest) = rest.split_at_mut(self.quarter_len());
        let (q2, q3) = rest.split_at_mut(self.quarter_len());
        // Input column 4j + m is padded column 4j + m + 1: q1[j], q2[j], q3[j] for m = 0, 1, 2
        // and q0[j + 1] for m = 3. Whole groups of four in one loop without branches.
        let groups = row.chunks_exact(4);
        let (n, rest) = (groups.len(), groups.remainder());
        #[cfg(target_arch = "wasm32")]
        let done = simd128::split_groups(row, [&mut *q0, &mut *q1, &mut *q2, &mut *q3]);
        #[cfg(not(target_arch = "wasm32"))]
        let done = 0;
        let targets = q1[done..]
            .iter_mut()
            .zip(&mut q2[done..])
            .zip(&mut q3[done..]);
        let groups = targets.zip(&mut q0[done + 1..=n]).zip(groups.skip(done));
        for ((((a, b), c), d), four) in groups {
            (*a, *b, *c, *d) = (four[0], four[1], four[2], four[3]);
        }
        for (quarter, &value) in [q1, q2, q3].into_iter().zip(rest) {
            quarter[n] = value;
        }
    }

    /// The tile columns, whole blocks of `lanes`, that tile row `row` computes: every block
    /// holding a column that one of its output rows computes (see [`Epilogue::columns`]).
    fn active_blocks(&self, row: usize, epilogue: &Epilogue) -> Range<usize> {
        let rows = OUT * row..(OUT * row + OUT).min(self.height);
        let columns = epilogue.columns([self.height, self.width], rows);
        if columns.is_empty() {
            return 0..0;
        }
        let first = columns.start / OUT / self.lanes * self.lanes;
        let end = columns.end.div_ceil(OUT).next_multiple_of(self.lanes);
        first..end.min(self.cols_padded)
    }

    /// Zeros into tile row `row`'s output rows (in `out` from output row `first_row`) outside
    /// the columns each computes, over what the blocks of tiles wrote there.
    fn zero_outside(
        &self,
        out: &mut [&mut [Unwritten]],
        row: usize,
        first_row: usize,
        epilogue: &Epilogue,
    ) {
        if epilogue.active.is_none() {
            return;
        }
        for y in OUT * row..(OUT * row + OUT).min(self.height) {
            let columns = epilogue.columns([self.height, self.width], y..y + 1);
            for channel in out.iter_mut() {
                let at = (y - first_row) * self.width;
                zero_outside(&mut channel[at..at + self.width], columns.clone());
            }
        }
    }

    /// `V = B^T d B` of tile row `row` for every input channel into `v` (see
    /// [`Tiles::transformed_len`]) for the blocks of tiles `blocks`, each channel's six input
    /// rows split into `scratch` first (see [`Tiles::row_scratch`]).
    #[inline(always)]
    fn transform_row(
        &self,
        image: &[f32],
        row: usize,
        scratch: &mut [f32],
        v: &mut [f32],
        blocks: Range<usize>,
    ) {
        let len = self.quarter_len();
        for c in 0..self.c_in {
            for (r, quarters) in scratch.chunks_exact_mut(4 * len).enumerate() {
                self.split_row(image, c, OUT * row + r, quarters);
            }
            for col in blocks.clone().step_by(LANES) {
                // d B for each of the block's six input rows, then B^T (d B) down each column.
                let t = [
                    transformed_row(scratch, len, col, 0),
                    transformed_row(scratch, len, col, 1),
                    transformed_row(scratch, len, col, 2),
                    transformed_row(scratch, len, col, 3),
                    transformed_row(scratch, len, col, 4),
                    transformed_row(scratch, len, col, 5),
                ];
                #[allow(clippy::needless_range_loop)] // k picks a column across the rows
                for k in 0..IN {
                    let column = [t[0][k], t[1][k], t[2][k], t[3][k], t[4][k], t[5][k]];
                    for (r, values) in input_transform(column).iter().enumerate() {
                        let at = self.transformed_at(col, r * IN + k, c);
                        v[at..at + LANES].copy_from_slice(values);
                    }
                }
            }
        }
    }

    /// Tile rows `rows` into `out` (each output channel's rows from `4 * rows.start`) with the
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
    /// time, and write `A^T M A` after the epilogue.
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
        let first_row = OUT * rows.start;
        let mut scratch = self.row_scratch();
        let mut transformed = Transformed::take(self.transformed_len());
        let v = transformed.values();
        // The sums of one block of tiles: `[position][output channel]`.
        let mut m = [[[0.0f32; LANES]; CHANNELS]; POSITIONS];
        for row in rows {
            let blocks = self.active_blocks(row, &epilogue);
            if !blocks.is_empty() {
                self.transform_row(image, row, &mut scratch, v, blocks.clone());
            }
            for col in blocks.step_by(LANES) {
                for (group, weights) in u.chunks_exact(POSITIONS * self.c_in).enumerate() {
                    for (position, sums) in m.iter_mut().enumerate() {
                        // A local accumulator stays in registers.
                        let mut acc = [[0.0f32; LANES]; CHANNELS];
                        let weights = &weights[position * self.c_in..][..self.c_in];
                        let tiles = self.block_inputs(v, col, position);
                        for (w, values) in weights.iter().zip(tiles.as_chunks::<LANES>().0) {
                            madd_block::<FMA>(&mut acc, w, values);
                        }
                        *sums = acc;
                    }
                    let first = group * CHANNELS;
                    for c in 0..CHANNELS.min(c_out - first) {
                        let y = output_transform(&m, c);
                        let channel = first + c;
                        self.write_tiles(
                            &mut out[channel][..],
                            row,
                            first_row,
                            col,
                            y,
                            epilogue,
                            channel,
                        );
                    }
                }
            }
            self.zero_outside(out, row, first_row, &epilogue);
        }
    }

    /// Writes the 4x4 outputs of `LANES` tiles (`y[i][j]`: output row i, column j of each
    /// tile) of output channel `channel`, after `epilogue`, where they fall inside the image,
    /// into rows that start at output row `first_row`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)] // the inner step's state, one call site per kernel
    fn write_tiles(
        &self,
        out: &mut [Unwritten],
        row: usize,
        first_row: usize,
        col: usize,
        y: [[Lanes; OUT]; OUT],
        epilogue: Epilogue,
        channel: usize,
    ) {
        let bias = epilogue.bias(channel);
        let first = OUT * col;
        let count = (OUT * LANES).min(self.width.saturating_sub(first));
        for (i, columns) in y.iter().enumerate() {
            let out_row = OUT * row + i;
            if out_row >= self.height {
                break;
            }
            let at = (out_row - first_row) * self.width + first;
            #[cfg(target_arch = "wasm32")]
            if count == OUT * LANES {
                let target = (&mut out[at..at + OUT * LANES]).try_into().unwrap();
                simd128::store_tiles(target, columns, bias, epilogue);
                continue;
            }
            let mut interleaved = [0.0f32; OUT * LANES];
            for (l, tile) in interleaved.as_chunks_mut::<OUT>().0.iter_mut().enumerate() {
                for (j, value) in tile.iter_mut().enumerate() {
                    *value = epilogue.activate(columns[j][l] + bias);
                }
            }
            if count == OUT * LANES {
                // A whole block: a store of known length, not a call to copy `count` values.
                out[at..at + OUT * LANES].write_copy_of_slice(&interleaved);
            } else {
                out[at..at + count].write_copy_of_slice(&interleaved[..count]);
            }
        }
    }
}

// The transforms' steps are functions that are always inlined, not closures: a closure is
// compiled without the target features of the kernel it is written in (relaxed SIMD, AVX2), and
// LLVM left those closures as calls that passed their vectors through memory (in wasm, each copy
// a call out of the module).

/// `d B` of input row `r` (of six) of the block of `LANES` tiles from tile column `col`, from
/// the rows split in `scratch` (see [`Tiles::row_scratch`]; `len`: [`Tiles::quarter_len`]).
#[inline(always)]
fn transformed_row(scratch: &[f32], len: usize, col: usize, r: usize) -> [Lanes; IN] {
    let quarters = &scratch[r * 4 * len..];
    input_transform([
        load_column(quarters, len, col, 0),
        load_column(quarters, len, col, 1),
        load_column(quarters, len, col, 2),
        load_column(quarters, len, col, 3),
        load_column(quarters, len, col, 4),
        load_column(quarters, len, col, 5),
    ])
}

/// Input `k` (of six) along one row of `LANES` tiles from tile column `col` (padded column
/// `4j + k` of each tile j), from that row's four residues modulo 4 (`quarters`, `[4][len]`).
#[inline(always)]
fn load_column(quarters: &[f32], len: usize, col: usize, k: usize) -> Lanes {
    let at = (k % 4) * len + col + k / 4;
    quarters[at..at + LANES].try_into().unwrap()
}

/// `B^T d` for six vectors of tiles: the rows of
/// `[4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]`.
#[inline(always)]
fn input_transform([d0, d1, d2, d3, d4, d5]: [Lanes; IN]) -> [Lanes; IN] {
    let (d1_minus_d3, d4_minus_d2) = (sub(d1, d3), sub(d4, d2));
    [
        add(scale(4.0, d0), sub(d4, scale(5.0, d2))),
        sub(add(d3, d4), scale(4.0, add(d1, d2))),
        add(scale(4.0, sub(d1, d2)), sub(d4, d3)),
        sub(d4_minus_d2, scale(2.0, d1_minus_d3)),
        add(d4_minus_d2, scale(2.0, d1_minus_d3)),
        add(scale(4.0, d1), sub(d5, scale(5.0, d3))),
    ]
}

/// `A^T m` for six vectors: the rows of
/// `[1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]`.
#[inline(always)]
fn inverse_transform([m0, m1, m2, m3, m4, m5]: [Lanes; IN]) -> [Lanes; OUT] {
    let (sum12, diff12, sum34, diff34) = (add(m1, m2), sub(m1, m2), add(m3, m4), sub(m3, m4));
    [
        add(add(m0, sum12), sum34),
        add(diff12, scale(2.0, diff34)),
        add(sum12, scale(4.0, sum34)),
        add(add(diff12, scale(8.0, diff34)), m5),
    ]
}

/// `A^T M A` of channel `c` for `LANES` tiles: `y[i][j]` is output row i, column j of each
/// tile.
#[inline(always)]
fn output_transform(m: &[[Lanes; CHANNELS]; POSITIONS], c: usize) -> [[Lanes; OUT]; OUT] {
    // A^T M: each column k of M down its six rows, then (A^T M) A along each row.
    let columns = [
        transformed_column(m, c, 0),
        transformed_column(m, c, 1),
        transformed_column(m, c, 2),
        transformed_column(m, c, 3),
        transformed_column(m, c, 4),
        transformed_column(m, c, 5),
    ];
    [
        transformed_along(&columns, 0),
        transformed_along(&columns, 1),
        transformed_along(&columns, 2),
        transformed_along(&columns, 3),
    ]
}

/// `A^T` applied down column `k` of channel `c`'s sums `m`.
#[inline(always)]
fn transformed_column(m: &[[Lanes; CHANNELS]; POSITIONS], c: usize, k: usize) -> [Lanes; OUT] {
    inverse_transform([
        m[k][c],
        m[IN + k][c],
        m[2 * IN + k][c],
        m[3 * IN + k][c],
        m[4 * IN + k][c],
        m[5 * IN + k][c],
    ])
}

/// `A` applied along output row `i` of the columns `A^T M`.
#[inline(always)]
fn transformed_along(columns: &[[Lanes; OUT]; IN], i: usize) -> [Lanes; OUT] {
    inverse_transform([
        columns[0][i],
        columns[1][i],
        columns[2][i],
        columns[3][i],
        columns[4][i],
        columns[5][i],
    ])
}

/// Two steps LLVM compiled to single values in wasm, a lane extracted or inserted for each,
/// written as 4x4 transposes of vectors: splitting a row by columns modulo 4, and storing a row
/// of outputs of `LANES` tiles.
#[cfg(target_arch = "wasm32")]
mod simd128 {
    use super::{Epilogue, LANES, Lanes, OUT, Unwritten};
    use core::arch::wasm32::{f32x4_add, f32x4_splat, i32x4_shuffle, v128, v128_load, v128_store};

    /// The transpose of the 4x4 matrix whose rows are the four vectors.
    #[inline(always)]
    fn transpose([a, b, c, d]: [v128; 4]) -> [v128; 4] {
        let ab_low = i32x4_shuffle::<0, 4, 1, 5>(a, b);
        let ab_high = i32x4_shuffle::<2, 6, 3, 7>(a, b);
        let cd_low = i32x4_shuffle::<0, 4, 1, 5>(c, d);
        let cd_high = i32x4_shuffle::<2, 6, 3, 7>(c, d);
        [
            i32x4_shuffle::<0, 1, 4, 5>(ab_low, cd_low),
            i32x4_shuffle::<2, 3, 6, 7>(ab_low, cd_low),
            i32x4_shuffle::<0, 1, 4, 5>(ab_high, cd_high),
            i32x4_shuffle::<2, 3, 6, 7>(ab_high, cd_high),
        ]
    }

    /// The first groups of four of `row`, sixteen values at a time, into `quarters` as
    /// [`super::Tiles::split_row`] lays them out (input column `4j + m` at `quarters[m + 1][j]`
    /// for m < 3, at `quarters[0][j + 1]` for m = 3); returns how many groups it split.
    #[inline(always)]
    pub(super) fn split_groups(row: &[f32], quarters: [&mut [f32]; 4]) -> usize {
        let [q0, q1, q2, q3] = quarters;
        let blocks = row.len() / 16;
        assert!(q0.len() > 4 * blocks && [&q1, &q2, &q3].iter().all(|q| q.len() >= 4 * blocks));
        for b in 0..blocks {
            // SAFETY: the loads read `row[16b..16b + 16]`, the stores `q[4b..4b + 4]` and
            // `q0[4b + 1..4b + 5]`, inside the slices (asserted above).
            unsafe {
                let groups: [v128; 4] =
                    std::array::from_fn(|g| v128_load(row.as_ptr().add(16 * b + 4 * g).cast()));
                let [m0, m1, m2, m3] = transpose(groups);
                v128_store(q1.as_mut_ptr().add(4 * b).cast(), m0);
                v128_store(q2.as_mut_ptr().add(4 * b).cast(), m1);
                v128_store(q3.as_mut_ptr().add(4 * b).cast(), m2);
                v128_store(q0.as_mut_ptr().add(4 * b + 1).cast(), m3);
            }
        }
        4 * blocks
    }

    /// `columns[j][l]` (output column j of tile l), plus `bias` and after `epilogue`, into
    /// `out` as tile after tile of four values: four 4x4 transposes.
    #[inline(always)]
    pub(super) fn store_tiles(
        out: &mut [Unwritten; OUT * LANES],
        columns: &[Lanes; OUT],
        bias: f32,
        epilogue: Epilogue,
    ) {
        let bias = f32x4_splat(bias);
        for quad in 0..LANES / 4 {
            // SAFETY: each load reads four floats of a column, each store writes four of `out`
            // (wasm loads and stores need no alignment).
            unsafe {
                let columns: [v128; OUT] = std::array::from_fn(|j| {
                    let value = v128_load(columns[j][4 * quad..].as_ptr().cast());
                    epilogue.activate_v128(f32x4_add(value, bias))
                });
                for (t, tile) in transpose(columns).into_iter().enumerate() {
                    let at = out[OUT * (4 * quad + t)..].as_mut_ptr().cast::<v128>();
                    v128_store(at, tile);
                }
            }
        }
    }
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

#[inline(always)]
fn scale(k: f32, mut a: Lanes) -> Lanes {
    for value in &mut a {
        *value *= k;
    }
    a
}
