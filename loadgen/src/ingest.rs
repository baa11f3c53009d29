//! `mxfed-loadgen ingest`: join a public room on the target as a remote server, then stream
//! signed transactions of `m.room.message` PDUs at it and time the answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mxfed_core::auth::Pdu;
use mxfed_core::canonical::{self, Int, Object, Value};
use mxfed_core::event::{self, build_event, EventRef, EventTemplate, StateMap};
use mxfed_core::keys::SigningKey;
use mxfed_core::pdu::{check_pdu, check_pdu_object, check_pdus, PduCheck, Verdict};
use mxfed_core::room::{causal_order, Room, RoomVerdict};
use mxfed_core::server_keys::{KeyRing, ServerKeys};
use mxfed_core::transaction::{send_path, Transaction};
use mxfed_core::{RoomVersion, Timestamp};

use crate::fed::{self, encode_segment, now_ms, Fed, Prepared};
use crate::stats::{self, ProcSample};

/// What to run.
#[derive(clap::Args)]
pub struct Args {
    /// The target's server name, `host:port` (reached at https://host:port).
    #[arg(long)]
    pub target: String,
    /// The room to join (its join rule must be public).
    #[arg(long)]
    pub room: String,
    /// Our user's local part.
    #[arg(long, default_value = "loadgen")]
    pub user: String,
    /// Transactions to send.
    #[arg(long, default_value_t = 100)]
    pub txns: usize,
    /// PDUs per transaction (50 is the protocol's maximum).
    #[arg(long, default_value_t = 50)]
    pub pdus_per_txn: usize,
    /// Transactions in flight at once; 1 is sequential.
    // Each on its own chain of events.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// The target's pid: its CPU time and peak RSS are read from /proc.
    #[arg(long)]
    pub target_pid: Option<u32>,
    /// Where our key server listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Label of the result line.
    #[arg(long, default_value = "target")]
    pub label: String,
    /// Rounds of the in-process core timing.
    #[arg(long, default_value_t = 3)]
    pub check_rounds: usize,
    /// Users of ours joined to the room before the timed stream (sent untimed, 50 joins per
    /// transaction), so the stream runs in a room with that many more members in its state.
    #[arg(long, default_value_t = 0)]
    pub members: usize,
    /// While the stream runs, also fetch our join event from the target (`GET
    /// /_matrix/federation/v1/event/{id}`), one request at a time with this many milliseconds
    /// between them, and report the reads' latency: how long a peer's read waits behind the
    /// target's ingest. Off (0) by default: the reads cost the target CPU. Keep it at 20 or more
    /// against a default `mxfed serve`, which allows an origin 50 requests per second besides
    /// its transactions.
    #[arg(long, default_value_t = 0)]
    pub read_probe_ms: u64,
}

/// The room as we know it after our join: enough to build messages.
struct Joined {
    version: &'static RoomVersion,
    join: EventRef,
    state: StateMap,
    /// The join's state and auth chain and our join, checked, to rebuild the room in process.
    room: Room,
}

fn random_seed() -> Result<[u8; 32], String> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| format!("entropy: {e}"))?;
    Ok(seed)
}

fn event_ref(ev: &Object, v: &RoomVersion) -> Result<EventRef, String> {
    let event_id = event::event_id(ev, v).map_err(|e| format!("event ID: {e}"))?;
    let sha256 = v
        .event_refs_with_hashes
        .then(|| mxfed_core::base64::encode(event::reference_hash(ev, v)));
    Ok(EventRef {
        event_id,
        depth: ev.get("depth").and_then(Value::as_int).unwrap_or(0),
        sha256,
    })
}

fn objects(v: Option<&Value>) -> Vec<Object> {
    v.and_then(Value::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_object)
        .cloned()
        .collect()
}

