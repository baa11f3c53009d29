//! mxfed's state resolution against ruma-state-res on generated forked rooms: every resolution
//! a generated room needed (each merge, and the final one over all branch tips) is redone by
//! ruma from the same state sets, auth chains and events, and both results must be equal.
//!
//! `MXFED_STATE_RES_DIFF_DAGS=N` sets the rooms per room version 10–12 (and N/10 for each of
//! 3–9; defaults below), e.g. `MXFED_STATE_RES_DIFF_DAGS=20000` for a long run;
//! `MXFED_STATE_RES_DIFF_SEED=V:SEED` runs one room and prints it whole.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{
    auth_chains, conflicted_subgraph, diff, report, ruma_default_level_divergence, ruma_events,
    ruma_resolve, Skip,
};
use mxfed_core::RoomVersion;
use mxfed_state_res_diff::{describe, generate, Dag, Keys, Size};

/// Rooms per room version for 10, 11 and 12 (3 × 600, plus 7 × 30 older: 2,010 rooms in the
/// default run).
const DEFAULT_DAGS: u64 = 600;
/// Rooms per room version for the older versions 3–9 ruma also resolves (v2 algorithm).
const DEFAULT_DAGS_OLD: u64 = 30;

fn dags(default: u64) -> u64 {
    std::env::var("MXFED_STATE_RES_DIFF_DAGS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(default, |n: u64| {
            if default == DEFAULT_DAGS {
                n
            } else {
                n.div_ceil(10)
            }
        })
}

#[derive(Debug, Default)]
struct Stats {
    dags: u64,
    events: usize,
    rejected: usize,
    resolutions: usize,
    compared: usize,
    /// Compared resolutions with at least one conflicted key.
    conflicted: usize,
    /// … with a conflicted power event (power levels, join rules, kick/ban).
    conflicted_power: usize,
    /// … where some conflicted key ended without any of its input candidates (all failed
    /// auth, or an older event from the auth difference won).
    candidates_lost: usize,
    /// … where auth overruled a candidate: a conflicted key resolved to a candidate that is in
    /// the auth chain of another candidate (the newer one failed the iterative auth checks).
    overruled: usize,
    /// … (v12) where the conflicted state subgraph adds events to the conflicted set and the
    /// auth difference.
    subgraph_extra: usize,
    skipped: BTreeMap<Skip, usize>,
    /// Compared resolutions whose auth chains hold a power-levels event on which ruma's and
    /// Synapse's auth rules differ (see `ruma_default_level_divergence`).
    divergent_involved: usize,
    /// Disagreements explained by a known difference (see README.md), by cause.
    explained: BTreeMap<&'static str, usize>,
    gen_time: std::time::Duration,
    check_time: std::time::Duration,
    mismatches: Vec<String>,
}

/// A state key: `(type, state_key)`.
type Key = (String, String);

fn is_power(dag: &Dag, id: &str) -> bool {
    dag.store.events.get(id).is_some_and(|s| {
        let p = &s.pdu;
        matches!(p.kind(), "m.room.power_levels" | "m.room.join_rules")
            || (p.kind() == "m.room.member"
                && matches!(p.membership(), Some("leave" | "ban"))
                && p.state_key() != Some(p.sender()))
    })
}

