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
        // --help and --version: clap's own text, as users expect it.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(0);
        }
        // A usage error is one line like every other error, exit status 2: clap's message up
        // to its first blank line (so a missing argument's name, on the next line, is kept),
        // without its tips and usage block.
        Err(e) => {
            let text = e.to_string();
            let message = usage_message(&text);
            eprintln!("mxfed: error[usage]: {message} (see mxfed --help)");
            return ExitCode::from(error::EXIT_BAD_INPUT);
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

/// Clap's error text as one line: its lines up to the first blank one, trimmed and joined.
fn usage_message(text: &str) -> String {
    let mut message = String::new();
    for line in text.lines().map(str::trim).take_while(|l| !l.is_empty()) {
        if !message.is_empty() {
            message.push(' ');
        }
        message.push_str(line);
    }
    match message.strip_prefix("error: ") {
        Some(rest) => rest.to_owned(),
        None => message,
    }
}
