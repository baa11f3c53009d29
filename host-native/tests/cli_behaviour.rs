//! The CLI contract: exit statuses, one-line errors with stable codes, files never clobbered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

const SPEC_KEY: &str = "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1\n";

fn mxfed(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mxfed"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

/// Asserts exit status `code` and a single stderr line naming `errcode`.
fn assert_error(out: &Output, code: i32, errcode: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr:?}");
    assert!(
        stderr.starts_with(&format!("mxfed: error[{errcode}]: ")),
        "expected code {errcode}: {stderr:?}"
    );
}

fn spec_key(dir: &tempfile::TempDir) -> String {
    let p = dir.path().join("signing.key");
    std::fs::write(&p, SPEC_KEY).unwrap();
    p.to_str().unwrap().to_owned()
}

/// Usage errors (an unknown command or flag, a missing argument, a value of the wrong kind)
/// are one line too, exit status 2; `--help` still prints clap's help, exit status 0.
#[test]
fn usage_errors_exit_2_with_one_line() {
    let cases: &[&[&str]] = &[
        &["nonsense"],
        &["canonical", "--bogus"],
        &["serve", "--listen", "localhost:8448"],
        &["sign"],
        &["admin", "user", "auto-accept", "x", "maybe"],
    ];
    for args in cases {
        let out = mxfed(args, b"");
        assert_error(&out, 2, "usage");
    }
    // The line names what is missing or wrong, not only that something is.
    let out = mxfed(&["key", "generate"], b"");
    assert_error(&out, 2, "usage");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--server-name"), "{stderr:?}");
    let out = mxfed(&["canonical", "--bogus"], b"");
    assert!(String::from_utf8_lossy(&out.stderr).contains("'--bogus'"));
    let out = mxfed(&["--help"], b"");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
}

#[test]
fn bad_input_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let key = spec_key(&dir);
    let cases: &[(&[&str], &[u8], &str)] = &[
        (&["canonical"], b"{\"a\":1,\"a\":2}", "json_duplicate_key"),
        (&["canonical"], b"{\"a\":", "json_syntax"),
        (
            &["canonical"],
            b"[9007199254740992]",
            "json_integer_out_of_range",
        ),
        (&["canonical"], b"{\"a\":NaN}", "json_non_finite"),
        (&["canonical"], b"\"\\udc00\"", "json_lone_surrogate"),
        (&["canonical"], b"\"\xff\"", "json_invalid_utf8"),
        (&["canonical", "/nonexistent/file.json"], b"", "io"),
        (
            &["sign", "--key", &key, "--server-name", "bad name"],
            b"{}",
            "bad_server_name",
        ),
        (
            &["sign", "--key", &key, "--server-name", "domain"],
            b"[]",
            "json_syntax",
        ),
        (
            &["verify", "--server-name", "d", "--public-key", "nokeyid"],
            b"{}",
            "bad_public_key_arg",
        ),
        (
            &["acl", "check", "--acl", "-", "matrix.org"],
            b"{\"allow\":",
            "json_syntax",
        ),
        (
            &["acl", "check", "--acl", "-", "matrix.org", "bad name"],
            b"{\"allow\":[\"*\"]}",
            "bad_server_name",
        ),
        (&["discover", "plan", "bad name"], b"", "bad_server_name"),
        (&["discover", "pick-srv"], b"{}", "bad_srv_records"),
        (
            &["discover", "pick-srv"],
            b"[{\"port\":1}]",
            "bad_srv_record",
        ),
        (
            &[
                "verify",
                "--server-name",
                "d",
                "--public-key",
                "ed25519:1=AAAA",
            ],
            b"{}",
            "bad_key_length",
        ),
        (
            &["verify", "--server-name", "d", "--public-key", "rsa:1=AAAA"],
            b"{}",
            "unsupported_algorithm",
        ),
        (
            &["event", "id", "--room-version", "13"],
            b"{}",
            "unsupported_room_version",
        ),
        (
            &["event", "id", "--room-version", "1"],
            b"{}",
            "event_missing_field",
        ),
        (
            &["event", "id", "--room-version", "10"],
            b"{\"depth\":1.0}",
            "json_float",
        ),
        (
            &["event", "room-id", "--room-version", "11"],
            b"{\"type\":\"m.room.create\"}",
            "event_not_v12_create",
        ),
        (
            &["event", "check", "--room-version", "10", "--keys", &key],
            b"",
            "json_syntax",
        ),
    ];
    for (args, stdin, code) in cases {
        assert_error(&mxfed(args, stdin), 2, code);
    }
    // A key file that is not a signing key.
    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, "ed25519 1\n").unwrap();
    let bad = bad.to_str().unwrap();
    assert_error(
        &mxfed(&["key", "public", "--key", bad], b""),
        2,
        "bad_key_file",
    );
    // Usage errors from the argument parser also exit 2.
    assert_eq!(mxfed(&["sign"], b"").status.code(), Some(2));
    assert_eq!(mxfed(&["no-such-command"], b"").status.code(), Some(2));
}

