//! Keys: our own `/_matrix/key/v2/server` answer, and fetching other servers' keys when the core
//! `KeyCache` says so (directly, then through the configured notaries), persisted in SQLite.

use std::collections::BTreeMap;

use mxfed_core::canonical::{Int, Object};
use mxfed_core::keys::{KeyId, VerifyKey};
use mxfed_core::server_keys::{build_server_keys, verify_notary_response, KeyFetch, KeyRing};
use mxfed_core::{Millis, RoomVersion, Timestamp};

use super::{now, warn, AppState};

/// How long our key answer says it is valid (Synapse's default refresh interval).
pub const OWN_KEYS_VALIDITY: Millis = Millis::from_secs(24 * 3600);

/// Our self-signed key answer, valid for a day from `at`.
pub fn own_keys(state: &AppState, at: Timestamp) -> Option<Object> {
    let until = Int::saturating(at.saturating_add(OWN_KEYS_VALIDITY).as_i64());
    build_server_keys(&state.server_name, &state.keys, &[], until).ok()
}

/// The key ring to verify with, making sure our own keys are in it and fresh.
pub fn key_ring(state: &AppState) -> KeyRing {
    let t = now();
    let mut cache = state.key_cache();
    let stale = cache.refresh_at(&state.server_name).is_none_or(|r| r <= t);
    if stale {
        if let Some(own) = own_keys(state, t) {
            let _ = cache.insert(own, Some(&state.server_name), t);
        }
    }
    cache.key_ring().clone()
}

/// Loads the key responses cached in the database into the core cache.
pub fn load(state: &AppState) {
    let rows = state.db().server_keys().unwrap_or_default();
    let mut cache = state.key_cache();
    for (server, response, fetched) in rows {
        let parsed = mxfed_core::canonical::parse_object(
            response.as_bytes(),
            &mxfed_core::canonical::ParseOptions::LEGACY,
        );
        if let Ok(o) = parsed {
            let _ = cache.insert(o, Some(&server), Timestamp::from_i64(fetched));
        }
    }
}

fn remember(state: &AppState, server: &str, response: Object) -> bool {
    let t = now();
    let text = response.to_canonical_string();
    let ok = state.key_cache().insert(response, Some(server), t).is_ok();
    if ok {
        let _ = state.write(|db| db.put_server_keys(server, &text, t.as_i64()));
    }
    ok
}

/// Fetches a server's keys: directly, then from each trusted notary, until the cache holds
/// what `f` asks for (`KeyCache::satisfies`: the key IDs needed, valid long enough). An answer
/// that verifies but lacks a needed key, or is not valid long enough, is kept and the next
/// source asked, as Synapse does. Returns whether the keys asked for are cached in the end.
pub async fn fetch(state: &AppState, f: &KeyFetch) -> bool {
    if f.server == state.server_name {
        let _ = key_ring(state);
        return true;
    }
    let satisfied = || state.key_cache().satisfies(f);
    match state
        .client
        .json_opt(&f.server, "GET", "/_matrix/key/v2/server", None, false)
        .await
    {
        Ok(o) => {
            if !remember(state, &f.server, o) {
                warn(&format!("keys of {}: answer did not verify", f.server));
            } else if satisfied() {
                return true;
            } else {
                warn(&format!(
                    "keys of {}: the answer lacks a key needed or is not valid long enough",
                    f.server
                ));
            }
        }
        Err(e) => warn(&format!("keys of {}: {e}", f.server)),
    }
    // Each key ID needed, with the validity needed (Synapse's query).
    let body = f.notary_query().to_json();
    for notary in &state.config.federation.trusted_notaries {
        let keys: BTreeMap<KeyId, VerifyKey> = notary
            .verify_keys
            .iter()
            .filter_map(|(id, k)| Some((KeyId::parse(id).ok()?, VerifyKey::from_base64(k).ok()?)))
            .collect();
        let answer = state
            .client
            .json_opt(
                &notary.server_name,
                "POST",
                "/_matrix/key/v2/query",
                Some(&body),
                false,
            )
            .await;
        let Ok(answer) = answer else { continue };
        let Ok(checked) = verify_notary_response(&answer, &notary.server_name, &keys) else {
            continue;
        };
        for (k, o) in checked.accepted {
            if k.server_name == f.server {
                remember(state, &f.server, o);
            }
        }
        if satisfied() {
            return true;
        }
    }
    satisfied()
}

/// Makes sure the keys needed to check these events (all of one room version) are cached,
/// fetching each server at most once.
pub async fn ensure_for_events(state: &AppState, events: &[&Object], v: &'static RoomVersion) {
    // One fetch per server, covering every key ID and validity the events need (the core
    // merges them); ours are not fetched.
    let fetches: Vec<KeyFetch> = state
        .key_cache()
        .fetches_for_events(events.iter().map(|ev| (*ev, v)))
        .into_iter()
        .filter(|f| f.server != state.server_name)
        .collect();
    for f in &fetches {
        fetch(state, f).await;
    }
}
