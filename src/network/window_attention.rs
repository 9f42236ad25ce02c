//! The per-pixel passes of an MA-Res block's attention in the dense pass, as Burn operations.
//!
//! In the dense pass channel attention weighs each block of a map by the nearest window's
//! channel weights, spatial attention summarises the reweighted map over channels, and the block
//! ends with `relu(reweighted * spatial + identity)`. Written as Burn's operations that is a dozen
//! passes over maps of up to 16 x 1,152 x 1,152 values (pooling, broadcast products, a strided
//! mean over channels, a sum, a ReLU), each allocating its result: over a quarter of a dense
//! tile's time. On flex these two operations make it two passes without the reweighted map ever
//! being stored: the block statistics, then spatial attention and the block's end together, a
//! row at a time (see [`attended_residual_f32`]); other backends compose Burn's operations, as
//! autodiff does (the dense pass is inference only).
//!
//! Channel weights come per block, `[B, C, H / bh, W / bw]`: every pixel of a `bh` x `bw` block
//! takes its block's weight.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Cube, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::ops::ConvOptions;
use std::ops::Range;

#[cfg(target_arch = "x86_64")]
use crate::network::conv::avx2_fma;
use crate::network::conv::flex::{all_f32, shape, slice};
use crate::network::conv::{
    CHUNK, Unwritten, channel_bands, per_band, sum_taps, unwritten, written,
};

/// Backend operations for attention over the blocks of a map.
#[backend_extension(Autodiff, Cube, Flex, Fusion: cfg(not(target_arch = "wasm32")))]
pub trait WindowAttentionBackend: Backend {
    /// Average and maximum of each `block` x `block` square of each channel of `x` `[B, C, H, W]`:
    /// two `[B, C, H / block, W / block]` maps (rows and columns past the last whole block are
    /// left out, as pooling does).
    #[fusion(default)]
    fn block_avg_max(x: FloatTensor<Self>, block: usize) -> (FloatTensor<Self>, FloatTensor<Self>) {
        composed::block_avg_max::<Self>(x, block)
    }

    /// The end of an MA-Res block in the dense pass: `relu(r * sigmoid(conv_same(S, kernel)) +
    /// identity)` where `r = x * weights` is `x` `[B, C, H, W]` weighed per block, `S` `[B, 2, H,
    /// W]` its mean and maximum over channels (spatial attention's summary) and `kernel` `[1,
    /// 2, k, k]` spatial attention's fused kernel (k odd, zero padding k / 2).
    #[fusion(default)]
    fn attended_residual(
        x: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        kernel: FloatTensor<Self>,
        identity: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        composed::attended_residual::<Self>(x, weights, kernel, identity)
    }
}

/// The operations composed of Burn's own, on any backend: the trait's default bodies, and flex's
/// path for other element types.
mod composed {
    use super::*;

    pub fn block_avg_max<B: Backend>(
        x: FloatTensor<B>,
        block: usize,
    ) -> (FloatTensor<B>, FloatTensor<B>) {
        let square = [block, block];
        let avg = B::avg_pool2d(x.clone(), square, square, [0, 0], true, false);
        (avg, B::max_pool2d(x, square, square, [0, 0], [1, 1], false))
    }

    pub fn reweighted_summary<B: Backend>(
        x: FloatTensor<B>,
        weights: FloatTensor<B>,
    ) -> FloatTensor<B> {
        let reweighted = reweighted::<B>(x, weights);
        let mean = B::float_mean_dim(reweighted.clone(), 1);
        B::float_cat(vec![mean, B::float_max_dim(reweighted, 1)], 1)
    }

    pub fn reweighted_residual<B: Backend>(
        x: FloatTensor<B>,
        weights: FloatTensor<B>,
        spatial: FloatTensor<B>,
        identity: FloatTensor<B>,
    ) -> FloatTensor<B> {
        let attended = B::float_mul(reweighted::<B>(x, weights), spatial);
        B::relu(B::float_add(attended, identity))
    }

