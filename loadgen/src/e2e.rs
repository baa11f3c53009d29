//! `mxfed-loadgen e2e`: users of server A send messages through A's admin API, concurrently;
//! we time until every message is in server B's copy of the room.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::fed::{encode_segment, now_ms};
use crate::stats::{self, ProcSample};

/// What to run.
#[derive(clap::Args)]
pub struct Args {
    /// Server A's data directory.
    // The senders' server.
    #[arg(long)]
    pub a: PathBuf,
    /// Server B's data directory.
    // Where we wait.
    #[arg(long)]
    pub b: PathBuf,
    /// The room.
    // Joined by the senders on A and by someone on B.
    #[arg(long)]
    pub room: String,
    /// Sender local parts on A, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub users: Vec<String>,
    /// Messages in all.
    // Split evenly over the users.
    #[arg(long, default_value_t = 4000)]
    pub messages: usize,
    /// Messages per admin request: 1 uses `/send`, more use `/send_batch`.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
}

struct Admin {
    url: String,
    token: String,
    pid: Option<u32>,
}

fn admin(dir: &Path) -> Result<Admin, String> {
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f)).map_err(|e| format!("{}: {e}", dir.join(f).display()))
    };
    let j: serde_json::Value =
        serde_json::from_str(&read("admin.json")?).map_err(|e| format!("admin.json: {e}"))?;
    Ok(Admin {
        url: j
            .get("url")
            .and_then(serde_json::Value::as_str)
            .ok_or("admin.json has no url")?
            .to_owned(),
        token: read("admin.token")?.trim().to_owned(),
        pid: j
            .get("pid")
            .and_then(serde_json::Value::as_u64)
            .and_then(|p| u32::try_from(p).ok()),
    })
}

