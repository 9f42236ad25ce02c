//! `celnet serve`: the browser client on this machine.

use std::io::Write;
use std::path::PathBuf;

use celnet::{Result, serve};

#[derive(clap::Args)]
pub struct Args {
    /// TCP port (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Interface to listen on; the default keeps the page on this machine.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Folder that holds index.html, www/ and pkg/.
    #[arg(long, default_value = ".")]
    root: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let root = &args.root;
    serve::serve(root, &format!("{}:{}", args.host, args.port), |address| {
        println!(
            "celnet: serving {} at http://{address}/ (Ctrl-C to stop)",
            root.display()
        );
        // Scripts wait for this line.
        let _ = std::io::stdout().flush();
    })
}
