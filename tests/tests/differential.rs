//! Differential test: mxfed's canonical JSON and JSON signing against the Python libraries Synapse
//! uses, canonicaljson 2.0.0 and signedjson 1.1.4, on a generated corpus (STYLE.md § Tests).
//!
//! The corpus comes from `tests/differential/gen_corpus.py` (its README gives the line format):
//! 10,000 documents, each an input text in one of several styles with canonicaljson's bytes and,
//! for objects, signedjson's signed result; then a fixed set of "disagreement" lines where mxfed
//! follows the spec rather than Python. Where they disagree the spec decides, and the test says
//! so line by line:
//!
//! - floats, out-of-range integers, `NaN`/`Infinity`, duplicate keys and lone surrogates: Python
//!   accepts or mangles them, mxfed rejects them or (for exact in-range integers such as `1e10`)
//!   normalises them — checked against the line's `spec_canonical`;
//! - a top-level `"unsigned": null`: signedjson drops it when signing, the spec (and mxfed) keeps
//!   it; the one corpus line that has it is checked for exactly that difference.
//!
//! Python is `$MXFED_PYTHON`, else `<repo>/.venv/bin/python`. Without either the test is skipped
//! with a note on stderr, except under CI (`$CI` set), where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use mxfed_core::canonical::{
    self, parse, parse_object, CanonicalJsonErrorKind, ParseOptions, Value,
};
use mxfed_core::keys::SigningKey;
use mxfed_core::signing::sign_json;
use serde_json::Value as Json;

/// Main-corpus documents generated, and the least that must be compared.
const COUNT: usize = 10_000;
/// Signatures that must be compared (about 88% of the corpus is top-level objects).
const MIN_SIGNATURES: usize = 8_000;
/// The spec's test seed (appendix § Signing JSON), as in `gen_corpus.py`.
const SEED: &str = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1";
const SERVER: &str = "domain";
/// Mismatches printed in full; the rest are counted.
const SHOWN: usize = 20;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the repository root")
        .to_path_buf()
}

fn find_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MXFED_PYTHON").filter(|p| !p.is_empty()) {
        return Some(p.into());
    }
    let venv = repo_root().join(".venv").join("bin").join("python");
    venv.exists().then_some(venv)
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn short(s: &[u8]) -> String {
    let s = String::from_utf8_lossy(s);
    if s.chars().count() > 300 {
        format!(
            "{:?}… ({} bytes)",
            s.chars().take(300).collect::<String>(),
            s.len()
        )
    } else {
        format!("{s:?}")
    }
}

/// One disagreement with the reference (or with the spec, on disagreement lines).
struct Mismatch {
    line: u64,
    what: &'static str,
    detail: String,
}

#[derive(Default)]
struct Counts {
    documents: usize,
    strict_documents: usize,
    signatures: usize,
    unsigned_null_exceptions: usize,
    disagreements: usize,
    disagreement_rejects: usize,
    disagreement_normalises: usize,
}

/// The error codes a disagreement case may give, given the offending token where the error
/// records one: integer literals can only be out of range; float literals either are not
/// integers or are out of range.
fn disagreement_code_ok(case: &str, err: &canonical::CanonicalJsonError) -> bool {
    let is_float = |t: &str| t.contains(['.', 'e', 'E']);
    match (case, &err.kind) {
        ("number", CanonicalJsonErrorKind::IntegerOutOfRange { .. }) => true,
        ("number", CanonicalJsonErrorKind::NotInteger { text }) => is_float(text),
        ("nan_infinity", CanonicalJsonErrorKind::NonFinite { .. }) => true,
        ("duplicate_keys", CanonicalJsonErrorKind::DuplicateKey { .. }) => true,
        ("lone_surrogate_value" | "lone_surrogate_key", CanonicalJsonErrorKind::LoneSurrogate) => {
            true
        }
        _ => false,
    }
}

