//! [`Host`](crate::Host) implemented by calling mxfed-core directly.

use mxfed_core::acl::ServerAcl;
use mxfed_core::canonical::{self, Int, Object, ParseOptions};
use mxfed_core::keys::{KeyId, SigningKey, VerifyKey};
use mxfed_core::server_keys::{self, KeyRing, ServerKeys};
use mxfed_core::{base64, discovery, event, pdu, room, signing, xmatrix, RoomVersion, Timestamp};

use crate::{CoreHost, Host, Outcome};

fn event(rv: &str, bytes: &[u8]) -> Result<(Object, &'static RoomVersion), String> {
    let v = RoomVersion::get(rv).map_err(|e| e.code().to_owned())?;
    Ok((
        pdu::parse_pdu(bytes, v).map_err(|e| e.code().to_owned())?,
        v,
    ))
}

fn key_ring(keys: &[Vec<u8>]) -> Result<KeyRing, String> {
    let mut ring = KeyRing::new();
    for k in keys {
        let o =
            canonical::parse_object(k, &ParseOptions::STRICT).map_err(|e| e.code().to_owned())?;
        ring.add(&ServerKeys::from_response(&o).map_err(|e| e.code().to_owned())?);
    }
    Ok(ring)
}

fn text(s: String) -> Outcome {
    Ok(s.into_bytes())
}

impl Host for CoreHost {
    fn name(&self) -> String {
        "core".into()
    }

    fn canonical_json(&self, input: &[u8]) -> Outcome {
        canonical::canonicalize(input).map_err(|e| e.code().to_owned())
    }

    fn sign_json(&self, seed: &str, version: &str, server: &str, input: &[u8]) -> Outcome {
        let key = SigningKey::from_seed_base64(version, seed).map_err(|e| e.code().to_owned())?;
        let mut o = canonical::parse_object(input, &ParseOptions::NORMALIZE)
            .map_err(|e| e.code().to_owned())?;
        signing::sign_json(&mut o, server, &key).map_err(|e| e.code().to_owned())?;
        text(o.to_canonical_string())
    }

    fn verify_json(&self, server: &str, key_id: &str, public: &str, input: &[u8]) -> Outcome {
        let id = KeyId::parse(key_id).map_err(|e| e.code().to_owned())?;
        let key = VerifyKey::from_base64(public).map_err(|e| e.code().to_owned())?;
        let o = canonical::parse_object(input, &ParseOptions::NORMALIZE)
            .map_err(|e| e.code().to_owned())?;
        signing::verify_json(&o, server, &[(id, key)].into_iter().collect())
            .map(|_| Vec::new())
            .map_err(|e| e.code().to_owned())
    }

    fn public_key(&self, seed: &str) -> Outcome {
        let key = SigningKey::from_seed_base64("1", seed).map_err(|e| e.code().to_owned())?;
        text(key.verify_key().to_base64())
    }

    fn content_hash(&self, rv: &str, ev: &[u8]) -> Outcome {
        let (ev, _) = event(rv, ev)?;
        text(base64::encode(event::content_hash(&ev)))
    }

    fn reference_hash(&self, rv: &str, ev: &[u8]) -> Outcome {
        let (ev, v) = event(rv, ev)?;
        text(base64::encode(event::reference_hash(&ev, v)))
    }

    fn event_id(&self, rv: &str, ev: &[u8]) -> Outcome {
        let (ev, v) = event(rv, ev)?;
        event::event_id(&ev, v)
            .map(String::into_bytes)
            .map_err(|e| e.code().to_owned())
    }

    fn room_id(&self, rv: &str, ev: &[u8]) -> Outcome {
        let (ev, v) = event(rv, ev)?;
        event::room_id_from_create(&ev, v)
            .map(String::into_bytes)
            .map_err(|e| e.code().to_owned())
    }

    fn redact(&self, rv: &str, ev: &[u8]) -> Outcome {
        let (ev, v) = event(rv, ev)?;
        text(event::redact(&ev, v).to_canonical_string())
    }

    fn hash_and_sign_event(
        &self,
        rv: &str,
        seed: &str,
        version: &str,
        server: &str,
        ev: &[u8],
    ) -> Outcome {
        let key = SigningKey::from_seed_base64(version, seed).map_err(|e| e.code().to_owned())?;
        let (mut ev, v) = event(rv, ev)?;
        event::hash_and_sign_event(&mut ev, v, server, &key).map_err(|e| e.code().to_owned())?;
        text(ev.to_canonical_string())
    }

    fn check_pdus(&self, rv: &str, keys: &[Vec<u8>], pdus: &[u8]) -> Outcome {
        let v = RoomVersion::get(rv).map_err(|e| e.code().to_owned())?;
        let ring = key_ring(keys)?;
        let mut out = Vec::new();
        for line in pdus.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            canonical::encode_object_into(&pdu::check_pdu(line, v, &ring).to_json(), &mut out);
            out.push(b'\n');
        }
        Ok(out)
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
        let key = SigningKey::from_seed_base64(version, seed).map_err(|e| e.code().to_owned())?;
        let req = xmatrix::Request {
            method,
            uri,
            origin,
            destination,
            content: None,
        };
        let headers = req
            .sign_body(content, &[key])
            .map_err(|e| e.code().to_owned())?;
        let lines: Vec<String> = headers.iter().map(|h| h.to_header_value()).collect();
        text(lines.join("\n"))
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
        let ring = key_ring(keys)?;
        let content = content
            .map(xmatrix::RequestBody::parse)
            .transpose()
            .map_err(|e| e.code().to_owned())?;
        let parsed = headers
            .iter()
            .map(|h| xmatrix::XMatrix::parse(h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.code().to_owned())?;
        xmatrix::verify_request_body(
            &parsed,
            destination,
            method,
            uri,
            content.as_ref(),
            &ring,
            Timestamp(now_ms),
        )
        .map(|a| a.origin.into_bytes())
        .map_err(|e| e.code().to_owned())
    }

