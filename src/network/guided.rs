//! Guided backpropagation ReLU (Springenberg et al. 2015) as a Burn backend extension.
//!
//! Forward it is a plain ReLU. Backward it lets the gradient through only where the forward
//! input was positive **and** the incoming gradient is positive:
//! `grad_in = relu(relu_backward(x, grad_out))`. It is used only for the CSM pass; training and
//! Grad-CAM use the standard ReLU.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Cube, Dispatch, Flex, backend_extension};
use burn::prelude::*;
use burn::tensor::activation::relu;

/// Backend operations this crate adds to Burn.
#[backend_extension(Autodiff, Cube, Flex, Fusion: cfg(not(target_arch = "wasm32")))]
pub trait GuidedReluBackend: Backend {
    /// ReLU whose backward follows the guided-backpropagation rule. Without autodiff, a ReLU.
    #[fusion(default)]
    fn guided_relu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::relu(x)
    }
}

impl GuidedReluBackend for Flex {}
impl GuidedReluBackend for Cube {}

impl<B: Backend + GuidedReluBackend, C: CheckpointStrategy> GuidedReluBackend for Autodiff<B, C> {
    fn guided_relu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct GuidedReluBackward;

        impl<B: Backend> Backward<B, 1> for GuidedReluBackward {
            type State = NodeId;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [parent] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let Some(parent) = parent else { return };
                let input: FloatTensor<B> = checkpointer.retrieve_node_output(ops.state);
                // Positive forward input (relu_backward), then positive gradient (relu).
                let guided = B::relu(B::relu_backward(input, grad));
                grads.register::<B>(parent.id, guided);
            }
        }

        match GuidedReluBackward
            .prepare::<C>([x.node()])
            // Keep the input rather than recompute it: the backward needs its sign.
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&x);
                prep.finish(state, B::relu(x.into_primitive()))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::relu(x.into_primitive())),
        }
    }
}

/// The guided ReLU on a tensor of any rank.
pub fn guided_relu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(Dispatch::guided_relu(x.into_dispatch()))
}

/// Which ReLU a forward pass uses: the network is the same, only the backward rule differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReluKind {
    /// The ordinary ReLU (training, prediction, Grad-CAM).
    Standard,
    /// Guided-backpropagation ReLU (the CSM pass).
    Guided,
}

impl ReluKind {
    /// Applies this kind of ReLU.
    pub fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            ReluKind::Standard => relu(x),
            ReluKind::Guided => guided_relu(x),
        }
    }
}
