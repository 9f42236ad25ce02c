//! The per-pixel passes of an MA-Res block's attention in the dense pass, as Burn operations.
//!
//! In the dense pass channel attention weighs each block of a map by the nearest window's
//! channel weights, spatial attention summarises the reweighted map over channels, and the block
//! ends with `relu(reweighted * spatial + identity)`. Written as Burn's operations that is a dozen
//! passes over maps of up to 16 x 1,152 x 1,152 values (pooling, broadcast products, a strided
//! mean over channels, a sum, a ReLU), each allocating its result: over a quarter of a dense
//! tile's time. On flex these three operations make it three passes (block statistics, the
//! summary, the residual) without the reweighted map ever being stored; other backends compose
//! Burn's operations, as autodiff does (the dense pass is inference only).
//!
//! Channel weights come per block, `[B, C, H / bh, W / bw]`: every pixel of a `bh` x `bw` block
//! takes its block's weight.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Cube, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::prelude::*;
use burn::tensor::TensorData;

#[cfg(target_arch = "x86_64")]
use crate::network::conv::avx2_fma;
use crate::network::conv::flex::{all_f32, shape, slice};
use crate::network::conv::{Unwritten, per_band, unwritten, written};

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

    /// Mean and maximum over channels of `x` `[B, C, H, W]` weighed by `weights` per block:
    /// `[B, 2, H, W]`, spatial attention's summary of the reweighted map.
    #[fusion(default)]
    fn reweighted_summary(x: FloatTensor<Self>, weights: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::reweighted_summary::<Self>(x, weights)
    }

    /// `relu(x * weights * spatial + identity)` with `weights` per block and `spatial`
    /// `[B, 1, H, W]` per pixel: the end of an MA-Res block.
    #[fusion(default)]
    fn reweighted_residual(
        x: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        spatial: FloatTensor<Self>,
        identity: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        composed::reweighted_residual::<Self>(x, weights, spatial, identity)
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

    fn reweighted_summary(x: FloatTensor<Self>, weights: FloatTensor<Self>) -> FloatTensor<Self> {
        if !all_f32([&x, &weights]) {
            return composed::reweighted_summary::<Flex>(x, weights);
        }
        let (x, weights) = (x.to_contiguous(), weights.to_contiguous());
        let [batch, channels, height, width] = shape(&x);
        let [_, _, down, across] = shape(&weights);
        let out = reweighted_summary_f32(
            slice(&x),
            slice(&weights),
            [batch, channels, height, width],
            [down, across],
        );
        tensor(out, [batch, 2, height, width])
    }

    fn reweighted_residual(
        x: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        spatial: FloatTensor<Self>,
        identity: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        if !all_f32([&x, &weights, &spatial, &identity]) {
            return composed::reweighted_residual::<Flex>(x, weights, spatial, identity);
        }
        let [x, weights, spatial, identity] =
            [x, weights, spatial, identity].map(|t| t.to_contiguous());
        let dims @ [_, _, height, width] = shape(&x);
        let [_, _, down, across] = shape(&weights);
        let out = reweighted_residual_f32(
            [
                slice(&x),
                slice(&weights),
                slice(&spatial),
                slice(&identity),
            ],
            dims,
            [down, across],
        );
        debug_assert_eq!(shape(&spatial)[2..], [height, width]);
        tensor(out, dims)
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

/// [`WindowAttentionBackend::reweighted_summary`] of `x` `[batch, channels, height, width]` with
/// `weights` `[batch, channels, down, across]`: `[batch, 2, height, width]`. Row by row, so that
/// each row's sums and maxima over channels stay in cache.
fn reweighted_summary_f32(
    x: &[f32],
    weights: &[f32],
    [_, channels, height, width]: [usize; 4],
    [down, across]: [usize; 2],
) -> Vec<f32> {
    let [bh, bw] = blocks([height, width], [down, across]);
    let plane = height * width;
    let mut out = unwritten(x.len() / channels * 2);
    let images = x
        .chunks_exact(channels * plane)
        .zip(weights.chunks_exact(channels * down * across))
        .zip(out.chunks_exact_mut(2 * plane));
    for ((image, weights), out) in images {
        let (means, maxima) = out.split_at_mut(plane);
        let rows = means
            .chunks_exact_mut(width)
            .zip(maxima.chunks_exact_mut(width))
            .collect();
        let summary = Summary {
            image,
            weights,
            channels,
            plane,
            width,
            block: [bh, bw],
            across,
        };
        per_band(rows, |y, (mean, max)| summary.row(y, mean, max));
    }
    // SAFETY: the rows cover both planes of every image, and `Summary::row` writes each whole.
    unsafe { written(out) }
}

/// One image's summary over channels, a row at a time.
struct Summary<'a> {
    image: &'a [f32],
    weights: &'a [f32],
    channels: usize,
    plane: usize,
    width: usize,
    block: [usize; 2],
    across: usize,
}

impl Summary<'_> {
    /// Row `y`'s mean and maximum over channels; natively compiled a second time for AVX2
    /// where the CPU has it (the x86-64 baseline has four lanes).
    fn row(&self, y: usize, mean: &mut [Unwritten], max: &mut [Unwritten]) {
        #[cfg(target_arch = "x86_64")]
        if avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked).
            unsafe { self.row_avx2_fma(y, mean, max) };
            return;
        }
        self.row_with(y, mean, max);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn row_avx2_fma(&self, y: usize, mean: &mut [Unwritten], max: &mut [Unwritten]) {
        self.row_with(y, mean, max);
    }

    /// The first channel's weighed values start the sums and maxima, every other channel's
    /// add to them, block by block of its weights.
    #[inline(always)]
    fn row_with(&self, y: usize, mean: &mut [Unwritten], max: &mut [Unwritten]) {
        let [bh, bw] = self.block;
        let (width, across) = (self.width, self.across);
        let down = self.weights.len() / (self.channels * across);
        let row_of = |c: usize| &self.image[c * self.plane + y * width..][..width];
        let weights_of = |c: usize| &self.weights[(c * down + y / bh) * across..][..across];
        let (first, first_weights) = (row_of(0), weights_of(0));
        for (block, &w) in first_weights.iter().enumerate() {
            let at = block * bw..(block + 1) * bw;
            for ((s, m), &v) in mean[at.clone()]
                .iter_mut()
                .zip(&mut max[at.clone()])
                .zip(&first[at])
            {
                s.write(v * w);
                m.write(v * w);
            }
        }
        // SAFETY: both rows were written whole just above.
        let (mean, max) = unsafe { (mean.assume_init_mut(), max.assume_init_mut()) };
        for c in 1..self.channels {
            let (row, weights) = (row_of(c), weights_of(c));
            for (block, &w) in weights.iter().enumerate() {
                let at = block * bw..(block + 1) * bw;
                let (sums, maxima, values) =
                    (&mut mean[at.clone()], &mut max[at.clone()], &row[at]);
                for i in 0..bw {
                    let v = values[i] * w;
                    sums[i] += v;
                    // A comparison and a select, which vectorise; `f32::max`'s NaN rule does not.
                    maxima[i] = if v > maxima[i] { v } else { maxima[i] };
                }
            }
        }
        let scale = 1.0 / self.channels as f32;
        mean.iter_mut().for_each(|s| *s *= scale);
    }
}