    fn server_keys(&self, seed: &str, version: &str, server: &str, valid_until_ts: u64) -> Outcome {
        let key = SigningKey::from_seed_base64(version, seed).map_err(|e| e.code().to_owned())?;
        let until = Int::new(Timestamp(valid_until_ts).as_i64()).ok_or("bad_duration")?;
        let o = server_keys::build_server_keys(server, &[key], &[], until)
            .map_err(|e| e.code().to_owned())?;
        text(o.to_canonical_string())
    }

    fn base64_encode(&self, bytes: &[u8]) -> Option<Outcome> {
        Some(text(base64::encode(bytes)))
    }

    fn is_canonical_json(&self, input: &[u8]) -> Option<Outcome> {
        Some(text(canonical::is_canonical(input).to_string()))
    }

    fn server_acl_allows(&self, content: &[u8], server_name: &str) -> Option<Outcome> {
        Some((|| {
            let content = canonical::parse_object(content, &ParseOptions::LEGACY)
                .map_err(|e| e.code().to_owned())?;
            let allowed = ServerAcl::from_content(&content)
                .check(server_name)
                .map_err(|e| e.code().to_owned())?;
            text(allowed.to_string())
        })())
    }

    fn discovery_plan(&self, server_name: &str, well_known: Option<&[u8]>) -> Option<Outcome> {
        Some(
            discovery::plan_json(server_name, well_known)
                .map(|o| o.to_canonical_string().into_bytes())
                .map_err(|e| e.code().to_owned()),
        )
    }

    fn server_may_see(&self, visibility: Option<&str>, memberships: &[&str]) -> Option<Outcome> {
        Some(text(
            room::server_may_see_json(visibility, memberships).to_canonical_string(),
        ))
    }

    fn pick_srv(&self, records: &[u8]) -> Option<Outcome> {
        Some(
            discovery::pick_srv_json(records)
                .map(|v| canonical::to_vec(&v))
                .map_err(|e| e.code().to_owned()),
        )
    }

    fn srv_targets(&self, records: &[u8]) -> Option<Outcome> {
        Some(
            discovery::srv_targets_json(records)
                .map(|o| o.to_canonical_string().into_bytes())
                .map_err(|e| e.code().to_owned()),
        )
    }

    fn well_known_lifetime(
        &self,
        cache_control: Option<&str>,
        expires: Option<&str>,
        now_ms: u64,
    ) -> Option<Outcome> {
        let lifetime = discovery::well_known_lifetime(cache_control, expires, Timestamp(now_ms));
        Some(text(lifetime.0.to_string()))
    }

    fn room_replay(&self, rv: &str, keys: &[Vec<u8>], pdus: &[u8]) -> Option<Outcome> {
        Some(replayed(rv, keys, pdus).map(|(verdicts, room)| {
            let mut out = Vec::new();
            for v in &verdicts {
                canonical::encode_object_into(v, &mut out);
                out.push(b'\n');
            }
            canonical::encode_object_into(&room::state_to_json(&room.current_state()), &mut out);
            out
        }))
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
        let joined_to: std::collections::BTreeMap<String, bool> = joined_to
            .iter()
            .map(|(r, j)| ((*r).to_owned(), *j))
            .collect();
        Some(replayed(rv, keys, pdus).and_then(|(_, room)| {
            room.restricted_join_for(user_id, server_name, &joined_to)
                .map(|d| {
                    room::restricted_join_json(&d)
                        .to_canonical_string()
                        .into_bytes()
                })
                .map_err(|e| e.code().to_owned())
        }))
    }

    fn membership_from_template(
        &self,
        seed: &str,
        version: &str,
        answer: &[u8],
        request: &[u8],
    ) -> Option<Outcome> {
        let run = || -> Outcome {
            let key =
                SigningKey::from_seed_base64(version, seed).map_err(|e| e.code().to_owned())?;
            let answer = canonical::parse_object(answer, &ParseOptions::LEGACY)
                .map_err(|e| e.code().to_owned())?;
            let req: serde_json::Value = serde_json::from_slice(request).unwrap();
            let text = |k: &str| req[k].as_str().unwrap_or_default().to_owned();
            let content = req.get("content").map(|c| {
                canonical::parse_object(c.to_string().as_bytes(), &ParseOptions::LEGACY).unwrap()
            });
            let local = req["event_id_localpart"].as_str();
            let (room_id, user_id, membership, origin) = (
                text("room_id"),
                text("user_id"),
                text("membership"),
                text("origin"),
            );
            let r = event::MembershipRequest {
                room_id: &room_id,
                user_id: &user_id,
                membership: &membership,
                origin: &origin,
                content: content.as_ref(),
                now: Timestamp(req["now_ms"].as_u64().unwrap_or_default()),
                event_id_localpart: local,
            };
            let (built, v) = event::membership_from_template(&answer, &r, &key)
                .map_err(|e| e.code().to_owned())?;
            Ok(event::membership_json(built, v)
                .to_canonical_string()
                .into_bytes())
        };
        Some(run())
    }
}

/// A room made of PDUs (JSONL) received in causal order, with the verdicts.
fn replayed(rv: &str, keys: &[Vec<u8>], pdus: &[u8]) -> Result<(Vec<Object>, room::Room), String> {
    let v = RoomVersion::get(rv).map_err(|e| e.code().to_owned())?;
    let ring = key_ring(keys)?;
    let lines: Vec<&[u8]> = pdus
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut room = room::Room::new(v);
    let verdicts = room.receive_pdus(&lines, &ring);
    Ok((verdicts, room))
}