    pub fn attended_residual<B: Backend>(
        x: FloatTensor<B>,
        weights: FloatTensor<B>,
        kernel: FloatTensor<B>,
        identity: FloatTensor<B>,
    ) -> FloatTensor<B> {
        let summary = reweighted_summary::<B>(x.clone(), weights.clone());
        let pad = kernel.shape()[2] / 2;
        let same = ConvOptions::new([1, 1], [pad, pad], [1, 1], 1);
        let spatial = B::sigmoid(B::conv2d(summary, kernel, None, same));
        reweighted_residual::<B>(x, weights, spatial, identity)
    }

    /// `x` times its block's weight, with Burn's broadcasting.
    fn reweighted<B: Backend>(x: FloatTensor<B>, weights: FloatTensor<B>) -> FloatTensor<B> {
        let dims4 = |shape: burn::tensor::Shape| -> [usize; 4] {
            shape[..].try_into().expect("a 4-d tensor")
        };
        let [batch, channels, height, width] = dims4(x.shape());
        let [_, _, down, across] = dims4(weights.shape());
        let [bh, bw] = blocks([height, width], [down, across]);
        let blocks = B::float_reshape(x, [batch, channels, down, bh, across, bw].into());
        let weights = B::float_reshape(weights, [batch, channels, down, 1, across, 1].into());
        B::float_reshape(
            B::float_mul(blocks, weights),
            [batch, channels, height, width].into(),
        )
    }
}

/// Block sides for a `[height, width]` map and `[down, across]` blocks.
///
/// # Panics
/// Unless the blocks tile the map exactly.
fn blocks([height, width]: [usize; 2], [down, across]: [usize; 2]) -> [usize; 2] {
    assert!(
        down > 0 && across > 0 && height % down == 0 && width % across == 0,
        "{down}x{across} blocks do not tile a {height}x{width} map"
    );
    [height / down, width / across]
}

impl WindowAttentionBackend for Cube {}

impl<B: Backend, C: CheckpointStrategy> WindowAttentionBackend for Autodiff<B, C> {}

impl WindowAttentionBackend for Flex {
    fn block_avg_max(x: FloatTensor<Self>, block: usize) -> (FloatTensor<Self>, FloatTensor<Self>) {
        if !all_f32([&x]) {
            return composed::block_avg_max::<Flex>(x, block);
        }
        let x = x.to_contiguous();
        let [batch, channels, height, width] = shape(&x);
        let (avg, max) = block_avg_max_f32(slice(&x), [height, width], block);
        let blocks = [batch, channels, height / block, width / block];
        (tensor(avg, blocks), tensor(max, blocks))
    }

    fn attended_residual(
        x: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        kernel: FloatTensor<Self>,
        identity: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        if !all_f32([&x, &weights, &kernel, &identity]) {
            return composed::attended_residual::<Flex>(x, weights, kernel, identity);
        }
        let [x, weights, kernel, mut identity] =
            [x, weights, kernel, identity].map(|t| t.to_contiguous());
        let dims = shape(&x);
        let [_, _, down, across] = shape(&weights);
        let [_, _, k, _] = shape(&kernel);
        debug_assert_eq!(shape(&identity), dims);
        // Written over the block's input where nothing else holds it: the pass is bound by
        // memory, and a fresh buffer costs a read of each line before it is written.
        if let Some(storage) = identity
            .try_storage_mut::<f32>()
            .filter(|s| s.len() == slice(&x).len())
        {
            attended_residual_f32(
                [slice(&x), slice(&weights)],
                Residual::InPlace(storage),
                slice(&kernel),
                k,
                dims,
                [down, across],
            );
            return identity;
        }
        let mut out = unwritten(slice(&x).len());
        attended_residual_f32(
            [slice(&x), slice(&weights)],
            Residual::Into(slice(&identity), &mut out),
            slice(&kernel),
            k,
            dims,
            [down, across],
        );
        // SAFETY: the pass wrote every value.
        tensor(unsafe { written(out) }, dims)
    }
}

