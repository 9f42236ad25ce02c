//! The `celnet` command line. Each command lives in its own file under `src/cli/`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

// Burn allocates and frees large activation buffers every step; see `celnet::memory`.
#[global_allocator]
static GLOBAL: celnet::memory::Allocator = celnet::memory::Allocator;

fn main() -> ExitCode {
    celnet::memory::keep_freed_pages();
    match cli::Cli::parse().run() {
        Ok(cli::Outcome::Done) => ExitCode::SUCCESS,
        Ok(cli::Outcome::SomeFailed) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
