//! `mxfed-loadgen`: plays a remote homeserver against a target (mxfed or Synapse) to measure
//! federation ingest, and drives two `mxfed serve` instances end to end.
//!
//! `ingest` owns a fresh signing key and serves `/_matrix/key/v2/server` (and minimal answers to
//! `/version`, `/send`, `/event`, …) on a loopback TLS port, so the target can fetch its key; it
//! joins a public room on the target through `make_join`/`send_join` (v2), then sends
//! transactions of `m.room.message` PDUs built with the core's event builder (prev events,
//! auth events, depth, hashes, signature). The PDUs are built and signed before the clock
//! starts. With `--concurrency K`, K chains of PDUs fork from our join and each chain's
//! transactions go one after another, so K transactions are in flight; but a server processes
//! one transaction per origin at a time (mxfed and Synapse answer a second one with 429), so
//! the meaningful setting is 1 (sequential), the way a real sending server behaves. It reports accepted
//! PDUs/s, transaction latency, the target's CPU time and peak RSS, and the same PDUs timed
//! through the core's checks in process.
//!
//! `e2e` sends messages as several users of server A through A's admin API and waits until all
//! are in server B's timeline.
//!
//! What it does not do: check what the target sends back (it acknowledges and drops it), or
//! authenticate the target's requests to it. It is a benchmark tool, not a server.
//!
//! ```sh
//! mxfed-loadgen ingest --target localhost:8448 --room '!abc:localhost:8448' --txns 100 --concurrency 4
//! ```

mod e2e;
mod fed;
mod ingest;
mod stats;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "mxfed-loadgen",
    version,
    about = "Federation load generator for mxfed and Synapse"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Join a room on the target as a remote server and stream transactions of messages at it.
    Ingest(ingest::Args),
    /// Users of server A send messages via A's admin API; time until all are on server B.
    E2e(e2e::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mxfed-loadgen: runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let r = rt.block_on(async move {
        match cli.cmd {
            Cmd::Ingest(args) => ingest::run(args).await,
            Cmd::E2e(args) => e2e::run(args).await,
        }
    });
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mxfed-loadgen: error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
