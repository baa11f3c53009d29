//! Prometheus metrics: `GET /metrics` on the admin listener, in the text exposition format
//! (version 0.0.4), written by hand (counters are atomics; nothing here needs a crate).
//!
//! The admin listener, not the federation one: metrics describe our peers and queues, which is
//! nobody else's business, and the admin listener is the one kept on loopback or an internal
//! network. `/metrics` needs no bearer token there, so a scraper does not hold the token that
//! can act as our users (as Synapse's separate metrics listener).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The EDU types counted by name; any other type is counted as `other` (the label's values
/// must not be chosen by peers).
const EDU_TYPES: [&str; 6] = [
    "m.typing",
    "m.receipt",
    "m.presence",
    "m.device_list_update",
    "m.direct_to_device",
    "m.signing_key_update",
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if s <= *le {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, le) in BUCKETS.iter().enumerate() {
            let n = self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        #[allow(clippy::cast_precision_loss)]
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// The server's counters. Cheap to bump from any handler or task.
#[derive(Debug, Default)]
pub struct Metrics {
    txns_received: AtomicU64,
    txns_sent_ok: AtomicU64,
    txns_sent_failed: AtomicU64,
    pdus_accepted: AtomicU64,
    pdus_rejected: AtomicU64,
    pdus_soft_failed: AtomicU64,
    edus: [AtomicU64; EDU_TYPES.len() + 1],
    rate_limited: AtomicU64,
    acl_denied: AtomicU64,
    /// X-Matrix verification of inbound requests, including fetching the origin's keys.
    pub request_verify: Histogram,
    /// Processing of one inbound `/send` (checks, missing events, room pipeline, storage).
    pub txn_processing: Histogram,
    /// One outbound `/send`, from signing the request to reading the answer.
    pub txn_send: Histogram,
    /// The signature and hash checks of one inbound `/send`'s PDUs (with their key fetches).
    pub pdu_checks: Histogram,
    /// One commit of received PDUs (a `/send`'s PDUs whose prev events are known, stored
    /// together), with its fsync.
    pub pdu_commit: Histogram,
    /// Our users' messages stored through the group commit (`local`).
    local_messages: AtomicU64,
    /// The commits that stored them: messages per commit is the group size.
    local_commits: AtomicU64,
    /// Rooms' writes of events through the commit queue (`rooms::commit_blocking`: received
    /// PDUs, fetched events; `rooms::send_stored_together`: our users' messages) ...
    room_writes: AtomicU64,
    /// ... and the commits that made them: writes per commit is the group size.
    room_commits: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn add(c: &AtomicU64, n: usize) {
    c.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// What became of one received PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PduOutcome {
    /// Accepted into the room.
    Accepted,
    /// Refused: format, signatures, hashes or the room's rules (or the ACL).
    Rejected,
    /// Accepted into the DAG, but not into the current state (soft failure).
    SoftFailed,
}

impl Metrics {
    /// An inbound `/send` transaction was accepted for processing.
    pub fn txn_received(&self) {
        bump(&self.txns_received);
    }
    /// An outbound `/send` got a 200 (`ok`) or not.
    pub fn txn_sent(&self, ok: bool) {
        bump(if ok {
            &self.txns_sent_ok
        } else {
            &self.txns_sent_failed
        });
    }
    /// A received PDU's outcome.
    pub fn pdu(&self, o: PduOutcome) {
        bump(match o {
            PduOutcome::Accepted => &self.pdus_accepted,
            PduOutcome::Rejected => &self.pdus_rejected,
            PduOutcome::SoftFailed => &self.pdus_soft_failed,
        });
    }
    /// A received EDU of `edu_type`.
    pub fn edu(&self, edu_type: &str) {
        let i = EDU_TYPES
            .iter()
            .position(|t| *t == edu_type)
            .unwrap_or(EDU_TYPES.len());
        bump(&self.edus[i]);
    }
    /// A request refused by the per-origin rate limit.
    pub fn rate_limited(&self) {
        bump(&self.rate_limited);
    }
    /// A request refused by a room's server ACL.
    pub fn acl_denied(&self) {
        bump(&self.acl_denied);
    }
    /// A commit of `writes` rooms' writes from the commit queue.
    pub fn room_commit(&self, writes: usize) {
        bump(&self.room_commits);
        add(&self.room_writes, writes);
    }
    /// A group commit of `messages` of our users' messages.
    pub fn local_commit(&self, messages: usize) {
        bump(&self.local_commits);
        add(&self.local_messages, messages);
    }

    /// The exposition text; `queues` are the PDUs waiting per destination.
    pub fn render(&self, queues: &[(String, i64)]) -> String {
        let mut o = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        counter(
            &mut o,
            "mxfed_federation_transactions_received_total",
            "Inbound /send transactions accepted for processing (not retried duplicates).",
            &[("", get(&self.txns_received))],
        );
        counter(
            &mut o,
            "mxfed_federation_transactions_sent_total",
            "Outbound /send transactions, by whether the destination answered 200.",
            &[
                ("outcome=\"ok\"", get(&self.txns_sent_ok)),
                ("outcome=\"failed\"", get(&self.txns_sent_failed)),
            ],
        );
        counter(
            &mut o,
            "mxfed_federation_pdus_received_total",
            "PDUs received in transactions, by outcome.",
            &[
                ("outcome=\"accepted\"", get(&self.pdus_accepted)),
                ("outcome=\"rejected\"", get(&self.pdus_rejected)),
                ("outcome=\"soft_failed\"", get(&self.pdus_soft_failed)),
            ],
        );
        let edu_labels: Vec<(String, u64)> = EDU_TYPES
            .iter()
            .copied()
            .chain(["other"])
            .zip(self.edus.iter())
            .map(|(t, c)| (format!("type=\"{t}\""), get(c)))
            .collect();
        let edu_refs: Vec<(&str, u64)> = edu_labels.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        counter(
            &mut o,
            "mxfed_federation_edus_received_total",
            "EDUs received in transactions, by type.",
            &edu_refs,
        );
        counter(
            &mut o,
            "mxfed_federation_requests_rate_limited_total",
            "Federation requests refused with 429 by the per-origin rate limit.",
            &[("", get(&self.rate_limited))],
        );
        counter(
            &mut o,
            "mxfed_federation_requests_acl_denied_total",
            "Room-scoped federation requests refused with 403 by a room's server ACL.",
            &[("", get(&self.acl_denied))],
        );
        self.request_verify.write(
            &mut o,
            "mxfed_federation_request_verify_seconds",
            "X-Matrix verification of inbound requests, including key fetches.",
        );
        self.txn_processing.write(
            &mut o,
            "mxfed_federation_transaction_processing_seconds",
            "Processing of inbound /send transactions.",
        );
        self.txn_send.write(
            &mut o,
            "mxfed_federation_transaction_send_seconds",
            "Outbound /send round trips, from signing to the answer.",
        );
        self.pdu_checks.write(
            &mut o,
            "mxfed_federation_pdu_checks_seconds",
            "Signature and hash checks of an inbound /send's PDUs, including key fetches.",
        );
        self.pdu_commit.write(
            &mut o,
            "mxfed_federation_pdu_commit_seconds",
            "Commits of received PDUs to storage, each with its fsync.",
        );
        counter(
            &mut o,
            "mxfed_local_messages_total",
            "Our users' messages stored by the group commit of admin sends.",
            &[("", get(&self.local_messages))],
        );
        counter(
            &mut o,
            "mxfed_local_message_commits_total",
            "Group commits of our users' messages (their writes go through the commit queue with received events': mxfed_room_commits_total counts the fsyncs).",
            &[("", get(&self.local_commits))],
        );
        counter(
            &mut o,
            "mxfed_room_writes_total",
            "Rooms' writes of received and fetched events and of our users' messages, made together when they wait for the writer at the same time.",
            &[("", get(&self.room_writes))],
        );
        counter(
            &mut o,
            "mxfed_room_commits_total",
            "Commits (one fsync each) of those writes.",
            &[("", get(&self.room_commits))],
        );
        let _ = writeln!(
            o,
            "# HELP mxfed_outbound_queue_pdus PDUs waiting to be delivered, per destination.\n\
             # TYPE mxfed_outbound_queue_pdus gauge"
        );
        for (dest, n) in queues {
            let _ = writeln!(
                o,
                "mxfed_outbound_queue_pdus{{destination=\"{}\"}} {n}",
                escape(dest)
            );
        }
        o
    }
}

fn counter(o: &mut String, name: &str, help: &str, series: &[(&str, u64)]) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
    for (labels, n) in series {
        if labels.is_empty() {
            let _ = writeln!(o, "{name} {n}");
        } else {
            let _ = writeln!(o, "{name}{{{labels}}} {n}");
        }
    }
}

/// A label value escaped for the exposition format.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `GET /metrics`.
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let queues = state.db().outbound_depths().unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&queues),
    )
        .into_response()
}

