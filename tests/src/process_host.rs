//! A [`Host`](crate::Host) in another process, spoken to over JSON lines: how the Python and
//! JavaScript hosts join the conformance run with a ten-line adapter each.
//!
//! Protocol: the runner writes one request per line, `{"op": NAME, "args": {...}}`, and reads one
//! response per line: `{"ok": STRING}`, `{"err": CODE}`, or `{"unsupported": true}` for an
//! optional operation the host does not expose. Every byte argument and result is a UTF-8 string,
//! except `is_canonical_json`'s `input_hex` (its inputs include bytes that are not UTF-8).
//! Operation names and argument names are the `Host` method and parameter names.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

use serde_json::{json, Value as J};

use crate::{Host, Outcome};

/// A host behind a child process speaking the JSON-lines protocol.
pub struct ProcessHost {
    name: String,
    io: Mutex<(Child, ChildStdin, BufReader<ChildStdout>)>,
}

impl ProcessHost {
    /// Starts `program args...` as a host adapter.
    ///
    /// # Errors
    /// When the program cannot be started.
    pub fn spawn(name: &str, program: &str, args: &[&str]) -> std::io::Result<ProcessHost> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().ok_or(std::io::ErrorKind::BrokenPipe)?;
        let stdout = BufReader::new(child.stdout.take().ok_or(std::io::ErrorKind::BrokenPipe)?);
        Ok(ProcessHost {
            name: name.to_owned(),
            io: Mutex::new((child, stdin, stdout)),
        })
    }

    fn call(&self, op: &str, args: J) -> Option<Outcome> {
        let mut io = self.io.lock().unwrap_or_else(|e| e.into_inner());
        let (_, stdin, stdout) = &mut *io;
        let mut line = serde_json::to_string(&json!({"op": op, "args": args})).unwrap_or_default();
        line.push('\n');
        if stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.flush())
            .is_err()
        {
            return Some(Err(format!("{}: adapter died", self.name)));
        }
        let mut resp = String::new();
        if stdout.read_line(&mut resp).unwrap_or(0) == 0 {
            return Some(Err(format!("{}: adapter closed its output", self.name)));
        }
        let r: J = match serde_json::from_str(&resp) {
            Ok(r) => r,
            Err(e) => return Some(Err(format!("{}: bad response {resp:?}: {e}", self.name))),
        };
        if r.get("unsupported").is_some() {
            return None;
        }
        Some(match (r.get("ok"), r.get("err")) {
            (Some(J::String(s)), _) => Ok(s.clone().into_bytes()),
            (_, Some(J::String(c))) => Err(c.clone()),
            _ => Err(format!("{}: bad response {resp:?}", self.name)),
        })
    }

    fn must(&self, op: &str, args: J) -> Outcome {
        self.call(op, args).unwrap_or_else(|| {
            Err(format!(
                "{}: required operation {op} unsupported",
                self.name
            ))
        })
    }
}