/// [`WindowAttentionBackend::reweighted_residual`] of `[x, weights, spatial, identity]`, `x` and
/// `identity` of `shape`, `weights` `[batch, channels, down, across]`, `spatial` `[batch, 1,
/// height, width]`. One plane per task.
fn reweighted_residual_f32(
    [x, weights, spatial, identity]: [&[f32]; 4],
    [_, channels, height, width]: [usize; 4],
    [down, across]: [usize; 2],
) -> Vec<f32> {
    let [bh, bw] = blocks([height, width], [down, across]);
    let plane = height * width;
    let mut out = unwritten(x.len());
    let planes = out
        .chunks_exact_mut(plane)
        .zip(x.chunks_exact(plane).zip(identity.chunks_exact(plane)))
        .collect();
    per_band(planes, |index, (out, (x, identity))| {
        let spatial = &spatial[index / channels * plane..][..plane];
        let weights = &weights[index * down * across..][..down * across];
        for (y, ((out, x), (identity, spatial))) in out
            .chunks_exact_mut(width)
            .zip(x.chunks_exact(width))
            .zip(
                identity
                    .chunks_exact(width)
                    .zip(spatial.chunks_exact(width)),
            )
            .enumerate()
        {
            let row_weights = &weights[y / bh * across..][..across];
            let blocks = out
                .chunks_exact_mut(bw)
                .zip(x.chunks_exact(bw))
                .zip(identity.chunks_exact(bw).zip(spatial.chunks_exact(bw)));
            for (((out, x), (identity, spatial)), &w) in blocks.zip(row_weights) {
                for (((o, &v), &i), &s) in out.iter_mut().zip(x).zip(identity).zip(spatial) {
                    let y = v * w * s + i;
                    o.write(if y > 0.0 { y } else { 0.0 });
                }
            }
        }
    });
    // SAFETY: the blocks tile every plane exactly (`blocks`), and each value was written.
    unsafe { written(out) }
}