fn check_dag(dag: &Dag, stats: &mut Stats) {
    stats.dags += 1;
    stats.events += dag.order.len();
    stats.rejected += dag.rejected;
    let events = match ruma_events(&dag.store) {
        Ok(e) => e,
        Err(_) => {
            *stats.skipped.entry(Skip::Unrepresentable).or_default() += dag.resolutions.len();
            return;
        }
    };
    for r in &dag.resolutions {
        stats.resolutions += 1;
        let ruma = match ruma_resolve(dag, &events, r) {
            Ok(s) => s,
            Err(skip) => {
                *stats.skipped.entry(skip).or_default() += 1;
                continue;
            }
        };
        stats.compared += 1;
        let keys: BTreeSet<&(String, String)> =
            r.state_sets.iter().flat_map(|s| s.keys()).collect();
        let conflicted: Vec<(&Key, BTreeSet<Option<&String>>)> = keys
            .into_iter()
            .map(|k| {
                (
                    k,
                    r.state_sets
                        .iter()
                        .map(|s| s.get(k))
                        .collect::<BTreeSet<_>>(),
                )
            })
            .filter(|(_, vals)| vals.len() > 1)
            .collect();
        if !conflicted.is_empty() {
            stats.conflicted += 1;
        }
        if conflicted
            .iter()
            .any(|(_, vals)| vals.iter().flatten().any(|id| is_power(dag, id)))
        {
            stats.conflicted_power += 1;
        }
        if conflicted
            .iter()
            .any(|(k, vals)| !vals.contains(&r.resolved.get(*k)))
        {
            stats.candidates_lost += 1;
        }
        if conflicted.iter().any(|(k, vals)| {
            let Some(won) = r.resolved.get(*k) else {
                return false;
            };
            vals.iter()
                .flatten()
                .any(|n| *n != won && dag.store.auth_closure(std::iter::once(*n)).contains(won))
        }) {
            stats.overruled += 1;
        }
        if dag.version.room_id_from_create_event {
            let ids: BTreeSet<String> = conflicted
                .iter()
                .flat_map(|(_, vals)| vals.iter().flatten().map(|s| (*s).clone()))
                .collect();
            let chains = auth_chains(dag, r);
            let union: BTreeSet<&String> = chains.iter().flatten().collect();
            let extra = conflicted_subgraph(&dag.store, &ids).into_iter().any(|e| {
                !ids.contains(&e) && union.contains(&e) && chains.iter().all(|c| c.contains(&e))
            });
            if extra {
                stats.subgraph_extra += 1;
            }
        }
        let divergent = ruma_default_level_divergence(&dag.store);
        let chains = auth_chains(dag, r);
        let involved = divergent
            .iter()
            .any(|e| chains.iter().any(|c| c.contains(e)));
        if involved {
            stats.divergent_involved += 1;
        }
        let d = diff(&r.resolved, &ruma);
        if !d.is_empty() {
            // ruma's reading of added/removed power levels (see ruma_default_level_divergence):
            // explained when the resolved power levels differ and such an event is among those
            // the resolution may check.
            let pl_key = ("m.room.power_levels".to_owned(), String::new());
            if d.contains_key(&pl_key) && involved {
                *stats
                    .explained
                    .entry("ruma reads an added/removed level as its default")
                    .or_default() += 1;
            } else {
                stats.mismatches.push(report(dag, r, &ruma));
            }
        }
    }
}

fn run(version: &str, count: u64, seed_base: u64) -> Stats {
    let v = RoomVersion::get(version).unwrap();
    let keys = Keys::new().unwrap();
    let mut stats = Stats::default();
    for i in 0..count {
        let seed = seed_base + i;
        let t0 = std::time::Instant::now();
        let dag = generate(v, seed, Size::MODEST, &keys)
            .unwrap_or_else(|e| panic!("v{version} seed {seed}: generation failed: {e}"));
        let t1 = std::time::Instant::now();
        check_dag(&dag, &mut stats);
        stats.gen_time += t1 - t0;
        stats.check_time += t1.elapsed();
    }
    eprintln!(
        "v{version}: {} rooms, {} events ({} rejected), {} resolutions, {} compared with ruma \
         ({} with conflicts, {} with conflicted power events, {} where auth overruled a newer \
         candidate, {} where a conflicted key lost every candidate, {} where the conflicted \
         subgraph adds events), skipped {:?}, explained differences {:?} (of {} resolutions \
         involving such an event), {} unexplained mismatches",
        stats.dags,
        stats.events,
        stats.rejected,
        stats.resolutions,
        stats.compared,
        stats.conflicted,
        stats.conflicted_power,
        stats.overruled,
        stats.candidates_lost,
        stats.subgraph_extra,
        stats.skipped,
        stats.explained,
        stats.divergent_involved,
        stats.mismatches.len()
    );
    eprintln!(
        "v{version}: generation {:?}, comparison {:?}",
        stats.gen_time, stats.check_time
    );
    if let Some(first) = stats.mismatches.first() {
        panic!(
            "v{version}: {} of {} resolutions differ from ruma; the first:\n{first}",
            stats.mismatches.len(),
            stats.compared
        );
    }
    assert_eq!(
        stats.skipped,
        BTreeMap::new(),
        "v{version}: nothing may be skipped"
    );
    stats
}