/// make_join, sign, send_join (v2); builds the room in process from the answer.
async fn join(fed: &Fed, room_id: &str, user_id: &str, ring: &KeyRing) -> Result<Joined, String> {
    let vers: String = (1..=12).map(|n| format!("ver={n}&")).collect();
    let path = format!(
        "/_matrix/federation/v1/make_join/{}/{}?{}",
        encode_segment(room_id),
        encode_segment(user_id),
        vers.trim_end_matches('&')
    );
    let answer = fed.json("GET", &path, None).await?;
    let version = answer.get_str("room_version").unwrap_or("1");
    let v = RoomVersion::get(version).map_err(|e| format!("room version {version}: {e}"))?;
    let mut ev = answer
        .get_object("event")
        .cloned()
        .ok_or("make_join answer has no event")?;
    ev.remove("signatures");
    ev.remove("hashes");
    ev.remove("unsigned");
    ev.insert("origin_server_ts", Int::saturating(now_ms()));
    ev.insert("origin", fed.origin.as_str());
    if v.event_id_format == mxfed_core::room_version::EventIdFormat::Explicit {
        ev.insert("event_id", format!("$join{}:{}", now_ms(), fed.origin));
    }
    event::hash_and_sign_event(&mut ev, v, &fed.origin, &fed.key)
        .map_err(|e| format!("signing the join: {e}"))?;
    let join_ref = event_ref(&ev, v)?;
    let path = format!(
        "/_matrix/federation/v2/send_join/{}/{}",
        encode_segment(room_id),
        encode_segment(&join_ref.event_id)
    );
    let answer = fed
        .json("PUT", &path, Some(&Value::Object(ev.clone())))
        .await?;
    let state_events = objects(answer.get("state"));
    let chain = objects(
        answer
            .get("auth_chain")
            .or_else(|| answer.get("auth_events")),
    );

    let mut state = StateMap::new();
    let mut state_ids = mxfed_core::state_res::StateMap::new();
    for e in &state_events {
        if let (Some(t), Some(k)) = (e.get_str("type"), e.get_str("state_key")) {
            let r = event_ref(e, v)?;
            state_ids.insert((t.to_owned(), k.to_owned()), r.event_id.clone());
            state.insert((t.to_owned(), k.to_owned()), r);
        }
    }
    state.insert(
        ("m.room.member".to_owned(), user_id.to_owned()),
        join_ref.clone(),
    );

    // The same room in process, for the "full check" timing: outliers in causal order, then
    // our join with the state the resident gave.
    let mut room = Room::new(v);
    let mut good: Vec<(PduCheck, Pdu)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for e in chain.into_iter().chain(state_events) {
        let c = check_pdu_object(e, v, ring);
        if let Some(p) = c.pdu(v) {
            if seen.insert(p.event_id.clone()) {
                good.push((c, p));
            }
        }
    }
    let pdus: Vec<Pdu> = good.iter().map(|(_, p)| p.clone()).collect();
    for i in causal_order(&pdus) {
        room.add_outlier(&good[i].0);
    }
    let verdict = room.receive_with_state(&check_pdu_object(ev, v, ring), state_ids);
    if verdict != RoomVerdict::Accepted {
        return Err(format!(
            "our join does not pass the in-process room check: {verdict:?}"
        ));
    }
    Ok(Joined {
        version: v,
        join: join_ref,
        state,
        room,
    })
}