#[test]
fn verify_failure_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let key = spec_key(&dir);
    let signed = mxfed(
        &["sign", "--key", &key, "--server-name", "domain"],
        b"{\"a\":1}",
    );
    assert!(signed.status.success());
    let pk = "ed25519:1=XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI";
    let ok = mxfed(
        &["verify", "--server-name", "domain", "--public-key", pk],
        &signed.stdout,
    );
    assert_eq!(ok.status.code(), Some(0));
    assert_eq!(ok.stdout, b"{\"verified\":[\"ed25519:1\"]}\n");
    let tampered = String::from_utf8(signed.stdout.clone())
        .unwrap()
        .replace("\"a\":1", "\"a\":2");
    let out = mxfed(
        &["verify", "--server-name", "domain", "--public-key", pk],
        tampered.as_bytes(),
    );
    assert_error(&out, 1, "signature_invalid");
    let out = mxfed(
        &["verify", "--server-name", "other", "--public-key", pk],
        &signed.stdout,
    );
    assert_error(&out, 1, "signature_missing");
    let out = mxfed(
        &[
            "verify",
            "--server-name",
            "domain",
            "--public-key",
            "ed25519:2=XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI",
        ],
        &signed.stdout,
    );
    assert_error(&out, 1, "signature_no_usable_key");
}

#[test]
fn key_generate_is_synapse_format_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.key");
    let p = path.to_str().unwrap();
    let out = mxfed(
        &[
            "key",
            "generate",
            "--server-name",
            "example.org",
            "--out",
            p,
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let parts: Vec<&str> = text.trim_end().split(' ').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0], "ed25519");
    assert!(parts[1].starts_with("a_") && parts[1].len() == 6);
    assert_eq!(parts[2].len(), 43);
    // A second run must not clobber the key.
    let again = mxfed(
        &[
            "key",
            "generate",
            "--server-name",
            "example.org",
            "--out",
            p,
        ],
        b"",
    );
    assert_error(&again, 2, "io");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    // The public key derives from the file.
    let public = mxfed(&["key", "public", "--key", p], b"");
    let j: serde_json::Value = serde_json::from_slice(&public.stdout).unwrap();
    assert_eq!(j.as_object().unwrap().len(), 1);
    assert!(j[format!("ed25519:{}", parts[1])].is_string());
    // Two generated keys differ.
    let other = mxfed(&["key", "generate", "--server-name", "example.org"], b"");
    assert_ne!(String::from_utf8(other.stdout).unwrap(), text);
}