/// The generated rooms must exercise resolution, not just trivially agree: nearly every
/// resolution has conflicts, most of them on power events, and in a fair share the auth checks
/// decide the outcome.
fn assert_coverage(what: &str, stats: &Stats) {
    let n = stats.compared;
    assert!(n > 0, "{what}: nothing compared");
    assert!(stats.conflicted * 10 >= n * 9, "{what}: {stats:?}");
    assert!(stats.conflicted_power * 10 >= n * 6, "{what}: {stats:?}");
    assert!(stats.overruled * 100 >= n * 5, "{what}: {stats:?}");
    assert!(stats.candidates_lost * 100 >= n * 2, "{what}: {stats:?}");
}

#[test]
fn v10_generated_rooms_agree_with_ruma() {
    let stats = run("10", dags(DEFAULT_DAGS), 10_000_000);
    assert_coverage("v10", &stats);
}

#[test]
fn v11_generated_rooms_agree_with_ruma() {
    let stats = run("11", dags(DEFAULT_DAGS), 11_000_000);
    assert_coverage("v11", &stats);
}

#[test]
fn v12_generated_rooms_agree_with_ruma() {
    let stats = run("12", dags(DEFAULT_DAGS), 12_000_000);
    assert_coverage("v12", &stats);
}

/// The older versions ruma resolves with the same v2 algorithm (3–9: knock from 7, restricted
/// joins from 8, string power levels before 10), fewer rooms each.
#[test]
fn v3_to_v9_generated_rooms_agree_with_ruma() {
    let mut all = Stats::default();
    for v in 3..=9u64 {
        let s = run(&v.to_string(), dags(DEFAULT_DAGS_OLD), v * 1_000_000);
        all.compared += s.compared;
        all.conflicted += s.conflicted;
        all.conflicted_power += s.conflicted_power;
        all.overruled += s.overruled;
        all.candidates_lost += s.candidates_lost;
    }
    assert_coverage("v3-v9", &all);
}

/// `MXFED_STATE_RES_DIFF_SEED=V:SEED`: one room, printed whole with every resolution.
#[test]
fn one_seed() {
    let Ok(spec) = std::env::var("MXFED_STATE_RES_DIFF_SEED") else {
        return;
    };
    let (v, seed) = spec.split_once(':').expect("V:SEED");
    let v = RoomVersion::get(v).unwrap();
    let keys = Keys::new().unwrap();
    let dag = generate(v, seed.parse().unwrap(), Size::MODEST, &keys).unwrap();
    let events = ruma_events(&dag.store).unwrap();
    for id in &dag.order {
        eprintln!("{}", describe(&dag.store, id));
    }
    for r in &dag.resolutions {
        match ruma_resolve(&dag, &events, r) {
            Ok(ruma) => eprintln!("{}", report(&dag, r, &ruma)),
            Err(s) => eprintln!("skipped: {s:?}"),
        }
    }
    let mut stats = Stats::default();
    check_dag(&dag, &mut stats);
    eprintln!(
        "explained: {:?}; unexplained: {}",
        stats.explained,
        stats.mismatches.len()
    );
}