fn check_main_line(
    line: &Json,
    i: u64,
    key: &SigningKey,
    counts: &mut Counts,
    bad: &mut Vec<Mismatch>,
) {
    let mut miss = |what, detail| {
        bad.push(Mismatch {
            line: i,
            what,
            detail,
        })
    };
    let input = line["input"].as_str().expect("input").as_bytes();
    let expected = hex_decode(line["canonical_hex"].as_str().expect("canonical_hex"))
        .expect("canonical_hex is hex");
    if line["canonical"].as_str().map(str::as_bytes) != Some(&expected[..]) {
        miss("corpus", "canonical and canonical_hex differ".into());
    }

    counts.documents += 1;
    match canonical::canonicalize(input) {
        Ok(out) if out == expected => {}
        Ok(out) => miss(
            "canonical",
            format!(
                "input {}\n      python {}\n      mxfed  {}",
                short(input),
                short(&expected),
                short(&out)
            ),
        ),
        Err(e) => miss(
            "canonical",
            format!(
                "input {}\n      mxfed error {}: {e}",
                short(input),
                e.code()
            ),
        ),
    }
    // The main corpus has no floats and no out-of-range integers, so strict parsing (what
    // room versions 6+ use) must accept every input and agree too.
    counts.strict_documents += 1;
    match parse(input, &ParseOptions::STRICT) {
        Ok(v) if canonical::to_vec(&v) == expected => {}
        Ok(v) => miss(
            "canonical (strict)",
            format!(
                "input {}\n      python {}\n      mxfed  {}",
                short(input),
                short(&expected),
                short(&canonical::to_vec(&v))
            ),
        ),
        Err(e) => miss(
            "canonical (strict)",
            format!(
                "input {}\n      mxfed error {}: {e}",
                short(input),
                e.code()
            ),
        ),
    }

    let Some(python_signed) = line["signed_canonical"].as_str() else {
        return;
    };
    counts.signatures += 1;
    let mut obj = match parse_object(input, &ParseOptions::NORMALIZE) {
        Ok(o) => o,
        Err(e) => {
            return miss(
                "sign",
                format!("input {} does not parse as an object: {e}", short(input)),
            )
        }
    };
    if let Err(e) = sign_json(&mut obj, SERVER, key) {
        return miss("sign", format!("input {}: {e}", short(input)));
    }
    let ours = obj.to_canonical_string();
    if obj.get("unsigned") == Some(&Value::Null) {
        // The one documented exception: signedjson drops a top-level `"unsigned": null`
        // (`if unsigned is not None`); the spec's algorithm puts `unsigned` back whatever it is.
        // The signature itself does not cover `unsigned`, so everything else must agree.
        counts.unsigned_null_exceptions += 1;
        let mut without = obj.clone();
        without.remove("unsigned");
        if ours == python_signed || without.to_canonical_string() != python_signed {
            miss(
                "sign (unsigned: null)",
                format!(
                    "expected signedjson's output plus \"unsigned\":null\n      python {python_signed}\n      mxfed  {ours}"
                ),
            );
        }
    } else if ours != python_signed {
        miss(
            "sign",
            format!(
                "input {}\n      python {}\n      mxfed  {}",
                short(input),
                short(python_signed.as_bytes()),
                short(ours.as_bytes())
            ),
        );
    }
}

fn check_disagreement_line(line: &Json, i: u64, counts: &mut Counts, bad: &mut Vec<Mismatch>) {
    let mut miss = |what, detail| {
        bad.push(Mismatch {
            line: i,
            what,
            detail,
        })
    };
    let input = line["input"].as_str().expect("input").as_bytes();
    let case = line["case"].as_str().expect("case");
    let expect_error = line["expect_error"].as_bool().expect("expect_error");
    let python = &line["python_canonical"];
    counts.disagreements += 1;
    match (expect_error, canonical::canonicalize(input)) {
        (true, Err(e)) => {
            counts.disagreement_rejects += 1;
            if !disagreement_code_ok(case, &e) {
                miss(
                    "disagreement: wrong error",
                    format!("case {case}, input {}: {} ({e})", short(input), e.code()),
                );
            }
        }
        (true, Ok(out)) => miss(
            "disagreement: accepted",
            format!(
                "case {case}, input {}: the spec rejects it, mxfed gave {} (python {python})",
                short(input),
                short(&out)
            ),
        ),
        (false, Ok(out)) => {
            counts.disagreement_normalises += 1;
            let spec = line["spec_canonical"].as_str().expect("spec_canonical");
            if out != spec.as_bytes() {
                miss(
                    "disagreement: output",
                    format!(
                        "case {case}, input {}\n      spec  {spec}\n      mxfed {} (python {python})",
                        short(input),
                        short(&out)
                    ),
                );
            }
        }
        (false, Err(e)) => miss(
            "disagreement: rejected",
            format!(
                "case {case}, input {}: the spec accepts it, mxfed: {} ({e})",
                short(input),
                e.code()
            ),
        ),
    }
}