fn tensor(values: Vec<f32>, shape: [usize; 4]) -> FloatTensor<Flex> {
    FloatTensor::<Flex>::from_data(TensorData::new(values, shape))
}

/// [`WindowAttentionBackend::block_avg_max`] of planes `[planes][height][width]`. Whole rows are
/// added into column sums and maxima first (contiguous, so it vectorises), then each block's
/// columns are reduced once.
fn block_avg_max_f32(x: &[f32], [height, width]: [usize; 2], block: usize) -> (Vec<f32>, Vec<f32>) {
    let (down, across) = (height / block, width / block);
    let out = down * across;
    let planes = x.len() / (height * width);
    let (mut avg, mut max) = (vec![0.0; planes * out], vec![0.0; planes * out]);
    let area = (block * block) as f32;
    let tasks = x
        .chunks_exact(height * width)
        .zip(avg.chunks_exact_mut(out).zip(max.chunks_exact_mut(out)))
        .collect();
    per_band(tasks, |_, (plane, (avg, max))| {
        let (mut sums, mut maxima) = (vec![0.0f32; width], vec![0.0f32; width]);
        for (row_of_blocks, (avg, max)) in avg
            .chunks_exact_mut(across)
            .zip(max.chunks_exact_mut(across))
            .enumerate()
        {
            let rows = plane[row_of_blocks * block * width..][..block * width].chunks_exact(width);
            sums.fill(0.0);
            maxima.copy_from_slice(&plane[row_of_blocks * block * width..][..width]);
            for row in rows {
                for ((s, m), &v) in sums.iter_mut().zip(maxima.iter_mut()).zip(row) {
                    *s += v;
                    // A comparison and a select, which vectorise; `f32::max`'s NaN rule does not.
                    *m = if v > *m { v } else { *m };
                }
            }
            for (column, (avg, max)) in avg.iter_mut().zip(max.iter_mut()).enumerate() {
                let columns = column * block..(column + 1) * block;
                *avg = sums[columns.clone()].iter().sum::<f32>() / area;
                *max = maxima[columns].iter().fold(f32::MIN, |m, &v| m.max(v));
            }
        }
    });
    (avg, max)
}

/// Rows of an image per task of [`attended_residual_f32`], at least: each task computes the
/// summary of the kernel's reach of rows again on either side.
const MIN_BAND: usize = 64;

/// Where the end of a block reads its shortcut and writes its output.
enum Residual<'a> {
    /// From the shortcut's map into a separate buffer.
    Into(&'a [f32], &'a mut [Unwritten]),
    /// Over the shortcut's map.
    InPlace(&'a mut [f32]),
}

/// [`WindowAttentionBackend::attended_residual`] of `[x, weights]` and the shortcut's map in
/// `residual`, `x` and the shortcut of `shape`, `weights` `[batch, channels, down, across]`,
/// with `kernel` `[1, 2, k, k]`.
///
/// One pass down each band of rows: each row's summary over channels goes into a ring of the
/// kernel's `k` rows, and as soon as the ring holds an output row's reach, that row's attention
/// is convolved and its residual written. The residual reads the rows of `x` the summary read
/// `k / 2` rows before, still in cache, where three passes over the whole map read it from
/// memory twice.
fn attended_residual_f32(
    [x, weights]: [&[f32]; 2],
    residual: Residual,
    kernel: &[f32],
    k: usize,
    [_, channels, height, width]: [usize; 4],
    [down, across]: [usize; 2],
) {
    assert!(
        k % 2 == 1 && kernel.len() == 2 * k * k,
        "the kernel is not [1, 2, k, k] with k odd"
    );
    let block = blocks([height, width], [down, across]);
    let plane = height * width;
    let (identity, out) = match residual {
        Residual::Into(identity, out) => (Some(identity), out),
        // SAFETY: the values are initialised, and the pass writes only initialised values.
        Residual::InPlace(out) => (None, unsafe {
            &mut *(out as *mut [f32] as *mut [Unwritten])
        }),
    };
    assert_eq!(out.len(), x.len(), "the output is not the size of the map");
    #[cfg(not(target_arch = "wasm32"))]
    let threads = rayon::current_num_threads();
    #[cfg(target_arch = "wasm32")]
    let threads = 1;
    let band = height.div_ceil(threads).max(MIN_BAND);
    let images = x
        .chunks_exact(channels * plane)
        .zip(weights.chunks_exact(channels * down * across))
        .zip(out.chunks_exact_mut(channels * plane))
        .enumerate();
    for (i, ((image, weights), out)) in images {
        let pass = Attended {
            image,
            weights,
            identity: identity.map(|map| &map[i * channels * plane..][..channels * plane]),
            kernel,
            k,
            channels,
            height,
            width,
            block,
            across,
        };
        let bands = channel_bands(out, plane, band * width);
        per_band(bands, |b, mut out| {
            pass.band(b * band..((b + 1) * band).min(height), &mut out)
        });
    }
    // The bands cover every row of every channel, and `Attended::band_with` writes each of its
    // rows whole.
}