/// Joins `n` more users of ours (`@member{i}:origin`), each on the previous event, sent in
/// transactions of 50 before the clock starts; the joins go into the in-process room too and
/// the stream is built on the last of them.
async fn add_members(
    fed: &Fed,
    j: &mut Joined,
    room_id: &str,
    n: usize,
    ring: &KeyRing,
    served: &fed::Served,
) -> Result<(), String> {
    let run = now_ms();
    let mut pdus: Vec<Object> = Vec::new();
    for i in 0..n {
        let user = format!("@member{i}:{}", fed.origin);
        let mut content = Object::new();
        content.insert("membership", "join");
        let template = EventTemplate {
            room_id: Some(room_id.to_owned()),
            event_type: "m.room.member".to_owned(),
            sender: user.clone(),
            state_key: Some(user.clone()),
            content,
            redacts: None,
        };
        let local = format!("j{run}_{i}");
        let built = build_event(
            j.version,
            &fed.origin,
            &template,
            std::slice::from_ref(&j.join),
            &j.state,
            Timestamp::from_i64(now_ms()),
            &fed.key,
            Some(&local),
        )
        .map_err(|e| format!("building a join: {e}"))?;
        let r = event_ref(&built.pdu, j.version)?;
        served.remember(&built.event_id, &built.pdu);
        let verdict = j
            .room
            .receive(&check_pdu_object(built.pdu.clone(), j.version, ring));
        if verdict != RoomVerdict::Accepted {
            return Err(format!("join {i} fails the in-process room: {verdict:?}"));
        }
        j.state
            .insert(("m.room.member".to_owned(), user), r.clone());
        j.join = r;
        pdus.push(built.pdu);
    }
    for (t, chunk) in pdus.chunks(50).enumerate() {
        let txn = Transaction::new(
            fed.origin.clone(),
            Timestamp::from_i64(now_ms()),
            chunk.to_vec(),
            Vec::new(),
        );
        let path = send_path(&format!("lgm{run}-{t}"));
        let (status, bytes) = fed
            .send(&fed.prepare("PUT", &path, Some(&Value::Object(txn.to_object()))))
            .await?;
        let (_, errors, first) = count_answer(status, &bytes, chunk.len());
        if errors > 0 {
            return Err(format!(
                "{errors} joins refused: {}",
                first.unwrap_or_default()
            ));
        }
    }
    Ok(())
}

/// About 1 KB on the wire with the PDU's envelope: a plain and an HTML body with non-ASCII text.
fn message_content(chain: usize, i: usize) -> Object {
    let words = "Grüße aus dem Lasttest — ingest benchmark line with some ordinary chat text";
    let body = format!("[{chain}/{i}] {words}; {words}; {words}.");
    let html =
        format!("<p><b>[{chain}/{i}]</b> {words}; <i>{words}</i>; <code>{words}</code>.</p>");
    let mut c = Object::new();
    c.insert("msgtype", "m.text");
    c.insert("body", body);
    c.insert("format", "org.matrix.custom.html");
    c.insert("formatted_body", html);
    c.insert("m.mentions", Object::new());
    c
}

/// One chain's worth of transactions, ready to send, and the PDUs' bytes for the check timing.
struct Plan {
    chains: Vec<Vec<Prepared>>,
    pdu_bytes: Vec<Vec<u8>>,
}

fn build_plan(fed: &Fed, j: &Joined, a: &Args, user_id: &str, served: &fed::Served) -> Plan {
    let k = a.concurrency.max(1);
    let mut chains: Vec<Vec<Prepared>> = (0..k).map(|_| Vec::new()).collect();
    let mut pdu_bytes = Vec::new();
    let mut prev: Vec<EventRef> = vec![j.join.clone(); k];
    let run = now_ms();
    for t in 0..a.txns {
        let c = t % k;
        let mut pdus = Vec::with_capacity(a.pdus_per_txn);
        for i in 0..a.pdus_per_txn {
            let template = EventTemplate {
                room_id: Some(a.room.clone()),
                event_type: "m.room.message".to_owned(),
                sender: user_id.to_owned(),
                state_key: None,
                content: message_content(c, t * a.pdus_per_txn + i),
                redacts: None,
            };
            let local = format!("m{run}_{t}_{i}");
            let built = match build_event(
                j.version,
                &fed.origin,
                &template,
                std::slice::from_ref(&prev[c]),
                &j.state,
                Timestamp::from_i64(now_ms()),
                &fed.key,
                Some(&local),
            ) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("mxfed-loadgen: building a PDU failed: {e}");
                    continue;
                }
            };
            prev[c] = match event_ref(&built.pdu, j.version) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("mxfed-loadgen: {e}");
                    continue;
                }
            };
            served.remember(&built.event_id, &built.pdu);
            pdu_bytes.push(built.pdu.to_canonical_string().into_bytes());
            pdus.push(built.pdu);
        }
        let txn = Transaction::new(
            fed.origin.clone(),
            Timestamp::from_i64(now_ms()),
            pdus,
            Vec::new(),
        );
        let body = Value::Object(txn.to_object());
        let path = send_path(&format!("lg{run}-{t}"));
        chains[c].push(fed.prepare("PUT", &path, Some(&body)));
    }
    Plan { chains, pdu_bytes }
}

