//! Starting inputs for each target, taken from the shared vectors (`tests/vectors/`): real PDUs,
//! transactions, headers, EDUs, key answers, ACLs and `.well-known` bodies. libFuzzer starts
//! from them (`scripts/fuzz.sh`) and the replay test runs the targets on them.

use std::path::{Path, PathBuf};

use mxfed_core::canonical::{parse, ParseOptions, Value};
use mxfed_core::RoomVersion;

/// The vectors directory of this checkout.
pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../vectors")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(path: &Path) -> Value {
    parse(&read(path), &ParseOptions::LEGACY).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn bytes(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    mxfed_core::canonical::encode_into(v, &mut out);
    out
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    out
}

/// Every JSON value found under `key` anywhere in `v`.
fn all_under<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o.iter() {
                if k == key {
                    out.push(x);
                }
                all_under(x, key, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| all_under(x, key, out)),
        _ => {}
    }
}

fn under(v: &Value, key: &str) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    all_under(v, key, &mut found);
    found.into_iter().map(bytes).collect()
}

/// The samples' requests (`tests/vectors/samples/*.json`).
fn samples() -> Vec<Value> {
    files(&vectors_dir().join("samples"), "json")
        .iter()
        .map(|p| json(p))
        .collect()
}

/// Lines of `synapse/pdus.jsonl`: room version and PDU.
fn synapse_pdus() -> Vec<(String, Vec<u8>)> {
    let raw = read(&vectors_dir().join("synapse/pdus.jsonl"));
    raw.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| parse(l, &ParseOptions::LEGACY).ok())
        .filter_map(|line| {
            let o = line.as_object()?;
            Some((o.get_str("room_version")?.to_owned(), bytes(o.get("pdu")?)))
        })
        .collect()
}

/// The seeds of `target`.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = vectors_dir();
    match target {
        "canonical" => {
            let mut out: Vec<Vec<u8>> = files(&dir, "json").iter().map(|p| read(p)).collect();
            out.extend(synapse_pdus().into_iter().map(|(_, p)| p).take(40));
            out.extend(samples().iter().flat_map(|s| under(s, "content")));
            out
        }
        "xmatrix" => samples()
            .iter()
            .filter_map(|s| {
                let r = s.as_object()?.get_object("request")?;
                let header = r.get("authorization")?.as_array()?.first()?.as_str()?;
                let mut input = header.as_bytes().to_vec();
                input.push(b'\n');
                if let Some(c) = r.get("content") {
                    input.extend(bytes(c));
                }
                Some(input)
            })
            .collect(),
        "pdu" => synapse_pdus()
            .into_iter()
            .filter_map(|(version, pdu)| {
                let i = RoomVersion::ALL.iter().position(|v| v.id == version)?;
                let mut input = vec![u8::try_from(i).ok()?];
                input.extend(pdu);
                Some(input)
            })
            .take(60)
            .collect(),
        "transaction" => samples()
            .iter()
            .filter_map(|s| {
                let r = s.as_object()?.get_object("request")?;
                r.get_str("uri")?
                    .contains("/send/")
                    .then(|| r.get("content").map(bytes))?
            })
            .collect(),
        "edus_and_keys" => {
            let mut out = Vec::new();
            for s in samples() {
                out.extend(under(&s, "content"));
            }
            for p in files(&dir.join("synapse/keys"), "json") {
                out.push(read(&p));
            }
            let acl = json(&dir.join("acl.json"));
            out.extend(under(&acl, "content"));
            let templates = json(&dir.join("membership_template.json"));
            out.extend(under(&templates, "answer"));
            let discovery = json(&dir.join("discovery.json"));
            let mut bodies = Vec::new();
            all_under(&discovery, "well_known", &mut bodies);
            out.extend(bodies.iter().map(|b| match b.as_str() {
                Some(text) => text.as_bytes().to_vec(),
                None => bytes(b),
            }));
            out
        }
        "room" => (0u8..16)
            .map(|i| {
                (0..64u32)
                    .map(|j| i.wrapping_mul(37) ^ (j as u8).wrapping_mul(11))
                    .collect()
            })
            .collect(),
        _ => Vec::new(),
    }
}