#[test]
fn event_check_reports_each_line_and_exits_1_on_any_failure() {
    let dir = tempfile::tempdir().unwrap();
    let key = spec_key(&dir);
    let keys = dir.path().join("keys.json");
    // Our own key response, self-signed, valid far into the future.
    let resp = mxfed(
        &["sign", "--key", &key, "--server-name", "domain"],
        br#"{"server_name":"domain","valid_until_ts":4000000000000,"verify_keys":{"ed25519:1":{"key":"XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"}},"old_verify_keys":{}}"#,
    );
    std::fs::write(&keys, &resp.stdout).unwrap();
    let keys = keys.to_str().unwrap();
    let ev = br#"{"type":"m.room.message","room_id":"!r:domain","sender":"@u:domain","content":{"body":"hi"},"origin_server_ts":1000,"depth":2,"prev_events":[],"auth_events":[]}"#;
    let signed = mxfed(
        &[
            "event",
            "sign",
            "--room-version",
            "10",
            "--key",
            &key,
            "--server-name",
            "domain",
        ],
        ev,
    );
    let good = String::from_utf8(signed.stdout).unwrap();
    let changed_body = good.replace("\"body\":\"hi\"", "\"body\":\"ho\"");
    let changed_sender = good.replace("@u:domain", "@v:domain");
    let input = format!("{good}{changed_body}{changed_sender}not json\n");
    let out = mxfed(
        &["event", "check", "--room-version", "10", "--keys", keys],
        input.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["verdict"].as_str().unwrap().to_owned(),
                l["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("accepted".into(), "".into()),
            ("redacted".into(), "".into()),
            ("rejected".into(), "signature_invalid".into()),
            ("rejected".into(), "json_syntax".into()),
        ]
    );
    assert_eq!(lines[0]["signatures"]["domain"]["ed25519:1"], "ok");
    assert_eq!(lines[1]["content_hash"], "mismatch");
    // Only the good line: exit 0.
    let out = mxfed(
        &["event", "check", "--room-version", "10", "--keys", keys],
        good.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0));
    // A key file that is not self-signed is bad input.
    let forged = String::from_utf8(resp.stdout)
        .unwrap()
        .replace("4000000000000", "4000000000001");
    let forged_path = dir.path().join("forged.json");
    std::fs::write(&forged_path, forged).unwrap();
    let out = mxfed(
        &[
            "event",
            "check",
            "--room-version",
            "10",
            "--keys",
            forged_path.to_str().unwrap(),
        ],
        good.as_bytes(),
    );
    assert_error(&out, 2, "keys_not_self_signed");
}

#[test]
fn acl_check_prints_one_verdict_per_name_and_exits_1_on_any_denial() {
    let acl = br#"{"allow":["*"],"deny":["evil.example"],"allow_ip_literals":false}"#;
    let out = mxfed(
        &[
            "acl",
            "check",
            "--acl",
            "-",
            "good.example:8448",
            "EVIL.example",
        ],
        acl,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"allowed\":true,\"server_name\":\"good.example:8448\"}\n\
         {\"allowed\":false,\"server_name\":\"EVIL.example\"}\n"
    );
    let out = mxfed(&["acl", "check", "--acl", "-", "good.example"], acl);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn discover_plan_takes_the_well_known_body_from_a_file_or_stdin() {
    let out = mxfed(&["discover", "plan", "example.org"], b"");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"action\":\"well_known\",\"url\":\"https://example.org/.well-known/matrix/server\"}\n"
    );
    let out = mxfed(
        &["discover", "plan", "example.org", "--well-known", "-"],
        br#"{"m.server":"matrix.example.org:443"}"#,
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"action\":\"connect\",\"host\":\"matrix.example.org\",\"port\":443}\n"
    );
    let out = mxfed(&["discover", "pick-srv"], b"[]");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "null\n");
}

