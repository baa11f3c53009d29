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

use std::path::PathBuf;

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
    Ingest {
        /// The target's server name, `host:port` (reached at https://host:port).
        #[arg(long)]
        target: String,
        /// The room to join (its join rule must be public).
        #[arg(long)]
        room: String,
        /// Our user's local part.
        #[arg(long, default_value = "loadgen")]
        user: String,
        /// Transactions to send.
        #[arg(long, default_value_t = 100)]
        txns: usize,
        /// PDUs per transaction (50 is the protocol's maximum).
        #[arg(long, default_value_t = 50)]
        pdus_per_txn: usize,
        /// Transactions in flight at once; 1 is sequential.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// The target's pid: its CPU time and peak RSS are read from /proc.
        #[arg(long)]
        target_pid: Option<u32>,
        /// Where our key server listens.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// Label of the result line.
        #[arg(long, default_value = "target")]
        label: String,
        /// Rounds of the in-process core timing.
        #[arg(long, default_value_t = 3)]
        check_rounds: usize,
    },
    /// Users of server A send messages via A's admin API; time until all are on server B.
    E2e {
        /// Server A's data directory.
        #[arg(long)]
        a: PathBuf,
        /// Server B's data directory.
        #[arg(long)]
        b: PathBuf,
        /// The room.
        #[arg(long)]
        room: String,
        /// Sender local parts on A, comma-separated.
        #[arg(long, value_delimiter = ',')]
        users: Vec<String>,
        /// Messages in all.
        #[arg(long, default_value_t = 4000)]
        messages: usize,
        /// Messages per admin request: 1 uses `/send`, more use `/send_batch`.
        #[arg(long, default_value_t = 1)]
        batch: usize,
    },
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
            Cmd::Ingest {
                target,
                room,
                user,
                txns,
                pdus_per_txn,
                concurrency,
                target_pid,
                listen,
                label,
                check_rounds,
            } => {
                ingest::run(ingest::Args {
                    target,
                    room,
                    user,
                    txns,
                    pdus_per_txn,
                    concurrency,
                    target_pid,
                    listen,
                    label,
                    check_rounds,
                })
                .await
            }
            Cmd::E2e {
                a,
                b,
                room,
                users,
                messages,
                batch,
            } => {
                e2e::run(e2e::Args {
                    a,
                    b,
                    room,
                    users,
                    messages,
                    batch,
                })
                .await
            }
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
