//! The maxima that CELNet's attention pools, as a Burn operation: over channels (spatial
//! attention's second summary) and over pixels (channel attention's global maximum).
//!
//! On the CPU backend `max_dim(1)` is a reduction that strides through memory; under autodiff a
//! maximum also computes indices for its backward in a scalar loop, and the earlier tree of
//! element-wise maxima of channel halves made its backward a chain of masks, slices and copies:
//! together a tenth of an explanation in wasm. On flex this operation is one pass forward and
//! one backward over contiguous memory; other backends keep Burn's reduction.
//!
//! The gradient goes to the first element holding the maximum, as a reduction's would.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Cube, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::prelude::*;
use burn::tensor::{DType, IndexingUpdateOp, IntDType, TensorData};

/// Backend operations for the maximum along axis 1.
#[backend_extension(Autodiff, Cube, Flex, Fusion: cfg(not(target_arch = "wasm32")))]
pub trait ChannelMaxBackend: Backend {
    /// `[B, C, H, W] -> [B, 1, H, W]`: the largest value along axis 1 (of each pixel over its
    /// channels).
    #[fusion(default)]
    fn channel_max(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_max_dim(x, 1)
    }

    /// The gradient of [`ChannelMaxBackend::channel_max`] with respect to `x`, given the
    /// forward pass's `max`: `grad` at the first element along axis 1 holding the maximum, zero
    /// elsewhere.
    #[fusion(default)]
    fn channel_max_backward(
        x: FloatTensor<Self>,
        _max: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        scatter_to_argmax::<Self>(x, grad)
    }
}

/// Burn's rule for a maximum along an axis, on any backend: the gradient added at the index of
/// the (first) maximum.
fn scatter_to_argmax<B: Backend>(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    let device = x.device();
    let shape = x.shape();
    let channel = B::float_argmax(x, 1, IntDType::I32);
    let zeros = B::float_zeros(shape, &device, grad.dtype().into());
    B::float_scatter(1, zeros, channel, grad, IndexingUpdateOp::Add)
}

impl ChannelMaxBackend for Cube {}

impl ChannelMaxBackend for Flex {
    fn channel_max(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 {
            return Flex::float_max_dim(x, 1);
        }
        let x = x.to_contiguous();
        let [batch, channels, height, width] = dims(&x);
        let out = channel_max_f32(slice(&x), [batch, channels, height * width]);
        FloatTensor::<Flex>::from_data(TensorData::new(out, [batch, 1, height, width]))
    }

    fn channel_max_backward(
        x: FloatTensor<Self>,
        max: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        if [&x, &max, &grad].iter().any(|t| t.dtype() != DType::F32) {
            return scatter_to_argmax::<Flex>(x, grad);
        }
        let (x, max, grad) = (x.to_contiguous(), max.to_contiguous(), grad.to_contiguous());
        let shape @ [batch, channels, height, width] = dims(&x);
        let out = channel_max_backward_f32(
            slice(&x),
            slice(&max),
            slice(&grad),
            [batch, channels, height * width],
        );
        FloatTensor::<Flex>::from_data(TensorData::new(out, shape))
    }
}

fn dims(t: &FloatTensor<Flex>) -> [usize; 4] {
    t.layout().shape()[..].try_into().expect("a 4-d tensor")
}

fn slice(t: &FloatTensor<Flex>) -> &[f32] {
    t.as_slice::<f32>().expect("a contiguous f32 tensor")
}

/// The maximum over channels of `x` `[batch, channels, pixels]`: `[batch, pixels]`. Plane by
/// plane, so the inner loop runs over contiguous pixels (SIMD).
fn channel_max_f32(x: &[f32], [batch, channels, pixels]: [usize; 3]) -> Vec<f32> {
    if pixels == 1 {
        return x.chunks_exact(channels).map(row_max).collect();
    }
    let mut out = Vec::with_capacity(batch * pixels);
    for image in x.chunks_exact(channels * pixels) {
        let mut planes = image.chunks_exact(pixels);
        let mut max = planes.next().expect("at least one channel").to_vec();
        for plane in planes {
            for (m, &v) in max.iter_mut().zip(plane) {
                // A comparison and a select, which vectorise; `f32::max`'s NaN rule does not.
                *m = if v > *m { v } else { *m };
            }
        }
        out.extend_from_slice(&max);
    }
    out
}

fn row_max(row: &[f32]) -> f32 {
    row.iter().fold(row[0], |m, &v| if v > m { v } else { m })
}

/// `grad` `[batch, pixels]` placed at each pixel's first channel of `x` `[batch, channels,
/// pixels]` that holds its maximum `max` `[batch, pixels]`; zero elsewhere.
fn channel_max_backward_f32(
    x: &[f32],
    max: &[f32],
    grad: &[f32],
    [_, channels, pixels]: [usize; 3],
) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    if pixels == 1 {
        for (((row, out), &m), &g) in x
            .chunks_exact(channels)
            .zip(out.chunks_exact_mut(channels))
            .zip(max)
            .zip(grad)
        {
            out[row.iter().position(|&v| v == m).unwrap_or(0)] = g;
        }
        return out;
    }
    let mut placed = vec![false; pixels];
    for (((image, out), max), grad) in x
        .chunks_exact(channels * pixels)
        .zip(out.chunks_exact_mut(channels * pixels))
        .zip(max.chunks_exact(pixels))
        .zip(grad.chunks_exact(pixels))
    {
        placed.fill(false);
        for (plane, out) in image.chunks_exact(pixels).zip(out.chunks_exact_mut(pixels)) {
            // Branch-free, so that it vectorises.
            let values = plane.iter().zip(max).zip(grad);
            for ((out, placed), ((&v, &m), &g)) in out.iter_mut().zip(&mut placed).zip(values) {
                let first = !*placed & (v == m);
                *out = if first { g } else { 0.0 };
                *placed |= first;
            }
        }
    }
    out
}

