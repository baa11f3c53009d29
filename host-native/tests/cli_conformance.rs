//! The whole vectors corpus through the `mxfed` binary, byte for byte the same as the core.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use mxfed_conformance::{Host, Outcome};

struct CliHost {
    dir: tempfile::TempDir,
}

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mxfed"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The child may exit before reading everything (bad arguments): its exit status says so.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

/// Runs `mxfed ARGS` with `stdin`; Ok(stdout without its final newline) on exit 0, Err(code)
/// parsed from the one-line `mxfed: error[code]: …` otherwise.
fn mxfed(args: &[&str], stdin: &[u8]) -> Outcome {
    outcome(args, run(args, stdin))
}

/// [`mxfed`]'s reading of a finished run.
fn outcome(args: &[&str], out: Output) -> Outcome {
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {
            let mut b = out.stdout;
            if b.last() == Some(&b'\n') {
                b.pop();
            }
            Ok(b)
        }
        Some(1 | 2) => {
            assert_eq!(
                stderr.lines().count(),
                1,
                "one-line error expected: {stderr}"
            );
            let code = stderr
                .split_once("error[")
                .and_then(|(_, r)| r.split_once(']'))
                .map(|(c, _)| c.to_owned())
                .unwrap_or_else(|| panic!("no error code in {stderr:?}"));
            Err(code)
        }
        other => panic!("mxfed {args:?} exited {other:?}: {stderr}"),
    }
}

impl CliHost {
    fn key_file(&self, seed: &str, version: &str) -> String {
        let p = self
            .dir
            .path()
            .join(format!("{version}.{}.key", seed.replace('/', "_")));
        std::fs::write(&p, format!("ed25519 {version} {seed}\n")).unwrap();
        p.to_str().unwrap().to_owned()
    }

    fn event(&self, cmd: &str, rv: &str, ev: &[u8]) -> Outcome {
        mxfed(&["event", cmd, "--room-version", rv], ev)
    }

    fn write_keys(&self, keys: &[Vec<u8>]) -> Vec<String> {
        keys.iter()
            .enumerate()
            .map(|(i, k)| {
                let p = self.dir.path().join(format!("keys{i}.json"));
                std::fs::write(&p, k).unwrap();
                p.to_str().unwrap().to_owned()
            })
            .collect()
    }

    fn hash_field(&self, rv: &str, ev: &[u8], field: &str) -> Outcome {
        let out = self.event("hash", rv, ev)?;
        let j: serde_json::Value = serde_json::from_slice(&out).unwrap();
        Ok(j[field].as_str().unwrap().as_bytes().to_vec())
    }
}

impl Host for CliHost {
    fn name(&self) -> String {
        "cli".into()
    }

    fn canonical_json(&self, input: &[u8]) -> Outcome {
        mxfed(&["canonical"], input)
    }

    fn sign_json(&self, seed: &str, version: &str, server: &str, input: &[u8]) -> Outcome {
        let key = self.key_file(seed, version);
        mxfed(
            &["sign", "--key", &key, "--server-name", server, "-"],
            input,
        )
    }

    fn verify_json(&self, server: &str, key_id: &str, public: &str, input: &[u8]) -> Outcome {
        let pk = format!("{key_id}={public}");
        mxfed(
            &["verify", "--server-name", server, "--public-key", &pk],
            input,
        )
    }

    fn public_key(&self, seed: &str) -> Outcome {
        let key = self.key_file(seed, "1");
        let out = mxfed(&["key", "public", "--key", &key], b"")?;
        let j: serde_json::Value = serde_json::from_slice(&out).unwrap();
        Ok(j["ed25519:1"].as_str().unwrap().as_bytes().to_vec())
    }

    fn content_hash(&self, rv: &str, ev: &[u8]) -> Outcome {
        self.hash_field(rv, ev, "content_hash")
    }

    fn reference_hash(&self, rv: &str, ev: &[u8]) -> Outcome {
        self.hash_field(rv, ev, "reference_hash")
    }

    fn event_id(&self, rv: &str, ev: &[u8]) -> Outcome {
        self.event("id", rv, ev)
    }

    fn room_id(&self, rv: &str, ev: &[u8]) -> Outcome {
        self.event("room-id", rv, ev)
    }

    fn redact(&self, rv: &str, ev: &[u8]) -> Outcome {
        self.event("redact", rv, ev)
    }

