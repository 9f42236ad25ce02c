//! The `celnet` command line. Each command lives in its own file under `src/cli/`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

// Burn allocates and frees large activation buffers every step; glibc malloc returns them to
// the kernel and pays for zeroed pages again (15% of a training step in a profile).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match cli::Cli::parse().run() {
        Ok(cli::Outcome::Done) => ExitCode::SUCCESS,
        Ok(cli::Outcome::SomeFailed) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