/// One image's end of block (see [`attended_residual_f32`]).
struct Attended<'a> {
    image: &'a [f32],
    weights: &'a [f32],
    /// The shortcut's map, or `None` where the output already holds it.
    identity: Option<&'a [f32]>,
    kernel: &'a [f32],
    k: usize,
    channels: usize,
    height: usize,
    width: usize,
    block: [usize; 2],
    across: usize,
}

impl Attended<'_> {
    /// Rows `rows` of every channel into `out` (each channel's rows from `rows.start`);
    /// natively compiled a second time for AVX2 with FMA where the CPU has them (the x86-64
    /// baseline has four lanes and no fused multiply-add).
    fn band(&self, rows: Range<usize>, out: &mut [&mut [Unwritten]]) {
        #[cfg(target_arch = "x86_64")]
        if avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked).
            unsafe { self.band_avx2_fma(rows, out) };
            return;
        }
        self.band_with::<false>(rows, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn band_avx2_fma(&self, rows: Range<usize>, out: &mut [&mut [Unwritten]]) {
        self.band_with::<true>(rows, out);
    }

    #[inline(always)]
    fn band_with<const FMA: bool>(&self, rows: Range<usize>, out: &mut [&mut [Unwritten]]) {
        let (k, pad, width) = (self.k, self.k / 2, self.width);
        // The summary's mean and maximum rows, `[2][k][row]`, zero past the image's columns.
        let row = width.next_multiple_of(CHUNK) + 2 * pad;
        let mut ring = vec![0.0f32; 2 * k * row];
        let mut spatial = vec![0.0f32; width.next_multiple_of(CHUNK)];
        let mut weight = vec![0.0f32; width];
        // Where each tap reads in the ring depends on the output row only modulo k.
        let taps: Vec<_> = (0..k).map(|phase| self.ring_taps(phase, row)).collect();
        // Padded row p is input row p - pad; output row y reads padded rows y ..= y + 2 pad.
        for p in rows.start..rows.end + 2 * pad {
            let (means, maxima) = ring.split_at_mut(k * row);
            let at = (p % k) * row + pad;
            let (mean, max) = (&mut means[at..][..width], &mut maxima[at..][..width]);
            match p.checked_sub(pad).filter(|&y| y < self.height) {
                Some(y) => self.summary(y, mean, max, &mut weight),
                None => {
                    mean.fill(0.0);
                    max.fill(0.0);
                }
            }
            if let Some(y) = p.checked_sub(2 * pad).filter(|&y| y >= rows.start) {
                self.attention::<FMA>(&taps[y % k], &ring, &mut spatial);
                self.residual(y, &spatial, out, y - rows.start, &mut weight);
            }
        }
    }

    /// Row `y`'s mean and maximum over channels of `x` weighed per block: the first channel
    /// starts them, every other adds to them.
    #[inline(always)]
    fn summary(&self, y: usize, mean: &mut [f32], max: &mut [f32], weight: &mut [f32]) {
        let width = self.width;
        let (mean, max, weight) = (&mut mean[..width], &mut max[..width], &mut weight[..width]);
        for c in 0..self.channels {
            let row = self.row(self.image, c, y);
            self.spread_weights(c, y, weight);
            if c == 0 {
                for i in 0..width {
                    mean[i] = row[i] * weight[i];
                    max[i] = mean[i];
                }
                continue;
            }
            for i in 0..width {
                let (v, m) = (row[i] * weight[i], max[i]);
                mean[i] += v;
                // A comparison and a select, which vectorise (`f32::max`'s NaN rule takes more),
                // and a store either way: a conditional store became a masked store, slow.
                max[i] = if v > m { v } else { m };
            }
        }
        let scale = 1.0 / self.channels as f32;
        mean.iter_mut().for_each(|s| *s *= scale);
    }

    /// The attention's taps for the output rows `y` with `y % k == phase`: tap (c, ky, kx)
    /// reads padded row y + ky, in slot (y + ky) % k of channel c's ring (`row` values each).
    fn ring_taps(&self, phase: usize, row: usize) -> Vec<(usize, f32)> {
        let k = self.k;
        self.kernel
            .iter()
            .enumerate()
            .map(|(t, &w)| {
                let (c, ky, kx) = (t / (k * k), t / k % k, t % k);
                ((c * k + (phase + ky) % k) * row + kx, w)
            })
            .collect()
    }

    /// `sigmoid(conv_same(S, kernel))` of one row into `spatial`, by its [`Attended::ring_taps`]:
    /// each chunk of outputs sums its taps in registers.
    #[inline(always)]
    fn attention<const FMA: bool>(&self, taps: &[(usize, f32)], ring: &[f32], spatial: &mut [f32]) {
        for x0 in (0..self.width).step_by(CHUNK) {
            let acc = sum_taps::<FMA>(ring, x0, taps);
            let out: &mut [f32; CHUNK] =
                (&mut spatial[x0..x0 + CHUNK]).try_into().expect("a chunk");
            for (o, &a) in out.iter_mut().zip(&acc) {
                *o = logistic(a);
            }
        }
    }

    /// `relu(x * w * spatial + identity)` of row `y` of every channel into row `at` of `out`.
    #[inline(always)]
    fn residual(
        &self,
        y: usize,
        spatial: &[f32],
        out: &mut [&mut [Unwritten]],
        at: usize,
        weight: &mut [f32],
    ) {
        let width = self.width;
        let (spatial, weight) = (&spatial[..width], &mut weight[..width]);
        for (c, out) in out.iter_mut().enumerate() {
            let x = self.row(self.image, c, y);
            let out = &mut out[at * width..][..width];
            self.spread_weights(c, y, weight);
            let attended = |i: usize| x[i] * weight[i] * spatial[i];
            match self.identity {
                Some(identity) => {
                    let identity = self.row(identity, c, y);
                    for i in 0..width {
                        let v = attended(i) + identity[i];
                        out[i].write(if v > 0.0 { v } else { 0.0 });
                    }
                }
                None => {
                    for (i, out) in out.iter_mut().enumerate() {
                        // SAFETY: in place, the output row holds the shortcut's, initialised.
                        let v = attended(i) + unsafe { out.assume_init() };
                        out.write(if v > 0.0 { v } else { 0.0 });
                    }
                }
            }
        }
    }

    /// Channel `c`'s weight for each pixel of row `y` into `weight`: loops along whole rows
    /// vectorise where loops over blocks of 8 to 32 pixels mostly did not.
    #[inline(always)]
    fn spread_weights(&self, c: usize, y: usize, weight: &mut [f32]) {
        let [_, bw] = self.block;
        for (pixels, &w) in weight.chunks_exact_mut(bw).zip(self.row_weights(c, y)) {
            pixels.fill(w);
        }
    }

    /// Row `y` of channel `c` of `map` (the image's `x` or `identity`).
    #[inline(always)]
    fn row<'m>(&self, map: &'m [f32], c: usize, y: usize) -> &'m [f32] {
        &map[(c * self.height + y) * self.width..][..self.width]
    }

    /// Channel `c`'s weights for the blocks along row `y`.
    #[inline(always)]
    fn row_weights(&self, c: usize, y: usize) -> &[f32] {
        let [bh, _] = self.block;
        let down = self.height / bh;
        &self.weights[(c * down + y / bh) * self.across..][..self.across]
    }
}