/// Runs the measurement; prints a summary and a `RESULT {json}` line.
///
/// # Errors
/// Setup failures and failed sends.
pub async fn run(a: Args) -> Result<(), String> {
    let sa = Arc::new(admin(&a.a)?);
    let sb = admin(&a.b)?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(900))
        .build()
        .map_err(|e| format!("http client: {e}"))?;
    let room = encode_segment(&a.room);
    let per_user = a.messages / a.users.len().max(1);
    let run_id = format!("e2e{}", now_ms());
    let before = (
        sa.pid.and_then(ProcSample::of),
        sb.pid.and_then(ProcSample::of),
    );
    let metrics_before = (metrics(&http, &sa.url).await, metrics(&http, &sb.url).await);
    let load_before = stats::loadavg();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for user in a.users.clone() {
        let (http, sa, room, run_id) = (http.clone(), sa.clone(), room.clone(), run_id.clone());
        let batch = a.batch;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_user);
            let mut last = None;
            let batch = batch.max(1);
            let mut i = 0;
            while i < per_user {
                let n = batch.min(per_user - i);
                let texts: Vec<String> = (i..i + n)
                    .map(|k| {
                        format!(
                            "{run_id} {user} #{k}: an ordinary chat line of an end-to-end federation \
                             test, long enough to look like a real message with a bit of context in it."
                        )
                    })
                    .collect();
                i += n;
                let (path, body) = if batch == 1 {
                    ("send", serde_json::json!({"as": user, "text": texts[0]}))
                } else {
                    let msgs: Vec<serde_json::Value> = texts
                        .iter()
                        .map(|t| serde_json::json!({"as": user, "text": t}))
                        .collect();
                    ("send_batch", serde_json::json!({ "messages": msgs }))
                };
                let t0 = Instant::now();
                let r = http
                    .post(format!("{}/admin/v1/rooms/{room}/{path}", sa.url))
                    .bearer_auth(&sa.token)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .map_err(|e| format!("send: {e}"))?;
                let status = r.status();
                let bytes = r.bytes().await.map_err(|e| format!("send: {e}"))?;
                let j: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| format!("send: {e}"))?;
                if !status.is_success() {
                    return Err(format!("send as {user}: HTTP {status}: {j}"));
                }
                lat.push(t0.elapsed().as_secs_f64() * 1000.0);
                last = j
                    .get("event_id")
                    .or_else(|| j.get("event_ids").and_then(|a| a.as_array()?.last()))
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned);
            }
            Ok::<_, String>((lat, last))
        }));
    }
    let mut lat = Vec::new();
    let mut lasts: Vec<String> = Vec::new();
    for t in tasks {
        let (l, last) = t.await.map_err(|e| format!("task: {e}"))??;
        lat.extend(l);
        lasts.extend(last);
    }
    let sent_at = start.elapsed().as_secs_f64();
    for id in &lasts {
        let r = http
            .get(format!(
                "{}/admin/v1/rooms/{room}/wait?event_id={}&timeout_ms=900000",
                sb.url,
                encode_segment(id)
            ))
            .bearer_auth(&sb.token)
            .send()
            .await
            .map_err(|e| format!("wait on B: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("wait on B for {id}: HTTP {}", r.status()));
        }
    }
    let seen_at = start.elapsed().as_secs_f64();
    let after = (
        sa.pid.and_then(ProcSample::of),
        sb.pid.and_then(ProcSample::of),
    );
    let load_after = stats::loadavg();
    let metrics_after = (metrics(&http, &sa.url).await, metrics(&http, &sb.url).await);
    let delta = |after: &Metrics, before: &Metrics, k: &str| {
        after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0)
    };
    let a_delta = |k: &str| delta(&metrics_after.0, &metrics_before.0, k);
    let b_delta = |k: &str| delta(&metrics_after.1, &metrics_before.1, k);
    let commits = a_delta("mxfed_local_message_commits_total");
    let per_commit = a_delta("mxfed_local_messages_total") / commits.max(1.0);
    let txns = a_delta("mxfed_federation_transaction_send_seconds_count");
    let round_trip_ms =
        a_delta("mxfed_federation_transaction_send_seconds_sum") * 1000.0 / txns.max(1.0);
    let b_txns = b_delta("mxfed_federation_transaction_processing_seconds_count");
    let b_processing_ms =
        b_delta("mxfed_federation_transaction_processing_seconds_sum") * 1000.0 / b_txns.max(1.0);
    // Of that processing, the PDU checks (per transaction) and the commits (each with its fsync).
    let b_checks_ms = b_delta("mxfed_federation_pdu_checks_seconds_sum") * 1000.0
        / b_delta("mxfed_federation_pdu_checks_seconds_count").max(1.0);
    let b_commit_ms = b_delta("mxfed_federation_pdu_commit_seconds_sum") * 1000.0
        / b_delta("mxfed_federation_pdu_commit_seconds_count").max(1.0);
    // Every signed request B got in the run, nearly all of them A's transactions.
    let b_verify_ms = b_delta("mxfed_federation_request_verify_seconds_sum") * 1000.0
        / b_delta("mxfed_federation_request_verify_seconds_count").max(1.0);
    // Every message must be on B, not only the last of each sender.
    let timeline = http
        .get(format!("{}/admin/v1/rooms/{room}/timeline", sb.url))
        .bearer_auth(&sb.token)
        .send()
        .await
        .map_err(|e| format!("timeline on B: {e}"))?
        .text()
        .await
        .map_err(|e| format!("timeline on B: {e}"))?;
    let on_b = timeline.lines().filter(|l| l.contains(&run_id)).count();
    let total = per_user * a.users.len();
    lat.sort_by(f64::total_cmp);
    let cpu = |b: &Option<ProcSample>, a: &Option<ProcSample>| match (b, a) {
        (Some(b), Some(a)) => Some(a.cpu_secs - b.cpu_secs),
        _ => None,
    };
    let (cpu_a, cpu_b) = (cpu(&before.0, &after.0), cpu(&before.1, &after.1));
    let rate = total as f64 / seen_at;
    println!(
        "== end to end: {} senders on A, {per_user} messages each, sequential per sender, {} per admin request",
        a.users.len(),
        a.batch
    );
    println!(
        "sent on A:     {total} in {sent_at:.2} s -> {:.0} PDUs/s (admin request p50 {:.1} ms, p99 {:.1} ms)",
        total as f64 / sent_at,
        stats::percentile(&lat, 50.0),
        stats::percentile(&lat, 99.0)
    );
    println!("all on B:      after {seen_at:.2} s -> {rate:.0} PDUs/s ({on_b} of {total} in B's timeline)");
    if let (Some(x), Some(y)) = (cpu_a, cpu_b) {
        println!("CPU:           A {x:.2} s, B {y:.2} s");
    }
    if let (Some(x), Some(y)) = (&after.0, &after.1) {
        println!(
            "peak RSS:      A {:.1} MiB, B {:.1} MiB",
            x.hwm_kb as f64 / 1024.0,
            y.hwm_kb as f64 / 1024.0
        );
    }
    println!(
        "A:             {commits:.0} commits of {per_commit:.1} messages on average; \
         {txns:.0} transactions to B, round trip {round_trip_ms:.1} ms on average"
    );
    println!(
        "B:             /send processing {b_processing_ms:.1} ms on average ({b_txns:.0} transactions; \
         PDU checks {b_checks_ms:.1} ms, commit {b_commit_ms:.1} ms), X-Matrix verification {b_verify_ms:.1} ms"
    );
    println!("load average:  {load_before} before, {load_after} after");
    let result = serde_json::json!({
        "label": "e2e",
        "senders": a.users.len(),
        "batch": a.batch,
        "messages": total,
        "sent_s": sent_at,
        "seen_s": seen_at,
        "pdus_per_s": rate,
        "send_p50_ms": stats::percentile(&lat, 50.0),
        "send_p99_ms": stats::percentile(&lat, 99.0),
        "on_b": on_b,
        "cpu_a_s": cpu_a,
        "cpu_b_s": cpu_b,
        "hwm_a_kb": after.0.as_ref().map(|s| s.hwm_kb),
        "hwm_b_kb": after.1.as_ref().map(|s| s.hwm_kb),
        "a_commits": commits,
        "a_messages_per_commit": per_commit,
        "a_txns": txns,
        "a_txn_round_trip_ms": round_trip_ms,
        "b_txn_processing_ms": b_processing_ms,
        "b_verify_ms": b_verify_ms,
        "b_checks_ms": b_checks_ms,
        "b_commit_ms": b_commit_ms,
        "load_before": load_before,
        "load_after": load_after,
    });
    println!("RESULT {result}");
    if on_b != total {
        return Err(format!("only {on_b} of {total} messages reached B"));
    }
    Ok(())
}

/// A server's `/metrics` (on its admin listener): sample name (with labels) → value. Empty when
/// it cannot be read: the summary then shows zeros, the run itself is not affected.
type Metrics = std::collections::BTreeMap<String, f64>;

async fn metrics(http: &reqwest::Client, admin_url: &str) -> Metrics {
    let Ok(r) = http.get(format!("{admin_url}/metrics")).send().await else {
        return Metrics::new();
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}
