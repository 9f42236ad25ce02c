//! The explainer's gradients against independent references: central finite
//! differences for the Grad-CAM weights, hand-computed guided-ReLU backward passes.

use burn::prelude::*;
use celnet::explain::Explainer;
use celnet::explain::engine::grad_cam_weights;
use celnet::network::guided::{ReluKind, guided_relu};
use celnet::{Celnet, CelnetConfig};

/// A small CELNet (4 base channels, one block per module) with fixed random weights.
fn tiny_explainer() -> Explainer {
    let device = Device::flex();
    device.seed(11);
    let model: Celnet = CelnetConfig::new()
        .with_base_channels(4)
        .with_blocks_per_module(1)
        .init(&device);
    Explainer::new(model, &device)
}

/// The shipped network: trained weights make the path through module 3 matter.
fn trained_explainer() -> Explainer {
    let device = Device::flex();
    Explainer::new(celnet::weights::load_default(&device).unwrap(), &device)
}

fn fixture_image() -> image::RgbImage {
    let bytes = std::fs::read("tests/fixtures/pcam-valid-200/1/patch0029612.jpg").unwrap();
    celnet::input::decode_image(&bytes).unwrap()
}

/// A deterministic textured 32x32 test image.
fn test_image() -> image::RgbImage {
    image::RgbImage::from_fn(32, 32, |x, y| {
        let v = |a: u32, b: u32| ((x * a + y * b + x * y) % 251) as u8;
        image::Rgb([v(7, 3), v(5, 11), v(13, 2)])
    })
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

fn scalar(t: Tensor<2>) -> f64 {
    f64::from(values(t)[0])
}

/// One-hot channel perturbation `eps` on channel `k` of a `[1, K, h, w]` shape.
fn channel_bump(dims: [usize; 4], k: usize, eps: f32, device: &Device) -> Tensor<4> {
    let [_, channels, h, w] = dims;
    let mut data = vec![0.0f32; channels * h * w];
    data[k * h * w..(k + 1) * h * w].fill(eps);
    Tensor::from_data(TensorData::new(data, dims), device)
}

fn assert_close(got: &[f32], expected: &[f64], what: &str) {
    for (k, (&g, &e)) in got.iter().zip(expected).enumerate() {
        let tolerance = 2e-4 + 2e-2 * e.abs();
        assert!(
            (f64::from(g) - e).abs() <= tolerance,
            "{what} channel {k}: autodiff {g} vs finite difference {e}"
        );
    }
}

#[test]
fn grad_cam_weights_of_f3_match_finite_differences() {
    let explainer = tiny_explainer();
    let classifier = explainer.classifier();
    let model = classifier.model();
    let layers = explainer
        .layer_gradients(explainer.autodiff_input(&test_image()))
        .unwrap();
    let alpha = values(grad_cam_weights(layers.g3));
    let dims = layers.f3.dims();
    let area = (dims[2] * dims[3]) as f64;
    let eps = 1e-2;
    let fd: Vec<f64> = (0..dims[1])
        .map(|k| {
            let bump = channel_bump(dims, k, eps, explainer.device());
            let plus = scalar(model.classify(layers.f2.clone(), layers.f3.clone() + bump.clone()));
            let minus = scalar(model.classify(layers.f2.clone(), layers.f3.clone() - bump));
            (plus - minus) / (2.0 * f64::from(eps) * area)
        })
        .collect();
    assert_close(&alpha, &fd, "F3");
}

#[test]
fn grad_cam_weights_of_f2_are_total_derivatives() {
    let explainer = trained_explainer();
    let classifier = explainer.classifier();
    let model = classifier.model();
    let layers = explainer
        .layer_gradients(explainer.autodiff_input(&fixture_image()))
        .unwrap();
    let alpha = values(grad_cam_weights(layers.g2));
    let dims = layers.f2.dims();
    let area = (dims[2] * dims[3]) as f64;
    let eps = 1e-2;
    let through_module3 = |f2: Tensor<4>| {
        let f3 = model.features3(f2.clone(), ReluKind::Standard);
        scalar(model.classify(f2, f3))
    };
    let mut total = Vec::new();
    let mut direct_only = Vec::new();
    for k in 0..dims[1] {
        let bump = channel_bump(dims, k, eps, explainer.device());
        let scale = 2.0 * f64::from(eps) * area;
        total.push(
            (through_module3(layers.f2.clone() + bump.clone())
                - through_module3(layers.f2.clone() - bump.clone()))
                / scale,
        );
        direct_only.push(
            (scalar(model.classify(layers.f2.clone() + bump.clone(), layers.f3.clone()))
                - scalar(model.classify(layers.f2.clone() - bump, layers.f3.clone())))
                / scale,
        );
    }
    assert_close(&alpha, &total, "F2");
    // The module-3 path matters: the companion path alone would give other weights.
    let gap = total
        .iter()
        .zip(&direct_only)
        .map(|(t, d)| (t - d).abs())
        .fold(0.0, f64::max);
    let scale = total.iter().map(|t| t.abs()).fold(0.0, f64::max);
    assert!(
        gap > 0.1 * scale,
        "module 3 contributes little ({gap} of {scale}); the test would not tell the paths apart"
    );
}

#[test]
fn guided_relu_backward_follows_the_rule() {
    let device = Device::flex().autodiff();
    let x = Tensor::<1>::from_floats([-1.0, 2.0, 3.0, -4.0, 0.5], &device).require_grad();
    let upstream = Tensor::<1>::from_floats([5.0, -6.0, 7.0, 8.0, 0.0], &device);

    let y = guided_relu(x.clone());
    assert_eq!(
        values(y.clone().detach().inner()),
        vec![0.0, 2.0, 3.0, 0.0, 0.5]
    );
    let grads = (y * upstream.clone()).sum().backward();
    // Only where the input was positive AND the incoming gradient is positive.
    assert_eq!(
        values(x.grad(&grads).unwrap()),
        vec![0.0, 0.0, 7.0, 0.0, 0.0]
    );

    // The standard ReLU passes negative gradients where the input was positive.
    let x2 = Tensor::<1>::from_floats([-1.0, 2.0, 3.0, -4.0, 0.5], &device).require_grad();
    let grads = (ReluKind::Standard.apply(x2.clone()) * upstream)
        .sum()
        .backward();
    assert_eq!(
        values(x2.grad(&grads).unwrap()),
        vec![0.0, -6.0, 7.0, 0.0, 0.0]
    );
}

#[test]
fn guided_relu_is_a_plain_relu_without_autodiff() {
    let x = Tensor::<2>::from_floats([[-1.0, 0.0], [2.5, -3.0]], &Device::flex());
    assert_eq!(values(guided_relu(x)), vec![0.0, 0.0, 2.5, 0.0]);
}

#[test]
fn csm_gradient_differs_from_the_plain_input_gradient() {
    let explainer = tiny_explainer();
    let x = explainer.autodiff_input(&test_image());
    let plain = values(
        explainer
            .input_gradient(x.clone(), ReluKind::Standard)
            .unwrap(),
    );
    let guided = values(explainer.input_gradient(x, ReluKind::Guided).unwrap());
    assert_eq!(plain.len(), guided.len());
    assert!(plain.iter().chain(&guided).all(|v| v.is_finite()));
    let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
    let diff: Vec<f32> = plain.iter().zip(&guided).map(|(a, b)| a - b).collect();
    assert!(norm(&guided) > 0.0, "guided gradient is zero");
    assert!(
        norm(&diff) > 0.05 * norm(&plain),
        "guided backprop changed nothing: |diff| {} vs |plain| {}",
        norm(&diff),
        norm(&plain)
    );
}

#[test]
fn the_shared_forward_gives_the_same_evidence_as_separate_passes() {
    let explainer = trained_explainer();
    let image = fixture_image();
    let evidence = pollster::block_on(explainer.evidence(&image)).unwrap();
    // The reference: a standard forward for Grad-CAM, another full forward for guided backprop.
    let x = explainer.autodiff_input(&image);
    let layers = explainer.layer_gradients(x.clone()).unwrap();
    let cam = |f, g| values(celnet::explain::engine::grad_cam(f, g));
    let guided = values(explainer.input_gradient(x, ReluKind::Guided).unwrap());
    let close = |a: &[f32], b: &[f32], what: &str| {
        assert_eq!(a.len(), b.len(), "{what}");
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-5 * scale, "{what}[{i}]: {x} vs {y}");
        }
    };
    close(&evidence.cam2.data, &cam(layers.f2, layers.g2), "cam2");
    close(&evidence.cam3.data, &cam(layers.f3, layers.g3), "cam3");
    close(&evidence.guided_gradient, &guided, "guided gradient");
    assert!((evidence.logit - values(layers.logit)[0]).abs() < 1e-6);
}
