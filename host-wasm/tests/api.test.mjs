// Unit tests of the JS API of mxfed-wasm in Node (node:test). The vectors corpus runs through
// the same API in tests/tests/host_wasm.rs; these cover what is particular to JavaScript:
// input kinds, errors with .code, and key order beyond the BMP.
// Usage: node --test tests/api.test.mjs   (MXFED_WASM_PKG: the package dir, default ../pkg)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, symlinkSync, writeFileSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';

const pkgDir = process.env.MXFED_WASM_PKG ?? fileURLToPath(new URL('../pkg/', import.meta.url));
const m = await import(pathToFileURL(path.join(pkgDir, 'node.js')).href);

const SEED = 'YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1';
const KEY = `ed25519 1 ${SEED}`;
const PUBLIC = 'XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI';

function throwsCode(f, code, extra = {}) {
  assert.throws(f, (e) => {
    assert.ok(m.isMxfedError(e), `not an MxfedError: ${e}`);
    assert.ok(e instanceof Error);
    assert.equal(e.code, code);
    for (const [k, v] of Object.entries(extra)) assert.equal(e[k], v, k);
    return true;
  });
}

test('membershipFromTemplate completes a make_join template into our signed join', () => {
  const template = {
    type: 'm.room.member',
    room_id: '!r:res.example',
    sender: '@u:domain',
    state_key: '@u:domain',
    content: { membership: 'join' },
    prev_events: ['$prev'],
    auth_events: ['$create'],
    depth: 5,
    origin: 'res.example',
    origin_server_ts: 1,
  };
  const request = { roomId: '!r:res.example', userId: '@u:domain', membership: 'join', origin: 'domain', now: 5000, content: { displayname: 'U' } };
  const { eventId, roomVersion, event } = m.membershipFromTemplate({ room_version: '10', event: template }, request, KEY);
  assert.equal(roomVersion, '10');
  assert.equal(m.canonicalJson(event), event);
  const ev = JSON.parse(event);
  assert.equal(eventId, m.eventId(event, '10'));
  assert.equal(ev.origin, 'domain');
  assert.equal(ev.origin_server_ts, 5000);
  assert.deepEqual(ev.content, { displayname: 'U', membership: 'join' });
  assert.deepEqual(ev.prev_events, ['$prev']);
  const keys = [m.serverKeys('domain', KEY, 2 ** 40)];
  assert.equal(m.checkPdus([event], '10', keys)[0].verdict, 'accepted');
  // Room version 1: the event ID's local part is drawn here unless given.
  const v1 = { event: { ...template, prev_events: [], auth_events: [] } };
  const drawn = m.membershipFromTemplate(v1, request, KEY);
  assert.equal(drawn.roomVersion, '1');
  assert.match(drawn.eventId, /^\$[A-Za-z0-9]{18}:domain$/);
  assert.equal(m.membershipFromTemplate(v1, { ...request, eventIdLocalpart: 'abc' }, KEY).eventId, '$abc:domain');
  // Not the event asked for: an MxfedError with the core's code.
  throwsCode(() => m.membershipFromTemplate({ room_version: '10', event: { ...template, sender: '@x:domain' } }, request, KEY), 'template_not_asked');
  throwsCode(() => m.membershipFromTemplate({ room_version: '10' }, request, KEY), 'template_no_event');
  throwsCode(() => m.membershipFromTemplate('{', request, KEY), 'json_syntax');
});

test('canonical JSON sorts keys by code point, not UTF-16 unit', () => {
  // U+1F600 is D83D DE00 in UTF-16, which sorts before U+FF61; by code point it is after.
  const obj = { '\u{1F600}': 1, '\uFF61': 2, a: 3 };
  const want = '{"a":3,"\uFF61":2,"\u{1F600}":1}';
  assert.equal(m.canonicalJson(obj), want);
  assert.equal(m.canonicalJson(JSON.stringify(obj)), want);
  // What sorting in JS would have given, for contrast.
  const jsSorted = JSON.stringify(Object.fromEntries(Object.entries(obj).sort(([x], [y]) => (x < y ? -1 : 1))));
  assert.notEqual(jsSorted, want);
});

