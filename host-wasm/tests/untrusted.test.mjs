// Generated untrusted input into every function of the JS API that takes it: random bytes,
// random JSON (as text, bytes and objects) and event-shaped objects with random values, from a
// fixed-seed generator (the same inputs every run). Each call returns or throws an MxfedError
// with a string .code; a panic in the wasm module (a RuntimeError "unreachable", which would
// also leave the instance unusable) or any other exception fails the test.
// Usage: node --test tests/untrusted.test.mjs   (MXFED_WASM_PKG: the package dir, default ../pkg)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';

const pkgDir = process.env.MXFED_WASM_PKG ?? fileURLToPath(new URL('../pkg/', import.meta.url));
const m = await import(pathToFileURL(path.join(pkgDir, 'node.js')).href);

// xorshift64*, as BigInt so every run draws the same numbers.
let state = 0x2545f4914f6cdd1dn;
function below(n) {
  state ^= state >> 12n;
  state ^= (state << 25n) & 0xffffffffffffffffn;
  state ^= state >> 27n;
  const out = (state * 0x2545f4914f6cdd1dn) & 0xffffffffffffffffn;
  return Number(out % BigInt(Math.max(n, 1)));
}
const pick = (xs) => xs[below(xs.length)];

const STRINGS = ['', 'x', '@u:a.example', '$e', '!r:a.example', 'a.example', 'm.room.member', 'join', '\u0000', '\uD800', '\u{1F600}', 'é'];
const EVENT_KEYS = ['type', 'room_id', 'sender', 'state_key', 'content', 'depth', 'prev_events', 'auth_events', 'origin_server_ts', 'hashes', 'signatures', 'unsigned', 'redacts', 'event_id'];

function value(depth = 0) {
  const k = below(depth > 3 ? 7 : 10);
  switch (k) {
    case 0: return null;
    case 1: return below(2) === 0;
    case 2: return below(2000) - 1000;
    case 3: return pick([2 ** 53, -(2 ** 53), 1.5, -0, 1e300, Number.MAX_SAFE_INTEGER]);
    case 4: case 5: return pick(STRINGS);
    case 6: return 'a'.repeat(below(300));
    case 7: return Array.from({ length: below(4) }, () => value(depth + 1));
    default: {
      const o = {};
      for (let i = below(5); i > 0; i--) o[pick([...STRINGS, ...EVENT_KEYS])] = value(depth + 1);
      return o;
    }
  }
}

function event() {
  const o = {};
  for (let i = below(10); i > 0; i--) o[pick(EVENT_KEYS)] = value(1);
  return o;
}

function input() {
  switch (below(6)) {
    case 0: return Uint8Array.from({ length: below(200) }, () => below(256));
    case 1: return JSON.stringify(value());
    case 2: return new TextEncoder().encode(JSON.stringify(event()));
    case 3: return event();
    case 4: {
      const text = JSON.stringify(event());
      return text.slice(0, below(text.length + 1));
    }
    default: return value();
  }
}

function typed(f) {
  try {
    f();
  } catch (e) {
    assert.ok(m.isMxfedError(e), `not an MxfedError: ${e?.stack ?? e}`);
    assert.equal(typeof e.code, 'string');
    assert.ok(e.code.length > 0);
  }
}

const VERSIONS = ['1', '2', '3', '5', '6', '9', '10', '11', '12', '', '99'];

test('events, checks and rooms take any input without a panic', () => {
  for (let i = 0; i < 400; i++) {
    const data = input();
    const v = pick(VERSIONS);
    for (const f of [m.contentHash, m.referenceHash, m.eventId, m.roomId, m.redact]) typed(() => f(data, v));
    typed(() => m.checkPdus([data], v, []));
    typed(() => m.replay([data, data], v, []));
    typed(() => {
      const room = new m.Room(v);
      try {
        room.receive(data, []);
        room.currentState();
      } finally {
        room.free();
      }
    });
  }
});