    fn hash_and_sign_event(
        &self,
        rv: &str,
        seed: &str,
        version: &str,
        server: &str,
        ev: &[u8],
    ) -> Outcome {
        let key = self.key_file(seed, version);
        mxfed(
            &[
                "event",
                "sign",
                "--room-version",
                rv,
                "--key",
                &key,
                "--server-name",
                server,
            ],
            ev,
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
        let key = self.key_file(seed, version);
        let mut args = vec![
            "request",
            "sign",
            "--key",
            &key,
            "--origin",
            origin,
            "--destination",
            destination,
            "--method",
            method,
            "--uri",
            uri,
        ];
        let body = self.dir.path().join("body.json");
        let body_path = body.to_str().unwrap().to_owned();
        if let Some(c) = content {
            std::fs::write(&body, c).unwrap();
            args.extend(["--content", &body_path]);
        }
        mxfed(&args, b"")
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
        let now = now_ms.to_string();
        let key_paths = self.write_keys(keys);
        let body = self.dir.path().join("verify-body.json");
        let body_path = body.to_str().unwrap().to_owned();
        let mut args = vec![
            "request",
            "verify",
            "--destination",
            destination,
            "--method",
            method,
            "--uri",
            uri,
            "--now",
            &now,
        ];
        if let Some(c) = content {
            std::fs::write(&body, c).unwrap();
            args.extend(["--content", &body_path]);
        }
        for h in headers {
            args.extend(["--header", h]);
        }
        if key_paths.is_empty() {
            // An empty key file: no keys known at all.
            let empty = self.dir.path().join("nokeys.jsonl");
            std::fs::write(&empty, "").unwrap();
            let p = empty.to_str().unwrap().to_owned();
            args.extend(["--keys", &p]);
            let out = mxfed(&args, b"")?;
            return Ok(origin_of(&out));
        }
        args.push("--keys");
        args.extend(key_paths.iter().map(String::as_str));
        let out = mxfed(&args, b"")?;
        Ok(origin_of(&out))
    }

    fn server_keys(&self, seed: &str, version: &str, server: &str, valid_until_ts: u64) -> Outcome {
        let key = self.key_file(seed, version);
        let now = valid_until_ts.to_string();
        mxfed(
            &[
                "keys",
                "server",
                "--key",
                &key,
                "--server-name",
                server,
                "--valid-for",
                "0ms",
                "--now",
                &now,
            ],
            b"",
        )
    }

    fn server_acl_allows(&self, content: &[u8], server_name: &str) -> Option<Outcome> {
        let acl = self.file("acl.json", content);
        // `--` so that a server name starting with `-` stays a name.
        let args = ["acl", "check", "--acl", &acl, "--", server_name];
        let out = run(&args, b"");
        Some(match out.status.code() {
            // Exit 1: denied; the verdict line is still the output.
            Some(0 | 1) if !out.stdout.is_empty() => {
                let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_eq!(j["server_name"], server_name);
                let allowed = j["allowed"].as_bool().unwrap();
                assert_eq!(out.status.code(), Some(if allowed { 0 } else { 1 }));
                Ok(allowed.to_string().into_bytes())
            }
            _ => outcome(&args, out),
        })
    }

    fn discovery_plan(&self, server_name: &str, well_known: Option<&[u8]>) -> Option<Outcome> {
        let mut args = vec!["discover", "plan"];
        let path;
        if let Some(body) = well_known {
            path = self.file("well-known.json", body);
            args.extend(["--well-known", &path]);
        }
        args.extend(["--", server_name]);
        Some(mxfed(&args, b""))
    }

    fn is_canonical_json(&self, input: &[u8]) -> Option<Outcome> {
        let out = run(&["canonical", "--check", "-"], input);
        // Exit 1: not canonical; exit 2: not JSON at all, so not canonical either (the exact
        // statuses and codes are checked by `canonical_check_exit_statuses`).
        Some(match out.status.code() {
            Some(0) => {
                assert!(out.stdout.is_empty(), "--check prints nothing");
                Ok(b"true".to_vec())
            }
            Some(1 | 2) => outcome(&["canonical", "--check"], out).or(Ok(b"false".to_vec())),
            _ => outcome(&["canonical", "--check"], out),
        })
    }

    fn pick_srv(&self, records: &[u8]) -> Option<Outcome> {
        Some(mxfed(&["discover", "pick-srv", "-"], records))
    }

    fn srv_targets(&self, records: &[u8]) -> Option<Outcome> {
        Some(mxfed(&["discover", "srv-targets", "-"], records))
    }

    fn well_known_lifetime(
        &self,
        cache_control: Option<&str>,
        expires: Option<&str>,
        now_ms: u64,
    ) -> Option<Outcome> {
        let now = format!("--now={now_ms}");
        let cc = cache_control.map(|v| format!("--cache-control={v}"));
        let exp = expires.map(|v| format!("--expires={v}"));
        let mut args = vec!["discover", "well-known-lifetime", now.as_str()];
        args.extend(cc.as_deref());
        args.extend(exp.as_deref());
        Some(mxfed(&args, b""))
    }

    fn server_may_see(&self, visibility: Option<&str>, memberships: &[&str]) -> Option<Outcome> {
        let flag = visibility.map(|v| format!("--visibility={v}"));
        let mut args = vec!["history", "may-see"];
        args.extend(flag.as_deref());
        // `--` so that a membership starting with `-` stays a membership.
        args.push("--");
        args.extend(memberships);
        Some(mxfed(&args, b""))
    }

    fn room_replay(&self, rv: &str, keys: &[Vec<u8>], pdus: &[u8]) -> Option<Outcome> {
        let paths = self.write_keys(keys);
        let mut args = vec!["room", "replay", "--room-version", rv, "--keys"];
        args.extend(paths.iter().map(String::as_str));
        // Exit 1 means "some PDU not accepted": the verdicts and the state are still the output.
        let out = run(&args, pdus);
        Some(match out.status.code() {
            Some(0 | 1) => {
                let mut b = out.stdout;
                if b.last() == Some(&b'\n') {
                    b.pop();
                }
                Ok(b)
            }
            _ => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        })
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
        let paths = self.write_keys(keys);
        let joined: Vec<String> = joined_to
            .iter()
            .map(|(room, j)| format!("--joined-to={room}={j}"))
            .collect();
        let user = format!("--user={user_id}");
        let server = format!("--server-name={server_name}");
        let mut args = vec!["room", "restricted-join", "--room-version", rv];
        args.extend([user.as_str(), server.as_str()]);
        args.extend(joined.iter().map(String::as_str));
        args.push("--keys");
        args.extend(paths.iter().map(String::as_str));
        Some(mxfed(&args, pdus))
    }

    fn membership_from_template(
        &self,
        seed: &str,
        version: &str,
        answer: &[u8],
        request: &[u8],
    ) -> Option<Outcome> {
        let key = self.key_file(seed, version);
        let r: serde_json::Value = serde_json::from_slice(request).unwrap();
        let text = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
        let mut args: Vec<String> = [
            "event",
            "from-template",
            "--key",
            &key,
            "--server-name",
            &text("origin"),
            "--membership",
            &text("membership"),
            "--room",
            &text("room_id"),
            "--user",
            &text("user_id"),
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        args.push(format!(
            "--now={}",
            r["now_ms"].as_u64().unwrap_or_default()
        ));
        if let Some(c) = r.get("content") {
            args.push(format!("--content={c}"));
        }
        if let Some(l) = r["event_id_localpart"].as_str() {
            args.push(format!("--event-id-localpart={l}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Some(mxfed(&args, answer))
    }

    fn check_pdus(&self, rv: &str, keys: &[Vec<u8>], pdus: &[u8]) -> Outcome {
        let paths = self.write_keys(keys);
        let mut args = vec!["event", "check", "--room-version", rv, "--keys"];
        args.extend(paths.iter().map(String::as_str));
        // Exit 1 means "some PDU not accepted": the verdict lines are still the output. A key
        // file refused is bad input (exit 2), with its code.
        let out = run(&args, pdus);
        match out.status.code() {
            Some(0 | 1) => Ok(out.stdout),
            _ => outcome(&args, out),
        }
    }
}

impl CliHost {
    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_owned()
    }
}

fn origin_of(out: &[u8]) -> Vec<u8> {
    let j: serde_json::Value = serde_json::from_slice(out).unwrap();
    j["origin"].as_str().unwrap().as_bytes().to_vec()
}

fn host() -> CliHost {
    CliHost {
        dir: tempfile::tempdir().unwrap(),
    }
}

#[test]
fn cli_reproduces_every_vector() {
    mxfed_conformance::run_all(&host()).assert_ok("cli", 1000);
}

/// `mxfed canonical --check` on every `canonical_check.json` row: exit 0 and no output when
/// canonical; exit 1 with `json_not_canonical` when the input parses but is not canonical; exit
/// 2 with the row's parse error code when it does not parse.
#[test]
fn canonical_check_exit_statuses() {
    for v in mxfed_conformance::canonical_check_rows() {
        let name = v["name"].as_str().unwrap();
        let out = run(
            &["canonical", "--check", "-"],
            &mxfed_conformance::canonical_check_input(&v),
        );
        let (status, code) = match (v["canonical"].as_bool().unwrap(), v["error"].as_str()) {
            (true, _) => (0, None),
            (false, None) => (1, Some("json_not_canonical")),
            (false, Some(code)) => (2, Some(code)),
        };
        assert_eq!(out.status.code(), Some(status), "{name}");
        assert!(
            out.stdout.is_empty(),
            "{name}: --check prints nothing on stdout"
        );
        let got = outcome(&["canonical", "--check"], out).err();
        assert_eq!(got.as_deref(), code, "{name}");
    }
}

#[test]
fn cli_and_core_agree_on_pdu_verdicts_byte_for_byte() {
    let dir = mxfed_conformance::vectors_dir();
    let keys: Vec<Vec<u8>> = ["8448", "8449", "8450"]
        .iter()
        .map(|p| std::fs::read(dir.join(format!("synapse/keys/localhost_{p}.json"))).unwrap())
        .collect();
    let text = std::fs::read_to_string(dir.join("synapse/pdus.jsonl")).unwrap();
    for rv in ["1", "5", "10", "12"] {
        let mut jsonl = Vec::new();
        for line in text.lines() {
            let j: serde_json::Value = serde_json::from_str(line).unwrap();
            if j["room_version"] == rv {
                jsonl.extend(serde_json::to_vec(&j["pdu"]).unwrap());
                jsonl.push(b'\n');
            }
        }
        let core = mxfed_conformance::CoreHost
            .check_pdus(rv, &keys, &jsonl)
            .unwrap();
        assert_eq!(host().check_pdus(rv, &keys, &jsonl).unwrap(), core, "v{rv}");
    }
}