test('every JSON input kind gives the same bytes', () => {
  const text = '{"b": [1e2, -0], "a": "\u00e9"}';
  const bytes = new TextEncoder().encode(text);
  const padded = new Uint8Array(bytes.length + 4);
  padded.set(bytes, 2);
  const want = '{"a":"\u00e9","b":[100,0]}';
  for (const input of [text, bytes, bytes.buffer, new DataView(padded.buffer, 2, bytes.length), padded.subarray(2, 2 + bytes.length), JSON.parse(text)]) {
    assert.equal(m.canonicalJson(input), want);
  }
});

test('errors are MxfedError with the core codes', () => {
  throwsCode(() => m.canonicalJson('{"a":1.5}'), 'json_not_integer');
  throwsCode(() => m.canonicalJson('{"a":1,"a":2}'), 'json_duplicate_key');
  throwsCode(() => m.canonicalJson('"\\ud800"'), 'json_lone_surrogate');
  throwsCode(() => m.eventId({}, '99'), 'unsupported_room_version');
  throwsCode(() => m.signJson({}, 'bad name!', KEY), 'bad_server_name');
  throwsCode(() => m.loadSigningKeys('not a key'), 'unsupported_algorithm');
  throwsCode(() => m.canonicalJson(42), 'bad_argument');
  throwsCode(() => m.verifyRequest({ method: 'GET', uri: '/', destination: 'd.example' }, []), 'xmatrix_missing', {
    status: 401,
    errcode: 'M_UNAUTHORIZED',
  });
  throwsCode(() => m.parseTransaction('[1]'), 'txn_not_object', { status: 400, errcode: 'M_BAD_JSON' });
});

test('signing keys from Synapse text, loaded once or per call', () => {
  assert.deepEqual(m.publicKeys(KEY), { 'ed25519:1': PUBLIC });
  const k = m.loadSigningKeys(`${KEY}\n`);
  try {
    assert.deepEqual(k.keyIds(), ['ed25519:1']);
    assert.equal(m.signJson({ a: 1 }, 'domain', k), m.signJson('{"a":1}', 'domain', KEY));
  } finally {
    k.free();
  }
  const line = m.generateSigningKey();
  assert.match(line, /^ed25519 a_[A-Za-z0-9]{4} [A-Za-z0-9+/]{43}\n?$/);
  assert.equal(Object.keys(m.publicKeys(line)).length, 1);
});

test('sign, verify and tamper', () => {
  const signed = m.signJson({ one: 1, two: 'Two' }, 'domain', KEY);
  assert.equal(
    signed,
    '{"one":1,"signatures":{"domain":{"ed25519:1":"KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"}},"two":"Two"}',
  );
  assert.deepEqual(m.verifyJson(signed, 'domain', { 'ed25519:1': PUBLIC }), ['ed25519:1']);
  throwsCode(() => m.verifyJson(signed.replace('"Two"', '"Three"'), 'domain', { 'ed25519:1': PUBLIC }), 'signature_invalid');
});