#[derive(Debug)]
struct ChannelMaxBackward;

impl<B: Backend + ChannelMaxBackend> Backward<B, 1> for ChannelMaxBackward {
    /// The input, and the maximum (small: one value per pixel) rather than computing it again.
    type State = (NodeId, FloatTensor<B>);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let Some(parent) = parent else { return };
        let (input, max) = ops.state;
        let x: FloatTensor<B> = checkpointer.retrieve_node_output(input);
        grads.register::<B>(parent.id, B::channel_max_backward(x, max, grad));
    }
}

impl<B: Backend + ChannelMaxBackend, C: CheckpointStrategy> ChannelMaxBackend for Autodiff<B, C> {
    fn channel_max(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match ChannelMaxBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let input = prep.checkpoint(&x);
                let max = B::channel_max(x.into_primitive());
                prep.finish((input, max.clone()), max)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::channel_max(x.into_primitive())),
        }
    }
}

/// The maximum over channels, `[B, C, H, W] -> [B, 1, H, W]`: the values of `max_dim(1)`.
pub fn channel_max(x: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::channel_max(x.into_dispatch()))
}

/// The maximum over each channel's pixels, `[B, C, H, W] -> [B, C, 1, 1]`: the values of
/// `max_dims(&[2, 3])`.
pub fn spatial_max(x: Tensor<4>) -> Tensor<4> {
    let [batch, channels, height, width] = x.dims();
    channel_max(x.reshape([batch * channels, height * width, 1, 1]))
        .reshape([batch, channels, 1, 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// The values of `ours` and `burns` on `x` and their gradients for the loss
    /// `sum(out * weight)`, which must be equal.
    fn assert_same_values_and_gradient(
        shape: [usize; 4],
        weight_shape: [usize; 4],
        ours: &dyn Fn(Tensor<4>) -> Tensor<4>,
        burns: &dyn Fn(Tensor<4>) -> Tensor<4>,
    ) {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let weight = Tensor::<4>::random(weight_shape, Distribution::Normal(0.0, 1.0), &device);
        let grad_of = |f: &dyn Fn(Tensor<4>) -> Tensor<4>| {
            let leaf = x.clone().detach().require_grad();
            let out = f(leaf.clone());
            let loss = (out.clone() * weight.clone()).sum();
            let grad = leaf.grad(&loss.backward()).unwrap();
            (values(out.inner()), values(grad))
        };
        let ((ours, ours_grad), (burns, burns_grad)) = (grad_of(ours), grad_of(burns));
        assert_eq!(ours, burns);
        assert_eq!(ours_grad, burns_grad);
    }

    #[test]
    fn the_values_and_the_gradient_are_those_of_max_dim() {
        assert_same_values_and_gradient([2, 5, 7, 3], [2, 1, 7, 3], &channel_max, &|x| {
            x.max_dim(1)
        });
    }

    #[test]
    fn the_spatial_maximum_and_its_gradient_are_those_of_max_dims() {
        assert_same_values_and_gradient([2, 3, 5, 4], [2, 3, 1, 1], &spatial_max, &|x| {
            x.max_dims(&[2, 3])
        });
    }

    #[test]
    fn a_tie_sends_the_gradient_to_the_first_channel_only() {
        let x = [1.0, 3.0, 3.0, 2.0, 3.0, -1.0];
        // Two channels of three pixels: maxima 2, 3, 3; pixel 1 is tied.
        assert_eq!(channel_max_f32(&x, [1, 2, 3]), [2.0, 3.0, 3.0]);
        assert_eq!(
            channel_max_backward_f32(&x, &[2.0, 3.0, 3.0], &[10.0, 20.0, 30.0], [1, 2, 3]),
            [0.0, 20.0, 30.0, 10.0, 0.0, 0.0]
        );
        // One pixel: a reduction along each row.
        assert_eq!(channel_max_f32(&x, [2, 3, 1]), [3.0, 3.0]);
        assert_eq!(
            channel_max_backward_f32(&x, &[3.0, 3.0], &[10.0, 20.0], [2, 3, 1]),
            [0.0, 10.0, 0.0, 0.0, 20.0, 0.0]
        );
    }

    #[test]
    fn a_batch_is_reduced_image_by_image_for_any_channel_count() {
        let device = Device::flex();
        for channels in [1, 2, 5, 16] {
            let x = Tensor::<4>::random([3, channels, 5, 6], Distribution::Default, &device);
            assert_eq!(
                values(channel_max(x.clone())),
                values(x.max_dim(1)),
                "{channels}"
            );
        }
    }
}