test('transactions, ACLs, discovery and base64 take any input without a panic', () => {
  for (let i = 0; i < 400; i++) {
    const data = input();
    typed(() => m.parseTransaction(data));
    typed(() => m.serverAclAllows(data, pick(['a.example', '[::1]:8448', '1.2.3.4', 'bad name'])));
    typed(() => m.discoveryPlan('example.org', data));
    typed(() => m.pickSrv(Array.isArray(data) ? data : [data]));
    typed(() => m.decodeBase64(typeof data === 'string' ? data : JSON.stringify(data) ?? ''));
    if (data instanceof Uint8Array) assert.equal(typeof m.isCanonicalJson(data), 'boolean');
  }
});

test('request verification takes any header, URI and body without a panic', () => {
  for (let i = 0; i < 400; i++) {
    const header = pick([JSON.stringify(value()), 'X-Matrix ' + pick(STRINGS), `X-Matrix origin="${pick(STRINGS)}",key="ed25519:${pick(STRINGS)}",sig="${pick(STRINGS)}"`]);
    const req = { method: pick(['PUT', 'GET', '']), uri: pick(STRINGS), origin: pick(STRINGS), destination: 'b.example', content: input(), authorization: below(2) ? header : [header, header] };
    typed(() => m.verifyRequest(req, [], 1000));
  }
  // The module still works after all that.
  assert.equal(m.canonicalJson({ b: 1, a: 2 }), '{"a":2,"b":1}');
});

test('arguments of the wrong type are bad_argument errors, never a bare wasm error', () => {
  const key = 'ed25519 a YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1\n';
  const wrong = [undefined, null, 42, {}, [], true];
  const calls = [];
  for (const w of wrong) {
    calls.push(
      ['signJson', () => m.signJson({ a: 1 }, w, key)],
      ['verifyJson', () => m.verifyJson({ a: 1 }, w, {})],
      ['hashAndSignEvent', () => m.hashAndSignEvent({ type: 'm.x' }, '10', w, key)],
      ['serverKeys', () => m.serverKeys(w, key, 1)],
      ['serverKeys now', () => m.serverKeys('a.example', key, w)],
      ['signRequest', () => m.signRequest({ method: w, uri: '/x', origin: 'a', destination: 'b' }, key)],
      ['signRequest request', () => m.signRequest(w, key)],
      ['verifyRequest', () => m.verifyRequest({ method: 'GET', uri: w, destination: 'b', authorization: 'X' }, [])],
      ['verifyRequest header', () => m.verifyRequest({ method: 'GET', uri: '/x', destination: 'b', authorization: [w] }, [])],
      ['membershipFromTemplate', () => m.membershipFromTemplate({}, { roomId: w, userId: '@u:a', membership: 'join', origin: 'a' }, key)],
      ['decodeBase64', () => m.decodeBase64(w)],
      ['edgeRoute', () => m.edgeRoute(w, '/x')],
      ['wellKnownLifetime', () => m.wellKnownLifetime('max-age=60', null, w === null || w === undefined ? 'soon' : w)],
    );
  }
  for (const [name, call] of calls) {
    let thrown;
    try {
      call();
    } catch (e) {
      thrown = e;
    }
    // `{}` or `[]` may be accepted where any JSON will do; whatever is thrown has a code.
    if (thrown !== undefined) {
      assert.ok(m.isMxfedError(thrown), `${name}: ${thrown}`);
      assert.equal(typeof thrown.code, 'string', name);
    }
  }
  assert.throws(() => m.decodeBase64(42), (e) => e.code === 'bad_argument');
  assert.throws(() => m.wellKnownLifetime(null, 'Sun, 06 Nov 1994 08:49:37 GMT', 'now'), (e) => e.code === 'bad_argument');
  assert.throws(() => m.signRequest(null, key), (e) => e.code === 'bad_argument');
});