/// Per-transaction outcome.
struct TxnResult {
    latency: Duration,
    accepted: usize,
    errors: usize,
}

fn count_answer(status: u16, bytes: &[u8], sent: usize) -> (usize, usize, Option<String>) {
    if status != 200 {
        return (
            0,
            sent,
            Some(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            )),
        );
    }
    let Ok(o) = canonical::parse_object(bytes, &canonical::ParseOptions::LEGACY) else {
        return (0, sent, Some("answer is not JSON".to_owned()));
    };
    let Some(pdus) = o.get_object("pdus") else {
        return (0, sent, Some("answer has no pdus".to_owned()));
    };
    let mut first = None;
    let mut errors = 0;
    for (id, r) in pdus.iter() {
        if let Some(e) = r.as_object().and_then(|r| r.get("error")) {
            errors += 1;
            if first.is_none() {
                first = Some(format!(
                    "{id}: {}",
                    String::from_utf8_lossy(&canonical::to_vec(e))
                ));
            }
        }
    }
    (sent.saturating_sub(errors), errors, first)
}

/// Runs the whole ingest measurement and prints a human summary and a `RESULT {json}` line.
///
/// # Errors
/// Setup failures (keys, join); transaction failures are counted, not fatal.
/// Reads one event from the target until `stop`, one request at a time, `pause` apart; the
/// latencies in milliseconds, sorted. Any answer but 200 is an error.
async fn read_probe(
    fed: Arc<Fed>,
    event_id: String,
    pause: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<Vec<f64>, String> {
    let path = format!("/_matrix/federation/v1/event/{}", encode_segment(&event_id));
    let mut out = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let p = fed.prepare("GET", &path, None);
        let t0 = Instant::now();
        let (status, body) = fed.send(&p).await?;
        out.push(t0.elapsed().as_secs_f64() * 1000.0);
        if status != 200 {
            return Err(format!(
                "GET {path}: {status} {}",
                String::from_utf8_lossy(&body)
            ));
        }
        tokio::time::sleep(pause).await;
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

pub async fn run(a: Args) -> Result<(), String> {
    let key =
        SigningKey::from_seed("lg", &random_seed()?).map_err(|e| format!("signing key: {e}"))?;
    let (origin, served) = fed::serve(&a.listen, &key).await?;
    let user_id = format!("@{}:{origin}", a.user);
    let fed = Arc::new(Fed::new(origin.clone(), key.clone(), a.target.clone())?);
    eprintln!(
        "mxfed-loadgen: we are {origin}, joining {} on {}",
        a.room, a.target
    );

    // Keys: ours and the target's, for the in-process checks.
    let mut ring = KeyRing::new();
    let target_keys = fed.json("GET", "/_matrix/key/v2/server", None).await?;
    ring.add(&ServerKeys::from_response(&target_keys).map_err(|e| format!("target keys: {e}"))?);
    let own = mxfed_core::server_keys::build_server_keys(
        &origin,
        std::slice::from_ref(&key),
        &[],
        Int::saturating(now_ms().saturating_add(86_400_000)),
    )
    .map_err(|e| format!("own keys: {e}"))?;
    ring.add(&ServerKeys::from_response(&own).map_err(|e| format!("own keys: {e}"))?);

    let mut joined = join(&fed, &a.room, &user_id, &ring).await?;
    eprintln!(
        "mxfed-loadgen: joined as {user_id} (room version {}, join {})",
        joined.version.id, joined.join.event_id
    );
    if a.members > 0 {
        add_members(&fed, &mut joined, &a.room, a.members, &ring, &served).await?;
        eprintln!(
            "mxfed-loadgen: {} more members joined; the room's state has {} entries",
            a.members,
            joined.state.len()
        );
    }

    let t_build = Instant::now();
    let plan = build_plan(&fed, &joined, &a, &user_id, &served);
    let total_pdus = plan.pdu_bytes.len();
    let avg_bytes = plan.pdu_bytes.iter().map(Vec::len).sum::<usize>() / total_pdus.max(1);
    eprintln!(
        "mxfed-loadgen: built and signed {total_pdus} PDUs (average {avg_bytes} bytes) in {} \
         transactions on {} chains in {:.2}s",
        a.txns,
        plan.chains.len(),
        t_build.elapsed().as_secs_f64()
    );

    // The timed part: each chain's transactions in order, the chains concurrently.
    let before_target = a.target_pid.and_then(ProcSample::of);
    let before_self = ProcSample::of(std::process::id());
    let load_before = stats::loadavg();
    let start = Instant::now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = (a.read_probe_ms > 0).then(|| {
        tokio::spawn(read_probe(
            fed.clone(),
            joined.join.event_id.clone(),
            Duration::from_millis(a.read_probe_ms),
            stop.clone(),
        ))
    });
    let mut tasks = Vec::new();
    for chain in plan.chains {
        let fed = fed.clone();
        let per = a.pdus_per_txn;
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for p in chain {
                let t0 = Instant::now();
                let r = fed.send(&p).await;
                let latency = t0.elapsed();
                let (accepted, errors, first) = match r {
                    Ok((status, bytes)) => count_answer(status, &bytes, per),
                    Err(e) => (0, per, Some(e)),
                };
                if let Some(f) = first {
                    eprintln!("mxfed-loadgen: {} rejected: {f}", p.path);
                }
                out.push(TxnResult {
                    latency,
                    accepted,
                    errors,
                });
            }
            out
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.extend(t.await.map_err(|e| format!("sender task: {e}"))?);
    }
    let wall = start.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = match probe {
        Some(p) => Some(p.await.map_err(|e| format!("read probe: {e}"))??),
        None => None,
    };
    let after_target = a.target_pid.and_then(ProcSample::of);
    let after_self = ProcSample::of(std::process::id());
    let load_after = stats::loadavg();

    let accepted: usize = results.iter().map(|r| r.accepted).sum();
    let errors: usize = results.iter().map(|r| r.errors).sum();
    let mut lat: Vec<f64> = results
        .iter()
        .map(|r| r.latency.as_secs_f64() * 1000.0)
        .collect();
    lat.sort_by(f64::total_cmp);
    let p50 = stats::percentile(&lat, 50.0);
    let p99 = stats::percentile(&lat, 99.0);
    let pdus_per_s = accepted as f64 / wall;
    let target_cpu = match (&before_target, &after_target) {
        (Some(b), Some(a)) => Some(a.cpu_secs - b.cpu_secs),
        _ => None,
    };
    let self_cpu = match (&before_self, &after_self) {
        (Some(b), Some(a)) => Some(a.cpu_secs - b.cpu_secs),
        _ => None,
    };

    // Validation cost: the same PDUs through the core in this process, single-threaded.
    let v = joined.version;
    let refs: Vec<&[u8]> = plan.pdu_bytes.iter().map(Vec::as_slice).collect();
    let mut batch = Vec::new();
    let mut single = Vec::new();
    let mut full = Vec::new();
    let mut full_ok = 0;
    for _ in 0..a.check_rounds.max(1) {
        let t = Instant::now();
        let checks = check_pdus(&refs, v, &ring);
        batch.push(t.elapsed().as_secs_f64());
        let bad = checks
            .iter()
            .filter(|c| !matches!(c.verdict, Verdict::Accepted))
            .count();
        if bad > 0 {
            eprintln!("mxfed-loadgen: {bad} PDUs fail the in-process check_pdus");
        }
        let t = Instant::now();
        for b in &refs {
            std::hint::black_box(check_pdu(b, v, &ring));
        }
        single.push(t.elapsed().as_secs_f64());
        let mut room = joined.room.clone();
        let t = Instant::now();
        full_ok = 0;
        for b in &refs {
            let c = check_pdu(b, v, &ring);
            if room.receive(&c) == RoomVerdict::Accepted {
                full_ok += 1;
            }
        }
        full.push(t.elapsed().as_secs_f64());
    }
    let rate = |xs: &[f64]| total_pdus as f64 / stats::median(xs);
    let best = |xs: &[f64]| total_pdus as f64 / xs.iter().copied().fold(f64::INFINITY, f64::min);
    let core_batch = rate(&batch);
    let cores_used = target_cpu.map(|c| c / wall);
    let per_core = cores_used.map(|c| pdus_per_s / c.max(1e-9));
    let ratio = per_core.map(|p| p / core_batch);
    // The check the server runs: one PDU at a time (its verdicts are libsodium's).
    let ratio_single = per_core.map(|p| p / rate(&single));

    let mode = if a.concurrency <= 1 {
        "sequential (1 transaction in flight)".to_owned()
    } else {
        format!(
            "{} transactions in flight (one per chain of PDUs)",
            a.concurrency
        )
    };
    println!("== {} ({})", a.label, a.target);
    println!(
        "mode:              {mode}, {} PDUs per transaction",
        a.pdus_per_txn
    );
    println!(
        "sent:              {total_pdus} PDUs of {avg_bytes} bytes on average in {} transactions",
        results.len()
    );
    println!("accepted:          {accepted} ({errors} with an error)");
    println!("wall:              {wall:.2} s -> {pdus_per_s:.0} PDUs/s");
    println!(
        "txn latency:       p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms",
        lat.last().copied().unwrap_or(0.0)
    );
    if let (Some(c), Some(u)) = (target_cpu, cores_used) {
        println!(
            "target CPU:        {c:.2} s ({u:.2} cores) -> {:.0} PDUs/s per core used",
            per_core.unwrap_or(0.0)
        );
    }
    if let Some(c) = self_cpu {
        println!("loadgen CPU:       {c:.2} s during the run");
    }
    if let Some(s) = &after_target {
        println!(
            "target memory:     peak RSS (VmHWM) {:.1} MiB, RSS now {:.1} MiB",
            s.hwm_kb as f64 / 1024.0,
            s.rss_kb as f64 / 1024.0
        );
    }
    println!(
        "core, in process:  check_pdus {:.0} PDUs/s (best {:.0}), check_pdu one by one {:.0} \
         (best {:.0}), check_pdu + Room::receive {:.0} (best {:.0}; {full_ok} accepted), per core, \
         median of {} rounds",
        core_batch,
        best(&batch),
        rate(&single),
        best(&single),
        rate(&full),
        best(&full),
        batch.len()
    );
    if let (Some(r), Some(s)) = (ratio, ratio_single) {
        println!(
            "target per core / core check_pdu: {:.0}%, / check_pdus: {:.0}% (issue 5 goal: >= 70%)",
            s * 100.0,
            r * 100.0
        );
    }
    if let Some(r) = &reads {
        println!(
            "reads meanwhile:   {} GET /event, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            r.len(),
            stats::percentile(r, 50.0),
            stats::percentile(r, 99.0),
            r.last().copied().unwrap_or(0.0)
        );
    }
    println!("load average:      {load_before} before, {load_after} after");
    let result = serde_json::json!({
        "label": a.label,
        "target": a.target,
        "concurrency": a.concurrency,
        "pdus_per_txn": a.pdus_per_txn,
        "txns": results.len(),
        "pdus": total_pdus,
        "avg_pdu_bytes": avg_bytes,
        "members_added": a.members,
        "accepted": accepted,
        "errors": errors,
        "wall_s": wall,
        "pdus_per_s": pdus_per_s,
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": lat.last().copied(),
        "target_cpu_s": target_cpu,
        "target_cores_used": cores_used,
        "target_pdus_per_s_per_core": per_core,
        "loadgen_cpu_s": self_cpu,
        "target_vm_hwm_kb": after_target.as_ref().map(|s| s.hwm_kb),
        "target_vm_rss_kb": after_target.as_ref().map(|s| s.rss_kb),
        "core_check_pdus_per_s": core_batch,
        "core_check_pdu_per_s": rate(&single),
        "core_full_per_s": rate(&full),
        "ratio_to_core": ratio,
        "ratio_to_check_pdu": ratio_single,
        "reads": reads.as_ref().map(Vec::len),
        "read_p50_ms": reads.as_ref().map(|r| stats::percentile(r, 50.0)),
        "read_p99_ms": reads.as_ref().map(|r| stats::percentile(r, 99.0)),
        "load_before": load_before,
        "load_after": load_after,
    });
    println!("RESULT {result}");
    Ok(())
}