impl Drop for ProcessHost {
    fn drop(&mut self) {
        let mut io = self.io.lock().unwrap_or_else(|e| e.into_inner());
        let _ = io.0.kill();
        let _ = io.0.wait();
    }
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Host for ProcessHost {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn canonical_json(&self, input: &[u8]) -> Outcome {
        self.must("canonical_json", json!({"input": s(input)}))
    }
    fn sign_json(&self, seed: &str, version: &str, server: &str, input: &[u8]) -> Outcome {
        self.must(
            "sign_json",
            json!({"seed": seed, "version": version, "server": server, "input": s(input)}),
        )
    }
    fn verify_json(&self, server: &str, key_id: &str, public: &str, input: &[u8]) -> Outcome {
        self.must(
            "verify_json",
            json!({"server": server, "key_id": key_id, "public_key": public, "input": s(input)}),
        )
    }
    fn public_key(&self, seed: &str) -> Outcome {
        self.must("public_key", json!({ "seed": seed }))
    }
    fn content_hash(&self, rv: &str, ev: &[u8]) -> Outcome {
        self.must("content_hash", json!({"room_version": rv, "event": s(ev)}))
    }
    fn reference_hash(&self, rv: &str, ev: &[u8]) -> Outcome {
        self.must(
            "reference_hash",
            json!({"room_version": rv, "event": s(ev)}),
        )
    }
    fn event_id(&self, rv: &str, ev: &[u8]) -> Outcome {
        self.must("event_id", json!({"room_version": rv, "event": s(ev)}))
    }
    fn room_id(&self, rv: &str, ev: &[u8]) -> Outcome {
        self.must("room_id", json!({"room_version": rv, "event": s(ev)}))
    }
    fn redact(&self, rv: &str, ev: &[u8]) -> Outcome {
        self.must("redact", json!({"room_version": rv, "event": s(ev)}))
    }
    fn hash_and_sign_event(
        &self,
        rv: &str,
        seed: &str,
        version: &str,
        server: &str,
        ev: &[u8],
    ) -> Outcome {
        self.must(
            "hash_and_sign_event",
            json!({"room_version": rv, "seed": seed, "version": version, "server": server, "event": s(ev)}),
        )
    }
    fn check_pdus(&self, rv: &str, keys: &[Vec<u8>], pdus: &[u8]) -> Outcome {
        let keys: Vec<String> = keys.iter().map(|k| s(k)).collect();
        self.must(
            "check_pdus",
            json!({"room_version": rv, "keys": keys, "pdus": s(pdus)}),
        )
    }
    fn sign_request(
        &self,
        seed: &str,
        version: &str,
        origin: &str,
        destination: &str,
        method: &str,
        uri: &str,
        content: Option<&[u8]>,
    ) -> Outcome {
        self.must(
            "sign_request",
            json!({"seed": seed, "version": version, "origin": origin, "destination": destination,
                   "method": method, "uri": uri, "content": content.map(s)}),
        )
    }
    fn verify_request(
        &self,
        destination: &str,
        keys: &[Vec<u8>],
        method: &str,
        uri: &str,
        content: Option<&[u8]>,
        headers: &[String],
        now_ms: u64,
    ) -> Outcome {
        let keys: Vec<String> = keys.iter().map(|k| s(k)).collect();
        self.must(
            "verify_request",
            json!({"destination": destination, "keys": keys, "method": method, "uri": uri,
                   "content": content.map(s), "headers": headers, "now_ms": now_ms}),
        )
    }
    fn server_keys(&self, seed: &str, version: &str, server: &str, valid_until_ts: u64) -> Outcome {
        self.must(
            "server_keys",
            json!({"seed": seed, "version": version, "server": server, "valid_until_ts": valid_until_ts}),
        )
    }
    fn base64_encode(&self, bytes: &[u8]) -> Option<Outcome> {
        self.call("base64_encode", json!({ "input": s(bytes) }))
    }
    fn server_acl_allows(&self, content: &[u8], server_name: &str) -> Option<Outcome> {
        self.call(
            "server_acl_allows",
            json!({"content": s(content), "server_name": server_name}),
        )
    }
    fn discovery_plan(&self, server_name: &str, well_known: Option<&[u8]>) -> Option<Outcome> {
        self.call(
            "discovery_plan",
            json!({"server_name": server_name, "well_known": well_known.map(s)}),
        )
    }
    fn is_canonical_json(&self, input: &[u8]) -> Option<Outcome> {
        // Hex: some rows are not UTF-8, and the protocol's strings are.
        let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
        self.call("is_canonical_json", json!({ "input_hex": hex }))
    }
    fn pick_srv(&self, records: &[u8]) -> Option<Outcome> {
        self.call("pick_srv", json!({ "records": s(records) }))
    }
    fn srv_targets(&self, records: &[u8]) -> Option<Outcome> {
        self.call("srv_targets", json!({ "records": s(records) }))
    }
    fn well_known_lifetime(
        &self,
        cache_control: Option<&str>,
        expires: Option<&str>,
        now_ms: u64,
    ) -> Option<Outcome> {
        self.call(
            "well_known_lifetime",
            json!({"cache_control": cache_control, "expires": expires, "now_ms": now_ms}),
        )
    }
    fn server_may_see(&self, visibility: Option<&str>, memberships: &[&str]) -> Option<Outcome> {
        self.call(
            "server_may_see",
            json!({"visibility": visibility, "memberships": memberships}),
        )
    }
    fn room_replay(&self, rv: &str, keys: &[Vec<u8>], pdus: &[u8]) -> Option<Outcome> {
        let keys: Vec<String> = keys.iter().map(|k| s(k)).collect();
        self.call(
            "room_replay",
            json!({"room_version": rv, "keys": keys, "pdus": s(pdus)}),
        )
    }
    fn restricted_join(
        &self,
        rv: &str,
        keys: &[Vec<u8>],
        pdus: &[u8],
        user_id: &str,
        server_name: &str,
        joined_to: &[(&str, bool)],
    ) -> Option<Outcome> {
        let keys: Vec<String> = keys.iter().map(|k| s(k)).collect();
        let joined: serde_json::Map<String, J> = joined_to
            .iter()
            .map(|(r, j)| ((*r).to_owned(), J::Bool(*j)))
            .collect();
        self.call(
            "restricted_join",
            json!({"room_version": rv, "keys": keys, "pdus": s(pdus), "user_id": user_id,
                   "server_name": server_name, "joined_to": joined}),
        )
    }
    fn membership_from_template(
        &self,
        seed: &str,
        version: &str,
        answer: &[u8],
        request: &[u8],
    ) -> Option<Outcome> {
        let request: J = serde_json::from_slice(request).unwrap();
        self.call(
            "membership_from_template",
            json!({"seed": seed, "version": version, "answer": s(answer), "request": request}),
        )
    }
}
