//! Every fuzz target on its seeds, on every committed corpus input (`fuzz/corpus/<target>/`:
//! inputs that once crashed a target, and inputs libFuzzer found that reach new code), and on
//! a fixed series of mutations of the seeds — the CI's share of the fuzzing.
#![allow(clippy::panic)]

use std::path::Path;

use mxfed_fuzz_harness::seeds::seeds;
use mxfed_fuzz_harness::TARGETS;

/// A small deterministic generator (xorshift), so the mutations are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `input`, as libFuzzer's simplest mutators make them: flip, insert, remove,
/// repeat a piece, or splice in a byte JSON cares about.
fn mutate(input: &mut Vec<u8>, rng: &mut Rng) {
    const SPECIAL: &[u8] = b"{}[]\",:\\0-1e.tfn \n\x00\xff\xc3";
    let at = rng.below(input.len() + 1);
    match rng.below(5) {
        0 if !input.is_empty() => {
            let i = at.min(input.len() - 1);
            input[i] ^= 1 << rng.below(8);
        }
        1 => input.insert(at, SPECIAL[rng.below(SPECIAL.len())]),
        2 if at < input.len() => {
            let end = (at + 1 + rng.below(8)).min(input.len());
            input.drain(at..end);
        }
        3 if at < input.len() => {
            let end = (at + 1 + rng.below(16)).min(input.len());
            let piece = input[at..end].to_vec();
            input.splice(at..at, piece);
        }
        _ => input.insert(at, rng.next() as u8),
    }
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.display().to_string(), bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_target_has_seeds() {
    for (name, _) in TARGETS {
        assert!(seeds(name).len() >= 4, "{name}: too few seeds");
    }
}

#[test]
fn targets_hold_on_seeds_and_the_committed_corpus() {
    for (name, run) in TARGETS {
        for seed in seeds(name) {
            run(&seed);
        }
        for (path, input) in corpus(name) {
            eprintln!("{name}: {path}");
            run(&input);
        }
    }
}

#[test]
fn targets_hold_on_mutated_seeds() {
    for (name, run) in TARGETS {
        let seeds = seeds(name);
        let rounds = if *name == "room" { 300 } else { 1500 };
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
        for _ in 0..rounds {
            let mut input = seeds[rng.below(seeds.len())].clone();
            for _ in 0..=rng.below(4) {
                mutate(&mut input, &mut rng);
            }
            run(&input);
        }
    }
}

/// The room target is not vacuous: on its seeds most events are accepted (the signing, the
/// building and the first events are right), and the rest are refused by the auth rules and
/// the format and signature checks (the choices reach them).
#[test]
fn room_target_reaches_the_auth_rules() {
    let mut counts = std::collections::BTreeMap::new();
    for seed in seeds("room") {
        for v in mxfed_fuzz_harness::room_verdicts(&seed) {
            *counts.entry((v.as_str(), v.code())).or_insert(0usize) += 1;
        }
    }
    let total: usize = counts.values().sum();
    let count = |pick: &dyn Fn(&str, Option<&str>) -> bool| -> usize {
        counts
            .iter()
            .filter(|((verdict, code), _)| pick(verdict, *code))
            .map(|(_, n)| n)
            .sum()
    };
    let accepted = count(&|v, _| v == "accepted");
    let by_auth = count(&|_, c| c.is_some_and(|c| c.starts_with("auth_")));
    let by_checks = count(&|_, c| c.is_some_and(|c| !c.starts_with("auth_")));
    assert!(accepted * 2 > total, "{counts:?}");
    assert!(by_auth * 10 > total, "{counts:?}");
    assert!(by_checks > 0, "{counts:?}");
}