/// `x`'s average and maximum over each `block` x `block` square (see
/// [`WindowAttentionBackend::block_avg_max`]).
pub fn block_avg_max(x: Tensor<4>, block: usize) -> (Tensor<4>, Tensor<4>) {
    let (avg, max) = Dispatch::block_avg_max(x.into_dispatch(), block);
    (Tensor::from_dispatch(avg), Tensor::from_dispatch(max))
}

/// Spatial attention's summary of `x` weighed per block (see
/// [`WindowAttentionBackend::reweighted_summary`]).
pub fn reweighted_summary(x: Tensor<4>, weights: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::reweighted_summary(
        x.into_dispatch(),
        weights.into_dispatch(),
    ))
}

/// `relu(x * weights * spatial + identity)`, `weights` per block (see
/// [`WindowAttentionBackend::reweighted_residual`]).
pub fn reweighted_residual(
    x: Tensor<4>,
    weights: Tensor<4>,
    spatial: Tensor<4>,
    identity: Tensor<4>,
) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::reweighted_residual(
        x.into_dispatch(),
        weights.into_dispatch(),
        spatial.into_dispatch(),
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
    /// past the last whole block (for pooling), and blocks of one pixel.
    #[test]
    fn flex_computes_what_burns_operations_compose() {
        // Autodiff routes each operation to the trait's default body, Burn's own operations.
        for (shape, block) in [([2, 3, 20, 15], 5), ([1, 5, 9, 12], 3), ([1, 2, 4, 6], 1)] {
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
            let spatial = random([batch, 1, height, width]);
            let identity = random([batch, channels, height, width]);
            assert_close(
                &values(reweighted_summary(x.clone(), weights.clone())),
                &values(reweighted_summary(
                    x.clone().autodiff(),
                    weights.clone().autodiff(),
                )),
                &format!("summary {what}"),
            );
            let fused = reweighted_residual(
                x.clone(),
                weights.clone(),
                spatial.clone(),
                identity.clone(),
            );
            let composed = reweighted_residual(
                x.autodiff(),
                weights.autodiff(),
                spatial.autodiff(),
                identity.autodiff(),
            );
            assert_close(
                &values(fused),
                &values(composed),
                &format!("residual {what}"),
            );
        }
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
        // Pixel (0, 0): 1 and -1 weighed by 1; pixel (0, 2): 3 and 1 weighed by -2.
        let summary = values(reweighted_summary(x.clone(), weights.clone()));
        assert_eq!(summary[0], 0.0);
        assert_eq!(summary[2], -4.0);
        assert_eq!(summary[8], 1.0);
        assert_eq!(summary[10], -2.0);
        let spatial = Tensor::<4>::full([1, 1, 2, 4], 0.5, &device);
        let identity = Tensor::<4>::ones([1, 2, 2, 4], &device);
        let out = values(reweighted_residual(x, weights, spatial, identity));
        // 1 * 1 * 0.5 + 1, and 3 * -2 * 0.5 + 1 cut at zero.
        assert_eq!(out[0], 1.5);
        assert_eq!(out[2], 0.0);
    }
}