test('events: hash, sign, id, redact, batch check', () => {
  const ev = {
    type: 'm.room.message',
    room_id: '!r:domain',
    sender: '@u:domain',
    content: { body: 'hi \u{1F600}' },
    origin_server_ts: 1000000,
    depth: 3,
    prev_events: [],
    auth_events: [],
  };
  const signed = m.hashAndSignEvent(ev, '10', 'domain', KEY);
  const id = m.eventId(signed, '10');
  assert.match(id, /^\$[A-Za-z0-9_-]{43}$/);
  assert.equal(m.eventId(m.redact(signed, 10), 10), id);
  assert.equal(JSON.parse(signed).hashes.sha256, m.contentHash(signed, '10'));
  assert.equal(m.referenceHash(signed, '10').length, 43);
  const keys = [m.serverKeys('domain', KEY, 2 ** 40)];
  const tamperedContent = JSON.stringify({ ...JSON.parse(signed), content: { body: 'bye' } });
  const tamperedSig = signed.replace(/"ed25519:1":"./, '"ed25519:1":"A');
  const verdicts = m.checkPdus([signed, new TextEncoder().encode(tamperedContent), tamperedSig, '{"nope":'], '10', keys);
  assert.deepEqual(
    verdicts.map((v) => v.verdict),
    ['accepted', 'redacted', 'rejected', 'rejected'],
  );
  assert.equal(verdicts[0].event_id, id);
  assert.deepEqual(verdicts[0].signatures, { domain: { 'ed25519:1': 'ok' } });
  assert.equal(verdicts[1].content_hash, 'mismatch');
  assert.equal(verdicts[2].reason, 'signature_invalid');
  assert.equal(verdicts[3].reason, 'json_syntax');
  // The same with a KeyRing built once, and with a KeyCache.
  const ring = new m.KeyRing();
  ring.add(new TextEncoder().encode(keys[0]));
  assert.deepEqual(m.checkPdus([signed], 10, ring), [verdicts[0]]);
  const cache = new m.KeyCache();
  assert.equal(cache.insert(new TextEncoder().encode(keys[0]), 'domain', 0), 'domain');
  assert.deepEqual(m.checkPdus([signed], 10, cache), [verdicts[0]]);
  ring.free();
  cache.free();
  throwsCode(() => m.checkPdus([signed], '10', ['{}']), 'keys_bad_field');
});

test('request signing and verification', () => {
  const keys = [m.serverKeys('origin.example', KEY, 2 ** 42)];
  const req = { method: 'PUT', uri: '/_matrix/federation/v1/send/1?x=%2F', origin: 'origin.example', destination: 'dest.example', content: { pdus: [], n: 1 } };
  const headers = m.signRequest(req, KEY);
  assert.equal(headers.length, 1);
  assert.match(headers[0], /^X-Matrix origin="origin.example",destination="dest.example",key="ed25519:1",sig="/);
  const ok = m.verifyRequest({ ...req, authorization: headers }, keys, 1000);
  assert.deepEqual(ok, { origin: 'origin.example', verified: ['ed25519:1'] });
  throwsCode(() => m.verifyRequest({ ...req, content: { pdus: [], n: 2 }, authorization: headers[0] }, keys, 1000), 'xmatrix_bad_signature', {
    status: 401,
  });
  throwsCode(() => m.verifyRequest({ ...req, destination: 'other.example', authorization: headers }, keys, 1000), 'xmatrix_wrong_destination');
  throwsCode(() => m.verifyRequest({ ...req, authorization: headers }, keys, 2 ** 43), 'xmatrix_key_expired');
  throwsCode(() => m.verifyRequest({ ...req, authorization: 'X-Matrix origin="unterminated' }, keys, 1000), 'xmatrix_malformed', { status: 400 });
  // The body as bytes, canonical (checked as received) or not (encoded again): both verify.
  const enc = new TextEncoder();
  for (const content of [enc.encode('{"n":1,"pdus":[]}'), enc.encode('{ "pdus": [], "n": 1 }')]) {
    assert.deepEqual(m.verifyRequest({ ...req, content, authorization: headers }, keys, 1000).origin, 'origin.example');
  }
});

test('isCanonicalJson: bytes only, false for anything the encoder would write differently', () => {
  const enc = new TextEncoder();
  assert.equal(m.isCanonicalJson(enc.encode(m.canonicalJson({ b: 1, a: ['\u{1F600}', '\n'] }))), true);
  for (const text of ['{"a": 1}', '{"b":1,"a":2}', '["\\u00e9"]', '-0', '1.0', '{']) {
    assert.equal(m.isCanonicalJson(enc.encode(text)), false, text);
  }
  assert.equal(m.isCanonicalJson(new Uint8Array([0x5b, 0x22, 0xff, 0x22, 0x5d])), false);
  assert.equal(m.isCanonicalJson(enc.encode('[1]').buffer), true);
  throwsCode(() => m.isCanonicalJson('{}'), 'bad_argument');
});

test('transactions parse through the core', () => {
  const tx = m.parseTransaction({ origin: 'a.example', origin_server_ts: 5, pdus: [7, { room_id: '!r:a.example', x: 1 }], edus: [] });
  assert.equal(tx.origin, 'a.example');
  assert.equal(tx.pdus.length, 1);
  assert.deepEqual(tx.rejected.map((r) => [r.item, r.code]), [['/pdus/0', 'txn_pdu_not_object']]);
  throwsCode(() => m.parseTransaction({ origin_server_ts: 5 }), 'txn_missing_field');
});

test('base64', () => {
  assert.equal(m.encodeBase64('hello'), 'aGVsbG8');
  assert.deepEqual(m.decodeBase64('aGVsbG8'), new TextEncoder().encode('hello'));
});

test('the package resolves by name with the node condition; workers get the workerd entry', () => {
  const pkg = JSON.parse(readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
  assert.equal(pkg.name, 'mxfed-wasm');
  assert.equal(pkg.exports['.'].workerd, './workerd.js');
  assert.equal(pkg.exports['.'].node, './node.js');
  assert.equal(pkg.exports['.'].types, './index.d.ts');
  const dir = mkdtempSync(path.join(tmpdir(), 'mxfed-wasm-'));
  try {
    mkdirSync(path.join(dir, 'node_modules'));
    symlinkSync(path.resolve(pkgDir), path.join(dir, 'node_modules', 'mxfed-wasm'), 'dir');
    writeFileSync(path.join(dir, 'probe.mjs'), "import { canonicalJson } from 'mxfed-wasm';\nprocess.stdout.write(canonicalJson({b:1,a:2}));\n");
    assert.equal(execFileSync(process.execPath, [path.join(dir, 'probe.mjs')], { encoding: 'utf8' }), '{"a":2,"b":1}');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('server ACLs: objects, text and bytes; errors with .code', () => {
  const acl = { allow: ['*'], deny: ['*.evil.example', 'evil.example'], allow_ip_literals: false };
  assert.equal(m.serverAclAllows(acl, 'matrix.org:8448'), true);
  assert.equal(m.serverAclAllows(JSON.stringify(acl), 'Sub.EVIL.example'), false);
  assert.equal(m.serverAclAllows(new TextEncoder().encode(JSON.stringify(acl)), '[::1]:8448'), false);
  assert.equal(m.serverAclAllows({}, 'matrix.org'), false);
  throwsCode(() => m.serverAclAllows('{"allow":', 'matrix.org'), 'json_syntax');
  throwsCode(() => m.serverAclAllows(acl, 'bad name'), 'bad_server_name');
  throwsCode(() => m.serverAclAllows(acl, 5), 'bad_argument');
});

test('discovery: first step, after the well-known (null: failed fetch), SRV choice', () => {
  assert.deepEqual(m.discoveryPlan('example.org'), { action: 'well_known', url: 'https://example.org/.well-known/matrix/server' });
  assert.deepEqual(m.discoveryPlan('[::1]:8449'), { action: 'connect', host: '::1', port: 8449 });
  assert.deepEqual(m.discoveryPlan('example.org', { 'm.server': 'm.example.org:443' }), { action: 'connect', host: 'm.example.org', port: 443 });
  const srv = { action: 'srv', host: 'example.org', srv_names: ['_matrix-fed._tcp.example.org', '_matrix._tcp.example.org'] };
  assert.deepEqual(m.discoveryPlan('example.org', null), srv);
  assert.deepEqual(m.discoveryPlan('example.org', ''), srv);
  throwsCode(() => m.discoveryPlan('bad name'), 'bad_server_name');
  const records = [
    { priority: 10, weight: 0, port: 8443, target: 'a.example.org.' },
    { priority: 5, weight: 0, port: 443, target: 'b.example.org.' },
  ];
  assert.deepEqual(m.pickSrv(records), { host: 'b.example.org', port: 443 });
  assert.equal(m.pickSrv([]), null);
  throwsCode(() => m.pickSrv({}), 'bad_srv_records');
  throwsCode(() => m.pickSrv([{ port: 1 }]), 'bad_srv_record');
  assert.deepEqual(m.srvTargets(records), { action: 'connect', targets: [{ host: 'b.example.org', port: 443 }, { host: 'a.example.org', port: 8443 }] });
  assert.deepEqual(m.srvTargets([{ priority: 0, weight: 0, port: 0, target: '.' }]), { action: 'unavailable' });
  assert.deepEqual(m.srvTargets([]), { action: 'next' });
  throwsCode(() => m.srvTargets({}), 'bad_srv_records');
  const now = 784111777000; // Sun, 06 Nov 1994 08:49:37 GMT
  assert.equal(m.wellKnownLifetime(undefined, undefined, now), 86400000);
  assert.equal(m.wellKnownLifetime('max-age=3600', null, now), 3600000);
  assert.equal(m.wellKnownLifetime(null, 'Sun, 06 Nov 1994 11:49:37 GMT', now), 10800000);
  assert.equal(m.wellKnownLifetime('no-store'), 300000);
  throwsCode(() => m.wellKnownLifetime(3600), 'bad_argument');
});

test('history visibility: every vector row, iterables; non-strings are bad_argument', () => {
  const { cases } = JSON.parse(readFileSync(new URL('../../tests/vectors/history_visibility.json', import.meta.url), 'utf8'));
  assert.ok(cases.length >= 30);
  for (const v of cases) {
    assert.equal(m.serverMaySee(v.visibility, v.memberships), v.expected.may_see, v.name);
    assert.equal(m.serverMaySee(v.visibility, new Set(v.memberships)), v.expected.may_see, v.name);
  }
  assert.equal(m.serverMaySee(undefined, []), true);
  assert.equal(m.serverMaySee('joined', (function* () { yield 'leave'; yield 'join'; })()), true);
  throwsCode(() => m.serverMaySee('joined', [1]), 'bad_argument');
  throwsCode(() => m.serverMaySee('joined', ['join', null]), 'bad_argument');
  throwsCode(() => m.serverMaySee('joined', 'join'), 'bad_argument');
  throwsCode(() => m.serverMaySee('joined', null), 'bad_argument');
  throwsCode(() => m.serverMaySee('joined', { 0: 'join', length: 1 }), 'bad_argument');
  throwsCode(() => m.serverMaySee(5, []), 'bad_argument');
});

test('replay and Room reach Synapse\'s verdicts, state and the restricted-join rows', () => {
  const vectors = new URL('../../tests/vectors/', import.meta.url);
  const room = JSON.parse(readFileSync(new URL('room.json', vectors), 'utf8'));
  const dir = new URL(room.replay.dir + '/', vectors);
  const keys = room.replay.keys.map((k) => readFileSync(new URL(k, dir)));
  const states = JSON.parse(readFileSync(new URL('current_state.json', dir), 'utf8'));
  const skip = new Set(room.replay.not_compared.cases.map((c) => c.case));
  const skipState = (rv, row) => room.replay.not_compared.state.some(
    (d) => d.type === row.type && d.state_key === row.state_key && d.room_versions.includes(rv));
  const lines = (file) => readFileSync(new URL(file, dir), 'utf8').split('\n').filter((l) => l).map((l) => JSON.parse(l));
  const ring = new m.KeyRing();
  for (const k of keys) ring.add(k);
  const built = new Map();
  for (const r of room.replay.rooms.filter((r) => ['v10.jsonl', 'v12.jsonl', 'v8_side.jsonl'].includes(r.file))) {
    const ls = lines(r.file);
    // Objects, in reverse arrival order: the replay orders causally.
    const { verdicts, state } = m.replay(ls.map((l) => l.pdu).reverse(), r.room_version, keys);
    assert.equal(verdicts.length, ls.length);
    const byId = new Map(verdicts.filter((v) => v.event_id !== null).map((v) => [v.event_id, v.verdict]));
    const anonymous = verdicts.filter((v) => v.event_id === null).map((v) => v.verdict);
    for (const l of ls) {
      const got = byId.get(l.event_id) ?? anonymous.shift();
      if (!skip.has(l.case)) assert.equal(got, room.replay.verdicts[l.synapse.verdict], `${r.file} ${l.case}`);
    }
    const want = states[r.room_id].filter((row) => !skipState(r.room_version, row))
      .sort((a, b) => (a.type + '\0' + a.state_key < b.type + '\0' + b.state_key ? -1 : 1));
    assert.deepEqual(state.filter((row) => !skipState(r.room_version, row)), want, r.file);
    // The same through a Room, as JSON text.
    const rm = new m.Room(r.room_version);
    assert.equal(rm.roomVersion, r.room_version);
    assert.equal(rm.receiveAll(ls.map((l) => JSON.stringify(l.pdu)), ring).length, ls.length);
    assert.deepEqual(rm.currentState(), state);
    // check gives what receive gives (here: events the room has), and changes nothing.
    const extremities = rm.forwardExtremities();
    for (const l of ls.slice(0, 20)) {
      const checked = rm.check(l.pdu, ring);
      assert.deepEqual(rm.forwardExtremities(), extremities);
      assert.deepEqual(checked, rm.receive(l.pdu, ring), `${r.file} ${l.case}`);
    }
    assert.deepEqual(rm.currentState(), state);
    assert.ok(rm.has(ls[0].event_id));
    assert.equal(rm.has('$unknown'), false);
    assert.equal(rm.stateAfter('$unknown'), null);
    assert.ok(rm.forwardExtremities().length >= 1);
    built.set(r.file, rm);
  }
  for (const v of room.restricted_join.filter((v) => built.has(v.room))) {
    const rm = built.get(v.room);
    if (v.error) {
      throwsCode(() => rm.restrictedJoin(v.user_id, v.server_name, v.joined_to), v.error);
    } else {
      assert.equal(rm.restrictedJoin(v.user_id, v.server_name, v.joined_to), v.expected.via, v.name);
      assert.equal(rm.restrictedJoin(v.user_id, v.server_name, new Map(Object.entries(v.joined_to))), v.expected.via, v.name);
    }
  }
  const v10 = built.get('v10.jsonl');
  throwsCode(() => v10.restrictedJoin('@zed:localhost:8449', 'localhost:8448'), 'restricted_unable_to_authorise');
  throwsCode(() => v10.restrictedJoin('zed', 'localhost:8448', {}), 'bad_user_id');
  throwsCode(() => v10.restrictedJoin('@zed:b', 'bad name', {}), 'bad_server_name');
  throwsCode(() => v10.restrictedJoin('@zed:b', 'a', { '!r:a': 'yes' }), 'bad_argument');
  throwsCode(() => v10.restrictedJoin('@zed:b', 'a', ['!r:a']), 'bad_argument');
  throwsCode(() => v10.restrictedJoin('@zed:b', 'a', null), 'bad_argument');
  throwsCode(() => v10.restrictedJoin(null, 'a', {}), 'bad_argument');
  throwsCode(() => v10.stateAfter(5), 'bad_argument');
  for (const rm of built.values()) rm.free();
  ring.free();
});

test('Room and replay: bad input is an MxfedError or a rejected verdict', () => {
  throwsCode(() => new m.Room('99'), 'unsupported_room_version');
  throwsCode(() => new m.Room(null), 'bad_argument');
  throwsCode(() => m.replay([], '99', []), 'unsupported_room_version');
  throwsCode(() => m.replay('{}', '10', []), 'bad_argument');
  throwsCode(() => m.replay([], '10', 'keys'), 'bad_argument');
  throwsCode(() => m.replay([], '10', ['{']), 'json_syntax');
  const rm = new m.Room(10);
  for (const [pdu, reason] of [['{', 'json_syntax'], [new Uint8Array([0xff]), 'json_syntax'], [{}, 'pdu_missing_field']]) {
    assert.deepEqual(rm.check(pdu, []), m.checkPdus([pdu], '10', [])[0]);
    const v = rm.receive(pdu, []);
    assert.equal(v.verdict, 'rejected');
    assert.equal(v.reason, reason);
    assert.deepEqual(v, m.checkPdus([pdu], '10', [])[0]);
    assert.deepEqual(rm.receiveAll([pdu], []).map((x) => x.reason), [reason]);
  }
  throwsCode(() => rm.receive(5, []), 'bad_argument');
  throwsCode(() => rm.receiveAll('{}', []), 'bad_argument');
  assert.deepEqual(rm.currentState(), []);
  assert.deepEqual(rm.forwardExtremities(), []);
  assert.deepEqual(m.replay([], '10', []), { verdicts: [], state: [] });
  rm.free();
});

// The edge parses a request body before it authenticates it. A body within the byte limit
// (200 x 64 KiB) that is all tiny values (`{},{},…`) once made the wasm heap grow past 400 MB
// (a Worker isolate has 128 MB), for anyone who could reach the edge: such a body is refused
// as too large, 413 M_TOO_LARGE, and the memory stays small.
test('a request body of too many values is refused without growing the heap', async () => {
  const { initSync } = await import(pathToFileURL(path.join(pkgDir, 'mxfed_wasm.js')).href);
  const memory = initSync().memory; // the instance node.js set up
  const limit = 200 * 65536;
  for (const item of ['{}', '0', '{"a":0}', '[]', '""']) {
    const n = Math.floor((limit - 20) / (item.length + 1));
    const body = new TextEncoder().encode(`{"edus":[${`${item},`.repeat(n - 1)}${item}]}`);
    assert.ok(body.length <= limit);
    for (const method of ['PUT', 'POST']) {
      assert.throws(
        () => new m.EdgeRequest(method, '/_matrix/federation/v1/send/t', 'edge.test', null, body),
        (e) => m.isMxfedError(e) && e.code === 'json_too_many_values' && e.status === 413 && e.errcode === 'M_TOO_LARGE',
      );
    }
    assert.ok(memory.buffer.byteLength < 96 * 1048576, `${item}: heap ${memory.buffer.byteLength} bytes`);
  }
  // A transaction of ordinary size and shape still parses.
  const edus = Array.from({ length: 100 }, (_, i) => ({ edu_type: 'm.presence', content: { push: Array.from({ length: 50 }, (_, j) => ({ user_id: `@u${i}_${j}:a.example`, presence: 'online', last_active_ago: j, currently_active: true })) } }));
  const ok = new m.EdgeRequest('PUT', '/_matrix/federation/v1/send/t', 'edge.test', null, new TextEncoder().encode(JSON.stringify({ origin: 'a.example', origin_server_ts: 1, pdus: [], edus })));
  assert.deepEqual(ok.beginTransaction(), []);
  ok.free();
});

// The key and edge classes took their byte arguments straight into wasm-bindgen's glue, which
// copies `arg.length` elements: a string became that many zero bytes (json_syntax for a valid
// key response), an ArrayBuffer or object none at all (an EdgeRequest body silently read as no
// body, so a signature over no content verified), and a number as `authorization` trapped the
// module (RuntimeError, no .code). They take what every other function takes, or throw
// bad_argument.
test('KeyRing, KeyCache and EdgeRequest take strings and byte views, and refuse other types', () => {
  const response = m.serverKeys('a.example', KEY, 1e13);
  const enc = new TextEncoder();
  for (const input of [response, enc.encode(response), enc.encode(response).buffer, JSON.parse(response)]) {
    const ring = new m.KeyRing();
    ring.add(input);
    ring.free();
    const cache = new m.KeyCache();
    assert.equal(cache.insert(input, 'a.example', 1), 'a.example');
    cache.free();
  }
  const content = '{"a":1}';
  const [auth] = m.signRequest({ method: 'PUT', uri: '/_matrix/federation/v1/x', origin: 'a.example', destination: 'b.example' }, KEY);
  const cache = new m.KeyCache();
  cache.insert(response, 'a.example', 1);
  // Signed without content, received with one: refused, whatever the body's JS type.
  for (const body of [content, enc.encode(content), enc.encode(content).buffer, new DataView(enc.encode(content).buffer)]) {
    const req = new m.EdgeRequest('PUT', '/_matrix/federation/v1/x', 'b.example', auth, body);
    throwsCode(() => req.authenticate(cache, 2), 'xmatrix_bad_signature');
    req.free();
  }
  for (const args of [['PUT', '/x', 'b', 5, null], ['PUT', '/x', 'b', null, 5], [1, '/x', 'b', null, null], ['PUT', '/x', {}, null, null]]) {
    throwsCode(() => new m.EdgeRequest(...args), 'bad_argument');
  }
  throwsCode(() => new m.KeyRing().add(5), 'bad_argument');
  throwsCode(() => new m.KeyCache().insert(null, 'a.example', 1), 'bad_argument');
  cache.free();
});

test('the KeyRing a KeyCache gives converts its arguments like the others', () => {
  const cache = new m.KeyCache();
  const ring = cache.keyRing();
  assert.ok(ring instanceof m.KeyRing);
  // A string: the glue's own KeyRing copied it as zero bytes (json_syntax).
  ring.add(m.serverKeys('c.example', KEY, 1e13));
  throwsCode(() => ring.add(5), 'bad_argument');
  ring.free();
  cache.free();
});

// JSON.stringify's own TypeErrors (a BigInt, a cycle) came out of every function taking an
// object as errors without .code.
test('objects JSON cannot hold are bad_argument', () => {
  const cyclic = {};
  cyclic.self = cyclic;
  for (const o of [{ depth: 2n ** 60n }, cyclic]) {
    throwsCode(() => m.canonicalJson(o), 'bad_argument');
    throwsCode(() => m.eventId(o, '10'), 'bad_argument');
  }
});
