//! `mxfed`: the command-line face of mxfed-core.
//!
//! Every command reads a file argument or `-`/stdin, writes its result to stdout, and reports
//! errors as one line `mxfed: error[code]: message` on stderr. Exit status: 0 ok, 1 verification
//! failed, 2 bad input or usage.

mod cli;
mod error;

use std::process::ExitCode;

use clap::Parser as _;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() {
                error::EXIT_BAD_INPUT
            } else {
                0
            };
            // clap's own help and usage text, as users expect it.
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli::run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("mxfed: error[{}]: {}", e.code, e.message);
            ExitCode::from(e.exit)
        }
    }
}