#[test]
fn history_may_see_prints_the_understood_visibility() {
    for (args, want) in [
        (
            &[
                "history",
                "may-see",
                "--visibility",
                "joined",
                "leave",
                "join",
            ][..],
            "{\"history_visibility\":\"joined\",\"may_see\":true}\n",
        ),
        (
            &["history", "may-see", "--visibility", "invited", "ban"][..],
            "{\"history_visibility\":\"invited\",\"may_see\":false}\n",
        ),
        (
            &["history", "may-see", "--visibility", "foo"][..],
            "{\"history_visibility\":\"shared\",\"may_see\":true}\n",
        ),
        (
            &["history", "may-see", "--visibility", ""][..],
            "{\"history_visibility\":\"shared\",\"may_see\":true}\n",
        ),
        (
            &["history", "may-see"][..],
            "{\"history_visibility\":\"shared\",\"may_see\":true}\n",
        ),
    ] {
        let out = mxfed(args, b"");
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{args:?}");
    }
}

#[test]
fn room_restricted_join_prints_via_and_exits_1_on_refusal() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/synapse/tampered");
    let tmp = tempfile::tempdir().unwrap();
    // The v10 room, after the evil server made the join rule restricted (allow: the side room).
    let mut pdus = Vec::new();
    for line in std::fs::read_to_string(dir.join("v10.jsonl"))
        .unwrap()
        .lines()
    {
        let j: serde_json::Value = serde_json::from_str(line).unwrap();
        pdus.extend(serde_json::to_vec(&j["pdu"]).unwrap());
        pdus.push(b'\n');
    }
    let room = tmp.path().join("room.jsonl");
    std::fs::write(&room, &pdus).unwrap();
    let room = room.to_str().unwrap().to_owned();
    let side = "!hxQfzxEpnupvHUrUcF:localhost:8448";
    let keys: Vec<String> = ["8448", "8449", "8450"]
        .iter()
        .map(|p| {
            let p = dir.join(format!("keys/localhost_{p}.json"));
            p.to_str().unwrap().to_owned()
        })
        .collect();
    let run = |extra: &[&str]| {
        let mut args = vec!["room", "restricted-join", "--room-version", "10"];
        args.extend(extra);
        args.push("--keys");
        args.extend(keys.iter().map(String::as_str));
        args.push(&room);
        mxfed(&args, b"")
    };
    let joined = format!("--joined-to={side}=true");
    let out = run(&["--server-name", "localhost:8448", "--user", "@z:b", &joined]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"via\":\"@alice:localhost:8448\"}\n"
    );
    let carol = [
        "--server-name",
        "localhost:8448",
        "--user",
        "@carol:localhost:8450",
    ];
    let out = run(&carol);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "{\"via\":null}\n");
    let not_joined = format!("--joined-to={side}=false");
    let out = run(&[
        "--server-name",
        "localhost:8448",
        "--user",
        "@z:b",
        &not_joined,
    ]);
    assert_error(&out, 1, "restricted_not_allowed");
    let out = run(&["--server-name", "localhost:8448", "--user", "@z:b"]);
    assert_error(&out, 1, "restricted_unable_to_authorise");
    // Bad input: exit 2, one line.
    let out = run(&["--server-name", "localhost:8448", "--user", "z", &joined]);
    assert_error(&out, 2, "bad_user_id");
    let out = run(&["--server-name", "bad name", "--user", "@z:b"]);
    assert_error(&out, 2, "bad_server_name");
    let out = run(&[
        "--server-name",
        "a",
        "--user",
        "@z:b",
        "--joined-to",
        "!r:a=yes",
    ]);
    assert_error(&out, 2, "bad_joined_to_arg");
}

/// `mxfed serve` refuses a config whose limits it cannot use (a `gap_fill_seconds` the clock
/// cannot add made every `/send` panic): exit status 2, one line naming the key, before
/// anything is created or bound.
#[test]
fn serve_refuses_absurd_limits() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mxfed.toml"),
        "server_name = \"localhost\"\n[limits]\ngap_fill_seconds = 9223372036854775807\n",
    )
    .unwrap();
    let data = dir.path().to_str().unwrap();
    let out = mxfed(&["serve", "--dev", "--data-dir", data], b"");
    assert_error(&out, 2, "serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[limits] gap_fill_seconds"), "{stderr}");
    assert!(!dir.path().join("signing.key").exists());
}