#[test]
fn canonical_json_and_signing_match_python() {
    let Some(python) = find_python() else {
        let msg =
            "differential test needs Python with canonicaljson==2.0.0 and signedjson==1.1.4: \
                   set MXFED_PYTHON or create <repo>/.venv";
        if std::env::var_os("CI").is_some() {
            panic!("{msg} (CI is set, so this test may not be skipped)");
        }
        eprintln!("\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        eprintln!("!!! SKIPPED: {msg}");
        eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n");
        return;
    };

    let script = repo_root()
        .join("tests")
        .join("differential")
        .join("gen_corpus.py");
    let corpus = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("differential-corpus-{}.jsonl", std::process::id()));
    let run = Command::new(&python)
        .arg(&script)
        .args(["--count", &COUNT.to_string(), "--seed", "1", "--out"])
        .arg(&corpus)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let summary = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "{} {} failed ({}):\n{summary}",
        python.display(),
        script.display(),
        run.status
    );
    eprint!("{summary}");

    let text = std::fs::read_to_string(&corpus).expect("read the corpus");
    let key = SigningKey::from_seed_base64("1", SEED).unwrap();
    let mut counts = Counts::default();
    let mut bad: Vec<Mismatch> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line: Json = serde_json::from_str(raw)
            .unwrap_or_else(|e| panic!("corpus line {} is not JSON: {e}", n + 1));
        let i = line["i"].as_u64().expect("i");
        if line["category"].as_str() == Some("disagreement") {
            check_disagreement_line(&line, i, &mut counts, &mut bad);
        } else {
            check_main_line(&line, i, &key, &mut counts, &mut bad);
        }
    }

    eprintln!(
        "compared: {} documents (and {} in strict mode), {} signatures ({} with the \
         documented `\"unsigned\": null` exception), {} disagreement lines ({} rejected as the \
         spec requires, {} normalised to spec_canonical)",
        counts.documents,
        counts.strict_documents,
        counts.signatures,
        counts.unsigned_null_exceptions,
        counts.disagreements,
        counts.disagreement_rejects,
        counts.disagreement_normalises,
    );

    if !bad.is_empty() {
        let mut report = format!(
            "{} mismatches; the first {}:\n",
            bad.len(),
            SHOWN.min(bad.len())
        );
        for m in bad.iter().take(SHOWN) {
            let _ = writeln!(report, "  line {} [{}]: {}", m.line, m.what, m.detail);
        }
        let _ = writeln!(report, "corpus kept at {}", corpus.display());
        panic!("{report}");
    }
    assert!(
        counts.documents >= COUNT,
        "only {} documents compared",
        counts.documents
    );
    assert!(
        counts.signatures >= MIN_SIGNATURES,
        "only {} signatures compared",
        counts.signatures
    );
    // The generator's fixed documents include `{"a":1,"unsigned":null}` exactly once.
    assert_eq!(
        counts.unsigned_null_exceptions, 1,
        "the unsigned-null line is missing"
    );
    assert!(
        counts.disagreement_rejects > 0 && counts.disagreement_normalises > 0,
        "the disagreement lines are missing"
    );
    let _ = std::fs::remove_file(&corpus);
}