/// `1 / (1 + e^-x)`, with [`exp`] written so that it vectorises.
#[inline(always)]
fn logistic(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `e^x` within about two units in the last place (Cephes' `expf`: `x = n ln 2 + r` with
/// `|r| <= ln 2 / 2`, a degree-5 polynomial for `e^r`, and `2^n` built from its bits), in
/// operations that vectorise where the library's `expf` is a call per value. Clamped to the
/// normal range of f32: about 1.7e-38 below -87.3, about 2.4e38 above 88.3.
#[inline(always)]
fn exp(x: f32) -> f32 {
    // 1.5 * 2^23: adding it rounds to an integer held in the low bits of the mantissa.
    const ROUND: f32 = 12_582_912.0;
    let x = if x < -87.3 { -87.3 } else { x };
    let x = if x > 88.3 { 88.3 } else { x };
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    // ln 2 in two parts, so that n ln 2 is subtracted without rounding away r.
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_2e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 0.166_666_65;
    let p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    // `shifted`'s bits are those of ROUND plus n; n + 127 into the exponent field is 2^n.
    let two_n = f32::from_bits(
        shifted
            .to_bits()
            .wrapping_sub(ROUND.to_bits())
            .wrapping_add(127)
            << 23,
    );
    e_r * two_n
}

/// `x`'s average and maximum over each `block` x `block` square (see
/// [`WindowAttentionBackend::block_avg_max`]).
pub fn block_avg_max(x: Tensor<4>, block: usize) -> (Tensor<4>, Tensor<4>) {
    let (avg, max) = Dispatch::block_avg_max(x.into_dispatch(), block);
    (Tensor::from_dispatch(avg), Tensor::from_dispatch(max))
}

/// The end of an MA-Res block in the dense pass, spatial attention included (see
/// [`WindowAttentionBackend::attended_residual`]).
pub fn attended_residual(
    x: Tensor<4>,
    weights: Tensor<4>,
    kernel: Tensor<4>,
    identity: Tensor<4>,
) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::attended_residual(
        x.into_dispatch(),
        weights.into_dispatch(),
        kernel.into_dispatch(),
        identity.into_dispatch(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    fn random(shape: [usize; 4]) -> Tensor<4> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Device::flex())
    }

    fn assert_close(actual: &[f32], expected: &[f32], what: &str) {
        assert_eq!(actual.len(), expected.len(), "{what}: lengths");
        for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
            assert!(
                (a - e).abs() < 1e-5 * (1.0 + e.abs()),
                "{what}[{i}]: {a} vs {e}"
            );
        }
    }

    /// A batch of two, channel and block counts that are not powers of two, rows and columns
    /// past the last whole block (for pooling), blocks of one pixel, maps shorter than the
    /// kernel's reach and one tall enough for several bands of rows.
    #[test]
    fn flex_computes_what_burns_operations_compose() {
        // Autodiff routes each operation to the trait's default body, Burn's own operations.
        for (shape, block, k) in [
            ([2, 3, 20, 15], 5, 7),
            ([1, 5, 9, 12], 3, 3),
            ([1, 2, 4, 6], 1, 7),
            ([1, 3, 200, 40], 8, 5),
        ] {
            let x = random(shape);
            let (avg, max) = block_avg_max(x.clone(), block);
            let (burn_avg, burn_max) = block_avg_max(x.clone().autodiff(), block);
            let what = format!("{shape:?} in blocks of {block}");
            assert_close(&values(avg), &values(burn_avg), &format!("avg {what}"));
            assert_close(&values(max), &values(burn_max), &format!("max {what}"));

            let [batch, channels, height, width] = shape;
            let (height, width) = (height / block * block, width / block * block);
            let x = random([batch, channels, height, width]);
            let weights = random([batch, channels, height / block, width / block]);
            let kernel = random([1, 2, k, k]);
            let identity = random([batch, channels, height, width]);
            let fused =
                attended_residual(x.clone(), weights.clone(), kernel.clone(), identity.clone());
            let composed = attended_residual(
                x.clone().autodiff(),
                weights.clone().autodiff(),
                kernel.clone().autodiff(),
                identity.clone().autodiff(),
            );
            let what = format!("end of block, {what}, {k}x{k} kernel");
            let fused = values(fused);
            assert_close(&fused, &values(composed), &what);

            // Written over the shortcut's map, the same values.
            let mut in_place = values(identity);
            attended_residual_f32(
                [&values(x), &values(weights)],
                Residual::InPlace(&mut in_place),
                &values(kernel),
                k,
                [batch, channels, height, width],
                [height / block, width / block],
            );
            assert_eq!(in_place, fused, "{what}, in place");
        }
    }

    #[test]
    fn the_vector_exponential_is_close_to_f64s() {
        // Across the range where e^x is a normal f32, in steps that are not multiples of ln 2.
        let mut x = -87.0f32;
        while x < 88.0 {
            let exact = f64::from(x).exp();
            let relative = (f64::from(exp(x)) - exact).abs() / exact;
            assert!(relative < 3e-7, "e^{x}: {} against {exact}", exp(x));
            x += 0.0137;
        }
        // Clamped, never infinite or NaN: the sigmoid of any finite input is finite.
        assert!(exp(-1000.0) > 0.0 && exp(1000.0).is_finite());
        assert!((0.0..1e-30).contains(&logistic(-1000.0)));
        assert_eq!(logistic(1000.0), 1.0);
        assert_eq!(logistic(0.0), 0.5);
    }

    #[test]
    fn a_hand_computed_map() {
        // One channel pair, 2x4 pixels in two 2x2 blocks weighed 1 and -2.
        let device = Device::flex();
        let x = Tensor::<4>::from_data(
            TensorData::new(
                vec![
                    1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, -1.0, 0.0, 1.0, 0.5, 2.0, 1.0, 0.0, 3.0,
                ],
                [1, 2, 2, 4],
            ),
            &device,
        );
        let (avg, max) = block_avg_max(x.clone(), 2);
        assert_eq!(values(avg), [3.5, 5.5, 0.5, 1.125]);
        assert_eq!(values(max), [6.0, 8.0, 2.0, 3.0]);
        let weights = Tensor::<4>::from_data(
            TensorData::new(vec![1.0, -2.0, 1.0, -2.0], [1, 2, 1, 2]),
            &device,
        );
        // A 1x1 kernel that takes the summary's maximum alone: the attention is its sigmoid.
        let kernel = Tensor::<4>::from_data(TensorData::new(vec![0.0, 1.0], [1, 2, 1, 1]), &device);
        let identity = Tensor::<4>::full([1, 2, 2, 4], 0.5, &device);
        let out = values(attended_residual(x, weights, kernel, identity));
        // Pixel (0, 0): 1 and -1 weighed by 1, their maximum 1; pixel (0, 2): 3 and 1 weighed
        // by -2, their maximum -2. Each is x * w * sigmoid(maximum) + 0.5, cut at zero.
        let (at_1, at_minus_2) = (1.0 / (1.0 + (-1.0f32).exp()), 1.0 / (1.0 + 2.0f32.exp()));
        let expected = [
            (0, 1.0 * at_1 + 0.5),
            (8, 0.0),
            (2, 0.0),
            (10, -2.0 * at_minus_2 + 0.5),
        ];
        for (at, value) in expected {
            assert!(
                (out[at] - value).abs() < 1e-6,
                "[{at}]: {} vs {value}",
                out[at]
            );
        }
    }
}
