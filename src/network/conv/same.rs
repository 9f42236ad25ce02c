//! Stride-1 convolutions with an odd square kernel, "same" zero padding and no bias (spatial
//! attention's fused 7x7 kernel) as a Burn operation.
//!
//! The input gradient of such a convolution is the same convolution of the output gradient by
//! the kernel turned half a turn with its channel axes swapped. On flex that is its ordinary
//! `conv2d`; Burn's own backward goes through a transposed convolution, several times slower
//! for these shapes (in wasm, a thirtieth of an explanation). Other backends keep Burn's.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Cube, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;

/// Burn's options for a stride-1 convolution that keeps the size, for a `kernel`-wide kernel.
fn options(kernel: usize) -> ConvOptions<2> {
    let pad = kernel / 2;
    ConvOptions::new([1, 1], [pad, pad], [1, 1], 1)
}

fn kernel_side<B: Backend>(weight: &FloatTensor<B>) -> usize {
    weight.shape()[2]
}

/// Backend operations for a stride-1 "same" convolution without bias.
#[backend_extension(Autodiff, Cube, Flex, Fusion: cfg(not(target_arch = "wasm32")))]
pub trait SameConvBackend: Backend {
    /// `conv2d` of `x` by `weight` `[C_out, C_in, k, k]` (k odd), stride 1, padding k / 2.
    #[fusion(default)]
    fn conv_same(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        let options = options(kernel_side::<Self>(&weight));
        Self::conv2d(x, weight, None, options)
    }

    /// The gradient of [`SameConvBackend::conv_same`]'s output with respect to `x`.
    #[fusion(default)]
    fn conv_same_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let options = options(kernel_side::<Self>(&weight));
        Self::conv2d_x_backward(x, weight, output_grad, options)
    }
}

impl SameConvBackend for Cube {}

impl SameConvBackend for Flex {
    fn conv_same_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let options = options(kernel_side::<Self>(&weight));
        if super::flex::all_f32([&x, &weight, &output_grad]) {
            Flex::conv2d(output_grad, super::flex::flipped(weight), None, options)
        } else {
            Flex::conv2d_x_backward(x, weight, output_grad, options)
        }
    }
}

/// The backward of [`SameConvBackend::conv_same`]; its parents are the input and the weight.
#[derive(Debug)]
struct SameConvBackward;

impl<B: Backend + SameConvBackend> Backward<B, 2> for SameConvBackward {
    type State = (NodeId, NodeId);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let x: FloatTensor<B> = checkpointer.retrieve_node_output(ops.state.0);
        let weight: FloatTensor<B> = checkpointer.retrieve_node_output(ops.state.1);
        if let Some(node) = node_weight {
            let options = options(kernel_side::<B>(&weight));
            let dw = B::conv2d_weight_backward(x.clone(), weight.clone(), grad.clone(), options);
            grads.register::<B>(node.id, dw);
        }
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::conv_same_x_backward(x, weight, grad));
        }
    }
}

impl<B: Backend + SameConvBackend, C: CheckpointStrategy> SameConvBackend for Autodiff<B, C> {
    fn conv_same(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        match SameConvBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), prep.checkpoint(&weight));
                prep.finish(
                    state,
                    B::conv_same(x.into_primitive(), weight.into_primitive()),
                )
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::conv_same(x.into_primitive(), weight.into_primitive()))
            }
        }
    }
}

/// `x` `[B, C_in, H, W]` convolved with `weight` `[C_out, C_in, k, k]` (k odd), stride 1, zero
/// padding k / 2, no bias: `[B, C_out, H, W]`.
pub fn conv_same(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::conv_same(
        x.into_dispatch(),
        weight.into_dispatch(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::conv::tests::{assert_close, values};
    use burn::tensor::Distribution;

    #[test]
    fn values_and_gradients_are_those_of_burns_conv2d() {
        let device = Device::flex().autodiff();
        let random =
            |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let (x, weight, mix) = (
            random([2, 2, 9, 11]),
            random([3, 2, 7, 7]),
            random([2, 3, 9, 11]),
        );
        let run = |f: &dyn Fn(Tensor<4>, Tensor<4>) -> Tensor<4>| {
            let (x, weight) = (x.clone().require_grad(), weight.clone().require_grad());
            let out = f(x.clone(), weight.clone());
            let grads = (out.clone() * mix.clone()).sum().backward();
            [
                out.inner(),
                x.grad(&grads).unwrap(),
                weight.grad(&grads).unwrap(),
            ]
            .map(values)
        };
        let ours = run(&conv_same);
        let burns = run(&|x, w| burn::tensor::module::conv2d(x, w, None, options(7)));
        for (what, (o, b)) in ["output", "dx", "dweight"]
            .iter()
            .zip(ours.iter().zip(&burns))
        {
            assert_close(o, b, what);
        }
    }
}
