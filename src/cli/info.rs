//! `celnet info`: the network's size and the shapes of the two explained layers.

use burn::module::Module;
use burn::prelude::*;
use serde::Serialize;

use celnet::Result;
use celnet::network::guided::ReluKind;
use celnet::network::model::GLIMPSE;

use super::common::{ModelArgs, PrintReport, emit};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    model: ModelArgs,
}

#[derive(Serialize)]
struct Info {
    params: usize,
    running_statistics: usize,
    input_shape: [usize; 4],
    f2_shape: [usize; 4],
    f3_shape: [usize; 4],
}

impl PrintReport for Info {
    fn print_text(&self) {
        println!(
            "CELNet: {} learnable parameters (+{} batch-norm running statistics)",
            self.params, self.running_statistics
        );
        println!("F2 (CAM2 layer) for a 96x96 glimpse: {:?}", self.f2_shape);
        println!("F3 (CAM3 layer) for a 96x96 glimpse: {:?}", self.f3_shape);
    }
}

pub fn run(args: Args) -> Result<()> {
    let loaded = args.model.load()?;
    let model = &loaded.model;
    let input_shape = [1, 3, GLIMPSE, GLIMPSE];
    let f2 = model.features2(
        Tensor::<4>::zeros(input_shape, &loaded.device),
        ReluKind::Standard,
    );
    let f3 = model.features3(f2.clone(), ReluKind::Standard);
    let info = Info {
        params: model.learnable_params(),
        running_statistics: model.num_params() - model.learnable_params(),
        input_shape,
        f2_shape: f2.dims(),
        f3_shape: f3.dims(),
    };
    emit(&info, args.json, &loaded.source, None);
    if !args.json {
        println!(
            "backend: {}, weights: {}",
            loaded.source.backend, loaded.source.weights
        );
    }
    Ok(())
}
