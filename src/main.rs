//! The `celnet` command line. Each command lives in its own file under `src/cli/`.

mod cli;

use std::process::ExitCode;

use celnet::error::FailureKind;
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
            exit_code(error.kind())
        }
    }
}

/// The exit status of a failure, in the BSD `sysexits.h` convention that batch tools and
/// workflow engines know: 65 and 66 are the input's fault and the same again on a retry; 74
/// and 70 may pass on another try. (1: some inputs of several failed; 2: a usage error.)
fn exit_code(kind: FailureKind) -> ExitCode {
    ExitCode::from(match kind {
        FailureKind::BadInput => 65,     // EX_DATAERR
        FailureKind::MissingInput => 66, // EX_NOINPUT
        FailureKind::Internal => 70,     // EX_SOFTWARE
        FailureKind::Io => 74,           // EX_IOERR
    })
}
