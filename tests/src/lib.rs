//! The cross-host conformance runner.
//!
//! `tests/vectors/` is the single source of truth. Every host (the core called directly, the
//! `mxfed` CLI, and later wasm, JS and Python) implements [`Host`] — a handful of operations with
//! the same names everywhere — and [`run_all`] feeds it every vector, comparing outputs byte for
//! byte and error codes exactly. Adding a host means implementing [`Host`]; nothing else.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use serde_json::Value as J;

/// What an operation gave: the output bytes, or the stable error code.
pub type Outcome = Result<Vec<u8>, String>;

/// The operations every host exposes, with inputs and outputs as bytes.
///
/// Outputs are canonical JSON (or plain text for IDs and base64) without a trailing newline.
pub trait Host {
    /// A short name for reports.
    fn name(&self) -> String;
    /// Canonical JSON of arbitrary JSON (numbers normalised as the spec's examples ask).
    fn canonical_json(&self, input: &[u8]) -> Outcome;
    /// Sign a JSON object with a key given by seed, as `server`; canonical output.
    fn sign_json(&self, seed_b64: &str, version: &str, server: &str, input: &[u8]) -> Outcome;
    /// Verify `server`'s signature with one public key; output is ignored, only Ok/Err matter.
    fn verify_json(&self, server: &str, key_id: &str, public_b64: &str, input: &[u8]) -> Outcome;
    /// The public key (base64) of a seed.
    fn public_key(&self, seed_b64: &str) -> Outcome;
    /// Content hash of an event (unpadded base64).
    fn content_hash(&self, room_version: &str, event: &[u8]) -> Outcome;
    /// Reference hash of an event (unpadded base64).
    fn reference_hash(&self, room_version: &str, event: &[u8]) -> Outcome;
    /// Event ID.
    fn event_id(&self, room_version: &str, event: &[u8]) -> Outcome;
    /// Room ID of a v12+ create event.
    fn room_id(&self, room_version: &str, event: &[u8]) -> Outcome;
    /// Redacted event, canonical.
    fn redact(&self, room_version: &str, event: &[u8]) -> Outcome;
    /// Hash and sign an event; canonical output.
    fn hash_and_sign_event(
        &self,
        room_version: &str,
        seed_b64: &str,
        version: &str,
        server: &str,
        event: &[u8],
    ) -> Outcome;
    /// Check PDUs (JSONL in) against key responses; JSONL of verdict objects out.
    fn check_pdus(&self, room_version: &str, keys: &[Vec<u8>], pdus_jsonl: &[u8]) -> Outcome;
    /// The `Authorization` header value(s) for a request, one line per key.
    #[allow(clippy::too_many_arguments)]
    fn sign_request(
        &self,
        seed_b64: &str,
        version: &str,
        origin: &str,
        destination: &str,
        method: &str,
        uri: &str,
        content: Option<&[u8]>,
    ) -> Outcome;
    /// Verify X-Matrix header values for a request to `destination` at `now_ms`; output is the
    /// authenticated origin.
    #[allow(clippy::too_many_arguments)]
    fn verify_request(
        &self,
        destination: &str,
        keys: &[Vec<u8>],
        method: &str,
        uri: &str,
        content: Option<&[u8]>,
        headers: &[String],
        now_ms: u64,
    ) -> Outcome;
    /// Our signed `/_matrix/key/v2/server` response, valid until `valid_until_ts`.
    fn server_keys(
        &self,
        seed_b64: &str,
        version: &str,
        server: &str,
        valid_until_ts: u64,
    ) -> Outcome;
    /// Whether the input is canonical JSON already (`is_canonical`): `true` or `false`, never
    /// an error (input that does not parse is not canonical). Required.
    fn is_canonical_json(&self, _input: &[u8]) -> Option<Outcome> {
        None
    }
    /// Unpadded base64 of bytes, for hosts that expose it.
    fn base64_encode(&self, _bytes: &[u8]) -> Option<Outcome> {
        None
    }
    /// Whether a server ACL (`m.room.server_acl` content, JSON) lets `server_name` take part:
    /// `true` or `false`. Required: [`Report::assert_ok`] fails a host that leaves it out.
    fn server_acl_allows(&self, _content: &[u8], _server_name: &str) -> Option<Outcome> {
        None
    }
    /// The discovery plan for `server_name` as canonical JSON: the first step without
    /// `well_known`, the step after the well-known fetch with its body (empty: the fetch
    /// failed). Required.
    fn discovery_plan(&self, _server_name: &str, _well_known: Option<&[u8]>) -> Option<Outcome> {
        None
    }
    /// The SRV record to connect to from a JSON list of records: canonical JSON
    /// `{"host","port"}`, or `null`. Required.
    fn pick_srv(&self, _records: &[u8]) -> Option<Outcome> {
        None
    }
    /// Every target of an SRV answer in the order to try them, or what else it says: canonical
    /// JSON `{"action":"connect","targets":[…]}`, `{"action":"unavailable"}` or
    /// `{"action":"next"}`. Required.
    fn srv_targets(&self, _records: &[u8]) -> Option<Outcome> {
        None
    }
    /// How long to use a valid well-known answer with these `Cache-Control` and `Expires`
    /// header values, received at `now_ms`: the lifetime in milliseconds, as decimal text.
    /// Required.
    fn well_known_lifetime(
        &self,
        _cache_control: Option<&str>,
        _expires: Option<&str>,
        _now_ms: u64,
    ) -> Option<Outcome> {
        None
    }
    /// Whether a server may see an event, given the `history_visibility` value in force after
    /// it (`None`: no such event) and the memberships of that server's users after it:
    /// canonical JSON `{"history_visibility","may_see"}`. Required.
    fn server_may_see(&self, _visibility: Option<&str>, _memberships: &[&str]) -> Option<Outcome> {
        None
    }
    /// A whole room replayed (`mxfed room replay`): the PDUs (JSONL, any order) checked against
    /// the key responses, ordered causally and run through the room pipeline. Output: one
    /// canonical verdict object per PDU, in processing order, then `{"state":[…]}`, the final
    /// current state, one per line. Required.
    fn room_replay(&self, _room_version: &str, _keys: &[Vec<u8>], _pdus: &[u8]) -> Option<Outcome> {
        None
    }
    /// The restricted-join decision of the resident server on the room the PDUs make (received
    /// as [`Host::room_replay`] does): the resident's users are those of `server_name`, and
    /// `joined_to` lists the allowed rooms it knows with whether `user_id` is joined to each.
    /// Canonical JSON `{"via": user or null}`, or the refusal's code. Required.
    #[allow(clippy::too_many_arguments)]
    fn restricted_join(
        &self,
        _room_version: &str,
        _keys: &[Vec<u8>],
        _pdus: &[u8],
        _user_id: &str,
        _server_name: &str,
        _joined_to: &[(&str, bool)],
    ) -> Option<Outcome> {
        None
    }
    /// Our signed membership event completed from a `make_*` answer, signed with the key of
    /// seed `seed` and version `version`; `request` is JSON `{"room_id","user_id","membership",
    /// "origin","now_ms","content"?,"event_id_localpart"?}`. Canonical JSON
    /// `{"event_id","room_version","event"}`, or the refusal's code. Required.
    fn membership_from_template(
        &self,
        _seed: &str,
        _version: &str,
        _answer: &[u8],
        _request: &[u8],
    ) -> Option<Outcome> {
        None
    }
}

