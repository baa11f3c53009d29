// The JS host of the conformance runner (tests/src/process_host.rs): reads one
// {"op", "args"} request per line on stdin and answers {"ok": text} | {"err": code} |
// {"unsupported": true}, calling only the public API of the mxfed-wasm package.
// Usage: node host_adapter.mjs [PKG_DIR]   (default: ../pkg next to this file)
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import path from 'node:path';

const pkgDir = process.argv[2] ?? new URL('../pkg/', import.meta.url).pathname;
const m = await import(pathToFileURL(path.join(pkgDir, 'node.js')).href);

const enc = new TextEncoder();
// Byte inputs go in as Uint8Array (strings and objects are covered by the unit tests).
const b = (s) => enc.encode(s);
const key = (seed, version) => `ed25519 ${version} ${seed}`;

const ops = {
  canonical_json: (a) => m.canonicalJson(b(a.input)),
  sign_json: (a) => m.signJson(b(a.input), a.server, key(a.seed, a.version)),
  verify_json: (a) => (m.verifyJson(b(a.input), a.server, { [a.key_id]: a.public_key }), ''),
  public_key: (a) => m.publicKeys(key(a.seed, '1'))['ed25519:1'],
  content_hash: (a) => m.contentHash(b(a.event), a.room_version),
  reference_hash: (a) => m.referenceHash(b(a.event), a.room_version),
  event_id: (a) => m.eventId(b(a.event), a.room_version),
  room_id: (a) => m.roomId(b(a.event), a.room_version),
  redact: (a) => m.redact(b(a.event), a.room_version),
  hash_and_sign_event: (a) => m.hashAndSignEvent(b(a.event), a.room_version, a.server, key(a.seed, a.version)),
  check_pdus: (a) => {
    const pdus = a.pdus.split('\n').filter((l) => l.length > 0).map(b);
    const verdicts = m.checkPdus(pdus, a.room_version, a.keys.map(b));
    // Back to the CLI's bytes: canonical JSON of each verdict object, one per line.
    return verdicts.map((v) => m.canonicalJson(v) + '\n').join('');
  },
  sign_request: (a) =>
    m.signRequest(
      { method: a.method, uri: a.uri, origin: a.origin, destination: a.destination, content: a.content ?? undefined },
      key(a.seed, a.version),
    ).join('\n'),
  verify_request: (a) =>
    m.verifyRequest(
      { method: a.method, uri: a.uri, destination: a.destination, content: a.content === null ? undefined : b(a.content), authorization: a.headers },
      a.keys,
      a.now_ms,
    ).origin,
  base64_encode: (a) => m.encodeBase64(b(a.input)),
  server_keys: (a) => m.serverKeys(a.server, key(a.seed, a.version), a.valid_until_ts),
  server_acl_allows: (a) => String(m.serverAclAllows(b(a.content), a.server_name)),
  discovery_plan: (a) => m.canonicalJson(m.discoveryPlan(a.server_name, a.well_known === null ? undefined : b(a.well_known))),
  server_may_see: (a) => {
    const maySee = m.serverMaySee(a.visibility, a.memberships);
    // The visibility as understood, as the CLI prints it.
    const understood = ['world_readable', 'invited', 'joined'].includes(a.visibility) ? a.visibility : 'shared';
    return m.canonicalJson({ history_visibility: understood, may_see: maySee });
  },
  room_replay: (a) => {
    const { verdicts, state } = m.replay(a.pdus.split('\n').filter((l) => l.length > 0).map(b), a.room_version, a.keys.map(b));
    return [...verdicts.map((v) => m.canonicalJson(v)), m.canonicalJson({ state })].join('\n');
  },
  restricted_join: (a) => {
    const room = new m.Room(a.room_version);
    try {
      room.receiveAll(a.pdus.split('\n').filter((l) => l.length > 0).map(b), a.keys.map(b));
      return m.canonicalJson({ via: room.restrictedJoin(a.user_id, a.server_name, a.joined_to) });
    } finally {
      room.free();
    }
  },
  membership_from_template: (a) => {
    const r = a.request;
    const out = m.membershipFromTemplate(
      b(a.answer),
      {
        roomId: r.room_id, userId: r.user_id, membership: r.membership, origin: r.origin,
        content: r.content, now: r.now_ms, eventIdLocalpart: r.event_id_localpart,
      },
      key(a.seed, a.version),
    );
    // Back to the CLI's bytes; the event text is canonical already and goes in as it is.
    return `{"event":${out.event},"event_id":${JSON.stringify(out.eventId)},"room_version":${JSON.stringify(out.roomVersion)}}`;
  },
  is_canonical_json: (a) => String(m.isCanonicalJson(Uint8Array.from(Buffer.from(a.input_hex, 'hex')))),
  srv_targets: (a) => m.canonicalJson(m.srvTargets(b(a.records))),
  well_known_lifetime: (a) => String(m.wellKnownLifetime(a.cache_control, a.expires, a.now_ms)),
  pick_srv: (a) => {
    const t = m.pickSrv(b(a.records));
    return t === null ? 'null' : m.canonicalJson(t);
  },
};

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
  if (!line.trim()) continue;
  const { op, args } = JSON.parse(line);
  const f = ops[op];
  if (!f) {
    out({ unsupported: true });
    continue;
  }
  try {
    out({ ok: f(args) });
  } catch (e) {
    out({ err: typeof e?.code === 'string' ? e.code : `js_error: ${e?.message ?? e}` });
  }
}