/// The `/metrics` route (merged into the admin listener's router by [`admin_app`]).
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .method_not_allowed_fallback(super::fed::method_not_allowed)
        .with_state(state)
}

/// The admin listener's router: the admin API (bearer token) and `/metrics` (no token).
pub fn admin_app(state: Arc<AppState>) -> Router {
    router(state.clone()).merge(super::admin::router(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        let m = Metrics::default();
        m.txn_received();
        m.pdu(PduOutcome::SoftFailed);
        m.edu("m.typing");
        m.edu("com.example.custom");
        m.request_verify.observe(Duration::from_millis(3));
        let text = m.render(&[("a\"b.example".into(), 2)]);
        assert!(text.contains("mxfed_federation_transactions_received_total 1\n"));
        assert!(text.contains("mxfed_federation_pdus_received_total{outcome=\"soft_failed\"} 1\n"));
        assert!(text.contains("mxfed_federation_edus_received_total{type=\"m.typing\"} 1\n"));
        assert!(text.contains("mxfed_federation_edus_received_total{type=\"other\"} 1\n"));
        assert!(text.contains("mxfed_federation_request_verify_seconds_bucket{le=\"0.0025\"} 0\n"));
        assert!(text.contains("mxfed_federation_request_verify_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("mxfed_federation_request_verify_seconds_bucket{le=\"+Inf\"} 1\n"));
        assert!(text.contains("mxfed_federation_request_verify_seconds_count 1\n"));
        assert!(text.contains("mxfed_outbound_queue_pdus{destination=\"a\\\"b.example\"} 2\n"));
        // Every sample line is `name{labels} value` with a numeric value.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap_or_default();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