/// Vector kinds every host must run (optional [`Host`] methods that are not optional).
pub const REQUIRED_KINDS: &[&str] = &[
    "acl",
    "canonical_check",
    "discovery_plan",
    "pick_srv",
    "srv_targets",
    "well_known_lifetime",
    "history_visibility",
    "room_replay_verdicts",
    "room_replay_state",
    "restricted_join",
    "membership_template",
];

/// The vectors directory.
pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

fn load_json(rel: &str) -> J {
    let p = vectors_dir().join(rel);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// Canonical bytes of a serde value, via Python-compatible rules (used only to compare
/// expectations; the host under test produces its own bytes).
fn canon(v: &J) -> Vec<u8> {
    mxfed_core::canonical::canonicalize(serde_json::to_string(v).unwrap().as_bytes()).unwrap()
}

/// The results of one run.
#[derive(Debug, Default)]
pub struct Report {
    /// Checks that passed.
    pub passed: usize,
    /// Descriptions of failures.
    pub failures: Vec<String>,
    /// Count of checks per vector kind.
    pub by_kind: std::collections::BTreeMap<String, usize>,
    /// Count of checks per vector kind the host does not support.
    pub unsupported: std::collections::BTreeMap<String, usize>,
}

impl Report {
    fn check(&mut self, kind: &str, name: &str, got: &Outcome, want: &Outcome) {
        *self.by_kind.entry(kind.to_owned()).or_default() += 1;
        if got == want {
            self.passed += 1;
        } else {
            let show = |o: &Outcome| match o {
                Ok(b) => format!("Ok({})", String::from_utf8_lossy(b)),
                Err(c) => format!("Err({c})"),
            };
            self.failures.push(format!(
                "{kind} {name}:\n    got  {}\n    want {}",
                show(got),
                show(want)
            ));
        }
    }

    /// An optional operation's outcome: checked when the host has it, counted otherwise.
    fn check_opt(&mut self, kind: &str, name: &str, got: Option<Outcome>, want: &Outcome) {
        match got {
            Some(got) => self.check(kind, name, &got, want),
            None => *self.unsupported.entry(kind.to_owned()).or_default() += 1,
        }
    }

    /// Panics with every failure listed when there is one, or when a [`REQUIRED_KINDS`] kind
    /// did not run.
    pub fn assert_ok(&self, host: &str, min_checks: usize) {
        eprintln!(
            "{host}: {} checks passed, {} failed; by kind: {:?}; unsupported: {:?}",
            self.passed,
            self.failures.len(),
            self.by_kind,
            self.unsupported
        );
        let missing: Vec<&str> = REQUIRED_KINDS
            .iter()
            .copied()
            .filter(|k| !self.by_kind.contains_key(*k))
            .collect();
        assert!(
            missing.is_empty(),
            "{host}: required operations not exposed (vector kinds {missing:?} did not run)"
        );
        if !self.failures.is_empty() {
            panic!(
                "{host}: {} failures:\n{}",
                self.failures.len(),
                self.failures.join("\n")
            );
        }
        assert!(
            self.passed >= min_checks,
            "{host}: only {} checks ran, expected at least {min_checks}",
            self.passed
        );
    }
}

fn s(v: &J) -> &str {
    v.as_str().unwrap()
}

fn ok_text(t: &str) -> Outcome {
    Ok(t.as_bytes().to_vec())
}

/// Runs every vector in the corpus through `host`.
pub fn run_all(host: &dyn Host) -> Report {
    let mut r = Report::default();
    let spec = load_json("spec_vectors.json");
    let test_key = &spec["meta"]["test_key"];
    let seed = s(&test_key["seed_base64"]);
    for v in spec["official"].as_array().unwrap() {
        run_official(host, &mut r, v, seed);
    }
    for v in spec["derived"].as_array().unwrap() {
        run_derived(host, &mut r, v);
    }
    run_synapse_corpus(host, &mut r);
    run_legacy_numbers(host, &mut r, &spec);
    run_request_samples(host, &mut r);
    run_key_responses(host, &mut r);
    run_acl(host, &mut r);
    run_canonical_check(host, &mut r);
    run_discovery(host, &mut r);
    run_history_visibility(host, &mut r);
    run_room(host, &mut r);
    run_membership_templates(host, &mut r);
    r
}

/// `key_responses.json`: key responses accepted or refused as Synapse's `process_v2_response`
/// does, each used to check one PDU signed by the key it should carry.
fn run_key_responses(host: &dyn Host, r: &mut Report) {
    let file = load_json("key_responses.json");
    let rv = s(&file["room_version"]);
    let pdu = serde_json::to_vec(&file["pdu"]).unwrap();
    for v in file["cases"].as_array().unwrap() {
        let response = serde_json::to_vec(&v["response"]).unwrap();
        let got = host.check_pdus(rv, &[response], &pdu).map(|out| {
            let j: J = serde_json::from_slice(&out).unwrap();
            s(&j["verdict"]).as_bytes().to_vec()
        });
        let want = match v.get("error") {
            Some(code) => Err(s(code).to_owned()),
            None => ok_text(s(&v["expected"])),
        };
        r.check("key_response", s(&v["name"]), &got, &want);
    }
}

/// `membership_template.json`: `make_*` answers completed into our signed membership events,
/// and the templates refused.
fn run_membership_templates(host: &dyn Host, r: &mut Report) {
    let file = load_json("membership_template.json");
    let seed = s(&file["seed_base64"]);
    for v in file["cases"].as_array().unwrap() {
        let answer = input_bytes(v, "answer").unwrap();
        let request = serde_json::to_vec(&v["request"]).unwrap();
        r.check_opt(
            "membership_template",
            s(&v["name"]),
            host.membership_from_template(seed, "1", &answer, &request),
            &expected(v),
        );
    }
}

/// The expected outcome of a vector row: `error` (a code) or `expected` (canonical JSON).
fn expected(v: &J) -> Outcome {
    match v.get("error") {
        Some(code) => Err(s(code).to_owned()),
        None => Ok(canon(&v["expected"])),
    }
}

/// A row's input bytes: `<key>_text` exactly, else the JSON of `<key>`.
fn input_bytes(v: &J, key: &str) -> Option<Vec<u8>> {
    match v.get(format!("{key}_text")) {
        Some(t) => Some(s(t).as_bytes().to_vec()),
        None => v.get(key).map(|j| serde_json::to_vec(j).unwrap()),
    }
}

/// A `canonical_check.json` row's input bytes: `input`, or `input_hex` for bytes that are not
/// UTF-8.
pub fn canonical_check_input(v: &J) -> Vec<u8> {
    match v.get("input_hex") {
        Some(h) => {
            let h = s(h).as_bytes();
            h.chunks(2)
                .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
                .collect()
        }
        None => s(&v["input"]).as_bytes().to_vec(),
    }
}

/// The rows of `canonical_check.json`.
pub fn canonical_check_rows() -> Vec<J> {
    load_json("canonical_check.json")["cases"]
        .as_array()
        .unwrap()
        .clone()
}

/// Is the input canonical JSON already (`canonical_check.json`): one check per row.
fn run_canonical_check(host: &dyn Host, r: &mut Report) {
    for v in canonical_check_rows() {
        let want = ok_text(if v["canonical"].as_bool().unwrap() {
            "true"
        } else {
            "false"
        });
        r.check_opt(
            "canonical_check",
            s(&v["name"]),
            host.is_canonical_json(&canonical_check_input(&v)),
            &want,
        );
    }
}

/// Server ACLs (`acl.json`): one check per (content, server name).
fn run_acl(host: &dyn Host, r: &mut Report) {
    let acl = load_json("acl.json");
    for case in acl["cases"].as_array().unwrap() {
        let content = input_bytes(case, "content").unwrap();
        for check in case["checks"].as_array().unwrap() {
            let server = s(&check[0]);
            let want = match &check[1] {
                J::Bool(b) => ok_text(if *b { "true" } else { "false" }),
                code => Err(s(code).to_owned()),
            };
            let name = format!("{} / {server:?}", s(&case["name"]));
            r.check_opt(
                "acl",
                &name,
                host.server_acl_allows(&content, server),
                &want,
            );
        }
    }
}

/// Server discovery (`discovery.json`): plans with and without a well-known body, SRV record
/// choice and order, and the lifetime of well-known answers.
fn run_discovery(host: &dyn Host, r: &mut Report) {
    let d = load_json("discovery.json");
    for v in d["plan"].as_array().unwrap() {
        let well_known = input_bytes(v, "well_known");
        r.check_opt(
            "discovery_plan",
            s(&v["name"]),
            host.discovery_plan(s(&v["server_name"]), well_known.as_deref()),
            &expected(v),
        );
    }
    for v in d["pick_srv"].as_array().unwrap() {
        let records = input_bytes(v, "records").unwrap();
        r.check_opt(
            "pick_srv",
            s(&v["name"]),
            host.pick_srv(&records),
            &expected(v),
        );
    }
    for v in d["srv_targets"].as_array().unwrap() {
        let records = input_bytes(v, "records").unwrap();
        r.check_opt(
            "srv_targets",
            s(&v["name"]),
            host.srv_targets(&records),
            &expected(v),
        );
    }
    for v in d["well_known_lifetime"].as_array().unwrap() {
        r.check_opt(
            "well_known_lifetime",
            s(&v["name"]),
            host.well_known_lifetime(
                v["cache_control"].as_str(),
                v["expires"].as_str(),
                v["now_ms"].as_u64().unwrap(),
            ),
            &expected(v),
        );
    }
}

/// History visibility for servers (`history_visibility.json`): one check per row.
fn run_history_visibility(host: &dyn Host, r: &mut Report) {
    let h = load_json("history_visibility.json");
    for v in h["cases"].as_array().unwrap() {
        let memberships: Vec<&str> = v["memberships"].as_array().unwrap().iter().map(s).collect();
        r.check_opt(
            "history_visibility",
            s(&v["name"]),
            host.server_may_see(v["visibility"].as_str(), &memberships),
            &expected(v),
        );
    }
}

/// A room file of the tampered corpus: the PDUs as JSONL, and each line's event ID, case and
/// Synapse verdict.
fn room_file(dir: &std::path::Path, file: &str) -> (Vec<u8>, Vec<(String, String, String)>) {
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    let mut jsonl = Vec::new();
    let mut lines = Vec::new();
    for line in text.lines() {
        let j: J = serde_json::from_str(line).unwrap();
        jsonl.extend(serde_json::to_vec(&j["pdu"]).unwrap());
        jsonl.push(b'\n');
        lines.push((
            s(&j["event_id"]).to_owned(),
            s(&j["case"]).to_owned(),
            s(&j["synapse"]["verdict"]).to_owned(),
        ));
    }
    (jsonl, lines)
}

/// Whole rooms (`room.json`): the Synapse tampered rooms replayed (each PDU's verdict and the
/// final state against Synapse's), and restricted-join decisions on them.
fn run_room(host: &dyn Host, r: &mut Report) {
    let room = load_json("room.json");
    let rp = &room["replay"];
    let dir = vectors_dir().join(s(&rp["dir"]));
    let keys: Vec<Vec<u8>> = rp["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| std::fs::read(dir.join(s(k))).unwrap())
        .collect();
    let states: J =
        serde_json::from_str(&std::fs::read_to_string(dir.join("current_state.json")).unwrap())
            .unwrap();
    let skip_cases: Vec<&str> = rp["not_compared"]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| s(&c["case"]))
        .collect();
    let skip_state = |rv: &str, t: &str, sk: &str| {
        rp["not_compared"]["state"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| {
                s(&d["type"]) == t
                    && s(&d["state_key"]) == sk
                    && d["room_versions"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|v| s(v) == rv)
            })
    };
    let mut pdus_of = std::collections::BTreeMap::new();
    for room_j in rp["rooms"].as_array().unwrap() {
        let (file, rv) = (s(&room_j["file"]), s(&room_j["room_version"]));
        let (jsonl, lines) = room_file(&dir, file);
        let out = match host.room_replay(rv, &keys, &jsonl) {
            None => {
                *r.unsupported.entry("room_replay".into()).or_default() += 1;
                continue;
            }
            Some(Err(c)) => {
                r.check("room_replay_verdicts", file, &Err(c), &Ok(Vec::new()));
                continue;
            }
            Some(Ok(b)) => b,
        };
        let mut got_lines: Vec<J> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        let state_line = got_lines.pop().unwrap_or(J::Null);
        // The host's verdict of each PDU of the file, found by event ID; PDUs the host could not
        // give an event ID (rejected before one could be computed) come first, in input order.
        let mut by_id = std::collections::BTreeMap::new();
        let mut anonymous = Vec::new();
        for v in &got_lines {
            let verdict = v["verdict"].as_str().unwrap_or("?").to_owned();
            match v["event_id"].as_str() {
                Some(id) => {
                    by_id.insert(id.to_owned(), verdict);
                }
                None => anonymous.push(verdict),
            }
        }
        let mut anonymous = anonymous.into_iter();
        let (mut got, mut want) = (String::new(), String::new());
        let mut count = 0;
        for (id, case, synapse) in &lines {
            let verdict = by_id
                .remove(id)
                .or_else(|| anonymous.next())
                .unwrap_or_else(|| "missing".into());
            if skip_cases.contains(&case.as_str()) {
                continue;
            }
            count += 1;
            got.push_str(&format!("{id} {case} {verdict}\n"));
            let mapped = rp["verdicts"][synapse.as_str()].as_str().unwrap();
            want.push_str(&format!("{id} {case} {mapped}\n"));
        }
        if got_lines.len() != lines.len() {
            got.push_str(&format!(
                "{} verdicts for {} PDUs\n",
                got_lines.len(),
                lines.len()
            ));
        }
        r.check(
            "room_replay_verdicts",
            &format!("{file} ({count} PDUs)"),
            &Ok(got.into_bytes()),
            &Ok(want.into_bytes()),
        );
        // The final state, byte for byte, without the entries not compared.
        let keep = |row: &J| !skip_state(rv, s(&row["type"]), s(&row["state_key"]));
        let got_state: Vec<J> = state_line["state"]
            .as_array()
            .map(|rows| rows.iter().filter(|row| keep(row)).cloned().collect())
            .unwrap_or_default();
        let mut want_state: Vec<J> = states[s(&room_j["room_id"])]
            .as_array()
            .unwrap()
            .iter()
            .filter(|row| keep(row))
            .cloned()
            .collect();
        want_state.sort_by(|a, b| {
            (s(&a["type"]), s(&a["state_key"])).cmp(&(s(&b["type"]), s(&b["state_key"])))
        });
        r.check(
            "room_replay_state",
            file,
            &Ok(canon(&serde_json::json!({ "state": got_state }))),
            &Ok(canon(&serde_json::json!({ "state": want_state }))),
        );
        pdus_of.insert(file.to_owned(), (rv.to_owned(), jsonl));
    }
    for v in room["restricted_join"].as_array().unwrap() {
        let file = s(&v["room"]);
        let (rv, jsonl) = match pdus_of.get(file) {
            Some((rv, j)) => (rv.clone(), j.clone()),
            None => (s(&v["room_version"]).to_owned(), room_file(&dir, file).0),
        };
        let joined_to: Vec<(&str, bool)> = v["joined_to"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(room, joined)| (room.as_str(), joined.as_bool().unwrap()))
            .collect();
        r.check_opt(
            "restricted_join",
            s(&v["name"]),
            host.restricted_join(
                &rv,
                &keys,
                &jsonl,
                s(&v["user_id"]),
                s(&v["server_name"]),
                &joined_to,
            ),
            &expected(v),
        );
    }
}

/// Real requests captured between Synapse servers: their X-Matrix headers verify, and every
/// kind of tampering fails with its own code.
fn run_request_samples(host: &dyn Host, r: &mut Report) {
    let keys: Vec<Vec<u8>> = ["localhost_8448", "localhost_8449", "localhost_8450"]
        .iter()
        .map(|k| std::fs::read(vectors_dir().join(format!("synapse/keys/{k}.json"))).unwrap())
        .collect();
    let mut entries: Vec<_> = std::fs::read_dir(vectors_dir().join("samples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let j = load_json(&format!("samples/{name}"));
        let q = &j["request"];
        let content = (!q["content"].is_null()).then(|| serde_json::to_vec(&q["content"]).unwrap());
        let headers: Vec<String> = q["authorization"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| s(h).to_owned())
            .collect();
        let now = (q["ts"].as_f64().unwrap() * 1000.0) as u64;
        let (dest, method, uri, origin) = (
            s(&q["destination"]),
            s(&q["method"]),
            s(&q["uri"]),
            s(&q["origin"]),
        );
        let verify = |dest: &str,
                      keys: &[Vec<u8>],
                      uri: &str,
                      content: Option<&[u8]>,
                      headers: &[String],
                      now: u64| {
            host.verify_request(dest, keys, method, uri, content, headers, now)
        };
        r.check(
            "request_sample",
            &name,
            &verify(dest, &keys, uri, content.as_deref(), &headers, now),
            &ok_text(origin),
        );
        // Without the scheme word the header still parses.
        let bare: Vec<String> = headers
            .iter()
            .map(|h| h.trim_start_matches("X-Matrix ").to_owned())
            .collect();
        r.check(
            "request_sample_bare",
            &name,
            &verify(dest, &keys, uri, content.as_deref(), &bare, now),
            &ok_text(origin),
        );
        let tampered_uri = format!("{uri}&x=1");
        r.check(
            "request_tampered_uri",
            &name,
            &verify(
                dest,
                &keys,
                &tampered_uri,
                content.as_deref(),
                &headers,
                now,
            ),
            &Err("xmatrix_bad_signature".into()),
        );
        r.check(
            "request_wrong_destination",
            &name,
            &verify(
                "elsewhere.example",
                &keys,
                uri,
                content.as_deref(),
                &headers,
                now,
            ),
            &Err("xmatrix_wrong_destination".into()),
        );
        r.check(
            "request_no_keys",
            &name,
            &verify(dest, &[], uri, content.as_deref(), &headers, now),
            &Err("xmatrix_unknown_key".into()),
        );
        r.check(
            "request_key_expired",
            &name,
            &verify(
                dest,
                &keys,
                uri,
                content.as_deref(),
                &headers,
                now + 400 * 86_400_000,
            ),
            &Err("xmatrix_key_expired".into()),
        );
        if let Some(c) = &content {
            let mut body: J = serde_json::from_slice(c).unwrap();
            body["tampered"] = J::Bool(true);
            let body = serde_json::to_vec(&body).unwrap();
            r.check(
                "request_tampered_body",
                &name,
                &verify(dest, &keys, uri, Some(&body), &headers, now),
                &Err("xmatrix_bad_signature".into()),
            );
            r.check(
                "request_dropped_body",
                &name,
                &verify(dest, &keys, uri, None, &headers, now),
                &Err("xmatrix_bad_signature".into()),
            );
        }
    }
}

/// Room version 1–5 events with floats and big integers: hashed and signed as Synapse does, and
/// invalid in room versions 6+.
fn run_legacy_numbers(host: &dyn Host, r: &mut Report, spec: &J) {
    let l = load_json("legacy_numbers.json");
    let seed = s(&l["seed_base64"]);
    let key_response = spec["derived"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["kind"] == "server_keys")
        .map(|v| serde_json::to_vec(&v["expected"]).unwrap())
        .unwrap();
    for v in l["vectors"].as_array().unwrap() {
        let rv = s(&v["room_version"]);
        let name = format!("legacy v{rv}");
        let input = s(&v["input"]).as_bytes();
        let signed = s(&v["canonical_python"]);
        r.check(
            "legacy_sign",
            &name,
            &host.hash_and_sign_event(rv, seed, "1", "domain", input),
            &ok_text(signed),
        );
        r.check(
            "legacy_content_hash",
            &name,
            &host.content_hash(rv, signed.as_bytes()),
            &ok_text(s(&v["content_hash"])),
        );
        r.check(
            "legacy_reference_hash",
            &name,
            &host.reference_hash(rv, signed.as_bytes()),
            &ok_text(s(&v["reference_hash"])),
        );
        let verdict = |rv: &str| {
            host.check_pdus(rv, std::slice::from_ref(&key_response), signed.as_bytes())
                .map(|out| {
                    let j: J = serde_json::from_slice(&out).unwrap();
                    format!(
                        "{} {}",
                        s(&j["verdict"]),
                        j["reason"].as_str().unwrap_or("-")
                    )
                    .into_bytes()
                })
        };
        r.check("legacy_check", &name, &verdict(rv), &ok_text("accepted -"));
        // The same bytes are invalid where canonical JSON is strict.
        let strict_rv = if rv == "1" { "10" } else { "6" };
        let strict = verdict(strict_rv).map(|b| {
            let t = String::from_utf8(b).unwrap();
            t.split(' ').next().unwrap().to_owned().into_bytes()
        });
        r.check(
            "legacy_strict_rejects",
            &name,
            &strict,
            &ok_text("rejected"),
        );
    }
}

fn run_official(host: &dyn Host, r: &mut Report, v: &J, seed: &str) {
    let name = s(&v["name"]);
    let input = s(&v["input"]).as_bytes();
    match s(&v["kind"]) {
        "canonical_json" => {
            let want = hex(s(&v["expected_bytes_hex"]));
            r.check(
                "canonical_json",
                name,
                &host.canonical_json(input),
                &Ok(want),
            );
        }
        "json_signing" => {
            let want = canon(&serde_json::from_str(s(&v["expected"])).unwrap());
            r.check(
                "json_signing",
                name,
                &host.sign_json(seed, "1", "domain", input),
                &Ok(want),
            );
            // And the signed object verifies with the derived public key.
            r.check(
                "json_verify",
                name,
                &host
                    .verify_json(
                        "domain",
                        "ed25519:1",
                        "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI",
                        s(&v["expected"]).as_bytes(),
                    )
                    .map(|_| Vec::new()),
                &Ok(Vec::new()),
            );
        }
        "event_signing" => {
            // The official event vectors use pre-v11 redaction: room version 1 rules.
            let want = canon(&serde_json::from_str(s(&v["expected"])).unwrap());
            r.check(
                "event_signing",
                name,
                &host.hash_and_sign_event("1", seed, "1", "domain", input),
                &Ok(want),
            );
        }
        "unpadded_base64" => {
            if let Some(got) = host.base64_encode(input) {
                r.check("unpadded_base64", name, &got, &ok_text(s(&v["expected"])));
            }
        }
        _ => {} // illustrative_only: not verifiable by design
    }
}

fn run_derived(host: &dyn Host, r: &mut Report, v: &J) {
    let name = s(&v["name"]);
    match s(&v["kind"]) {
        "key_derivation" => {
            r.check(
                "key_derivation",
                name,
                &host.public_key(s(&v["input"])),
                &ok_text(s(&v["expected"])),
            );
        }
        "derived_event" => {
            let rv = s(&v["room_version"]);
            let p = &v["params"];
            let input = serde_json::to_vec(&v["input"]).unwrap();
            let e = &v["expected"];
            let signed = serde_json::to_vec(&e["signed_event"]).unwrap();
            r.check(
                "event_sign",
                name,
                &host.hash_and_sign_event(
                    rv,
                    s(&p["signing_key_seed_base64"]),
                    s(&p["key_id"]).trim_start_matches("ed25519:"),
                    s(&p["server_name"]),
                    &input,
                ),
                &Ok(canon(&e["signed_event"])),
            );
            r.check(
                "content_hash",
                name,
                &host.content_hash(rv, &signed),
                &ok_text(s(&e["content_hash_sha256"])),
            );
            r.check(
                "redact",
                name,
                &host.redact(rv, &signed),
                &Ok(canon(&e["redacted"])),
            );
            r.check(
                "reference_hash",
                name,
                &host.reference_hash(rv, &signed),
                &ok_text(s(&e["reference_hash_sha256_b64"])),
            );
            let want_id = e
                .get("event_id")
                .map_or_else(|| s(&v["input"]["event_id"]), s);
            r.check(
                "event_id",
                name,
                &host.event_id(rv, &signed),
                &ok_text(want_id),
            );
            // Event IDs are computed over the redacted form: redacted and full agree.
            r.check(
                "event_id_redacted",
                name,
                &host.event_id(rv, &canon(&e["redacted"])),
                &ok_text(want_id),
            );
            if let Some(room) = e.get("room_id") {
                r.check(
                    "room_id",
                    name,
                    &host.room_id(rv, &signed),
                    &ok_text(s(room)),
                );
            }
        }
        "event_id" => {
            let input = serde_json::to_vec(&v["input"]).unwrap();
            let e = &v["expected"];
            r.check(
                "event_id",
                name,
                &host.event_id("10", &input),
                &ok_text(s(&e["event_id_v10"])),
            );
            r.check(
                "event_id",
                name,
                &host.event_id("3", &input),
                &ok_text(s(&e["event_id_v3"])),
            );
            if let Some(c) = v.get("computed") {
                r.check(
                    "event_id",
                    name,
                    &host.event_id("11", &input),
                    &ok_text(s(&c["event_id_v11_rules"])),
                );
                r.check(
                    "content_hash",
                    name,
                    &host.content_hash("10", &input),
                    &ok_text(s(&c["content_hash_recomputed"])),
                );
            }
        }
        "request_auth" => {
            // The X-Matrix signature is a JSON signature over the request object.
            let p = &v["params"];
            let i = &v["input"];
            let mut req = serde_json::json!({
                "method": i["method"], "uri": i["uri"], "origin": i["origin"], "destination": i["destination"],
            });
            if let Some(c) = i.get("content") {
                req["content"] = c.clone();
            }
            let e = &v["expected"];
            let body = serde_json::to_vec(&req).unwrap();
            r.check(
                "request_auth_canonical",
                name,
                &host.canonical_json(&body),
                &ok_text(s(&e["signed_json_canonical"])),
            );
            let signed = host.sign_json(
                s(&p["signing_key_seed_base64"]),
                "1",
                s(&p["server_name"]),
                &body,
            );
            let sig = signed.map(|b| {
                let j: J = serde_json::from_slice(&b).unwrap();
                s(&j["signatures"][s(&p["server_name"])][s(&p["key_id"])])
                    .as_bytes()
                    .to_vec()
            });
            r.check("request_auth_sig", name, &sig, &ok_text(s(&e["sig"])));
            let sign = |content: Option<&[u8]>| {
                host.sign_request(
                    s(&p["signing_key_seed_base64"]),
                    "1",
                    s(&i["origin"]),
                    s(&i["destination"]),
                    s(&i["method"]),
                    s(&i["uri"]),
                    content,
                )
            };
            let want = ok_text(s(&e["authorization_header"]));
            let content = i.get("content").map(|c| serde_json::to_vec(c).unwrap());
            r.check(
                "request_auth_header",
                name,
                &sign(content.as_deref()),
                &want,
            );
            // The same body as other text (spaces and new lines): signed as its canonical
            // form, the header is the same.
            if let Some(c) = i.get("content") {
                let pretty = serde_json::to_vec_pretty(c).unwrap();
                r.check(
                    "request_auth_header_text",
                    name,
                    &sign(Some(&pretty)),
                    &want,
                );
            }
        }
        "server_keys" => {
            let input = serde_json::to_vec(&v["input"]).unwrap();
            r.check(
                "server_keys_build",
                name,
                &host.server_keys(
                    s(&v["params"]["signing_key_seed_base64"]),
                    "1",
                    s(&v["input"]["server_name"]),
                    v["input"]["valid_until_ts"].as_u64().unwrap(),
                ),
                &Ok(canon(&v["expected"])),
            );
            r.check(
                "server_keys",
                name,
                &host.sign_json(
                    s(&v["params"]["signing_key_seed_base64"]),
                    "1",
                    s(&v["input"]["server_name"]),
                    &input,
                ),
                &Ok(canon(&v["expected"])),
            );
        }
        "canonical_json" => {
            r.check(
                "canonical_json",
                name,
                &host.canonical_json(s(&v["input"]).as_bytes()),
                &Ok(hex(s(&v["expected_bytes_hex"]))),
            );
        }
        "canonical_json_negative" => {
            let computed = s(&v["computed"]);
            let code = if computed.contains("out of canonical range") {
                "json_integer_out_of_range"
            } else {
                "json_not_integer"
            };
            r.check(
                "canonical_json_negative",
                name,
                &host.canonical_json(s(&v["input"]).as_bytes()),
                &Err(code.to_owned()),
            );
        }
        other => panic!("unknown derived vector kind {other}"),
    }
}

/// Real PDUs signed by Synapse: every host must reach Synapse's verdicts on signatures, content
/// hashes and event IDs.
fn run_synapse_corpus(host: &dyn Host, r: &mut Report) {
    let keys: Vec<Vec<u8>> = ["localhost_8448", "localhost_8449", "localhost_8450"]
        .iter()
        .map(|k| std::fs::read(vectors_dir().join(format!("synapse/keys/{k}.json"))).unwrap())
        .collect();
    let text = std::fs::read_to_string(vectors_dir().join("synapse/pdus.jsonl")).unwrap();
    let mut by_version: std::collections::BTreeMap<String, Vec<J>> = Default::default();
    for line in text.lines() {
        let j: J = serde_json::from_str(line).unwrap();
        by_version
            .entry(s(&j["room_version"]).to_owned())
            .or_default()
            .push(j);
    }
    for (rv, lines) in &by_version {
        let mut jsonl = Vec::new();
        for l in lines {
            jsonl.extend(serde_json::to_vec(&l["pdu"]).unwrap());
            jsonl.push(b'\n');
        }
        let got = match host.check_pdus(rv, &keys, &jsonl) {
            Ok(b) => b,
            Err(c) => {
                r.failures
                    .push(format!("synapse corpus v{rv}: check_pdus failed: {c}"));
                continue;
            }
        };
        let verdicts: Vec<J> = got
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(
            verdicts.len(),
            lines.len(),
            "{}: one verdict per PDU",
            host.name()
        );
        for (l, got) in lines.iter().zip(&verdicts) {
            let e = &l["expected"];
            let want_verdict = match (e["signature_ok"].as_bool(), e["content_hash_ok"].as_bool()) {
                (Some(true), Some(true)) => "accepted",
                (Some(true), Some(false)) => "redacted",
                _ => "rejected",
            };
            let name = format!("v{rv} {}", s(&l["event_id"]));
            let summary = |id: &J, verdict: &J| {
                format!(
                    "{} {}",
                    id.as_str().unwrap_or("null"),
                    verdict.as_str().unwrap_or("?")
                )
            };
            r.check(
                "synapse_pdu",
                &name,
                &Ok(summary(&got["event_id"], &got["verdict"]).into_bytes()),
                &Ok(summary(&l["event_id"], &J::from(want_verdict)).into_bytes()),
            );
        }
    }
}

fn hex(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect()
}

/// The core itself as a host: the reference every other host is compared with.
pub struct CoreHost;

mod core_host;
mod process_host;

pub use process_host::ProcessHost;
