// The edge worker's own code (worker/src/index.js) in Node, with fetch() stubbed: the
// configurations and peers that worker.test.mjs, which runs one dev-mode worker in workerd
// against loopback servers, cannot set up (a production worker resolving peers' names, other
// bindings). Every stubbed answer is immediate, so nothing here waits on the network.
// Usage: node --test tests/worker-logic.test.mjs   (MXFED_WASM_PKG: the package dir, default ../pkg)
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, symlinkSync, copyFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';

const pkgDir = process.env.MXFED_WASM_PKG ?? fileURLToPath(new URL('../pkg/', import.meta.url));
const m = await import(pathToFileURL(path.join(pkgDir, 'node.js')).href);

// index.js imports 'mxfed-wasm': a copy of it next to a node_modules that links the package.
const dir = mkdtempSync(path.join(tmpdir(), 'mxfed-worker-logic-'));
mkdirSync(path.join(dir, 'node_modules'));
symlinkSync(path.resolve(pkgDir), path.join(dir, 'node_modules', 'mxfed-wasm'), 'dir');
copyFileSync(fileURLToPath(new URL('../worker/src/index.js', import.meta.url)), path.join(dir, 'index.js'));
const worker = (await import(pathToFileURL(path.join(dir, 'index.js')).href)).default;
after(() => rmSync(dir, { recursive: true, force: true }));

const EDGE = 'edge.test';
const EDGE_KEY = 'ed25519 e1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1\n';
const PEER_KEY = 'ed25519 p1 nJ8f0Kp7Vtq8Qm2l5Wc3YxZa1Bb2Cc3Dd4Ee5Ff6Gg7\n';
const ORIGIN = 'https://origin.internal';
const env = (extra = {}) => ({ SERVER_NAME: EDGE, SIGNING_KEY: EDGE_KEY, ORIGIN, ...extra });

// fetch() stubbed: `routes` maps a URL prefix to a function giving the Response; anything else
// is a network error. Every call is recorded.
let calls = [];
function stubFetch(routes) {
  calls = [];
  globalThis.fetch = async (input, init = {}) => {
    const req = new Request(input, init);
    calls.push(req);
    for (const [prefix, answer] of Object.entries(routes)) {
      if (req.url.startsWith(prefix)) return answer(req);
    }
    throw new TypeError(`fetch failed: ${req.url}`);
  };
}
const jsonResponse = (status, body) => new Response(typeof body === 'string' ? body : JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

function signedRequest(method, uri, { from, key = PEER_KEY, content, headers = {} } = {}) {
  const text = content === undefined ? undefined : JSON.stringify(content);
  const h = new Headers(headers);
  for (const a of m.signRequest({ method, uri, origin: from, destination: EDGE, content: text }, key)) h.append('authorization', a);
  return new Request(`https://${EDGE}${uri}`, { method, headers: h, body: text });
}

test('an IP-literal peer without a port has its keys fetched on port 8448, not 443', async () => {
  for (const [server, keyBase] of [['192.0.2.7', 'https://192.0.2.7:8448/'], ['[2001:db8::7]', 'https://[2001:db8::7]:8448/']]) {
    stubFetch({
      [keyBase]: () => jsonResponse(200, m.serverKeys(server, PEER_KEY, Date.now() + 86_400_000)),
      [ORIGIN]: () => jsonResponse(200, {}),
    });
    const r = await worker.fetch(signedRequest('GET', '/_matrix/federation/v1/query/profile?u=1', { from: server }), env());
    assert.equal(r.status, 200, `${server}: ${await r.text()} after fetching ${calls.map((c) => c.url)}`);
    assert.ok(calls.some((c) => c.url === `${keyBase}_matrix/key/v2/server`), calls.map((c) => c.url).join(' '));
  }
});

test('a peer name without a port is looked up through its well-known delegation, else port 8448', async () => {
  for (const [server, wellKnown, keyBase] of [
    ['peer.test', { 'm.server': 'keys.peer.test:8443' }, 'https://keys.peer.test:8443/'],
    ['plain.test', null, 'https://plain.test:8448/'],
  ]) {
    stubFetch({
      [`https://${server}/.well-known/matrix/server`]: () => (wellKnown ? jsonResponse(200, wellKnown) : jsonResponse(404, {})),
      [keyBase]: () => jsonResponse(200, m.serverKeys(server, PEER_KEY, Date.now() + 86_400_000)),
      [ORIGIN]: () => jsonResponse(200, {}),
    });
    const r = await worker.fetch(signedRequest('GET', '/_matrix/federation/v1/query/profile?u=2', { from: server }), env());
    assert.equal(r.status, 200, `${server}: ${await r.text()} after fetching ${calls.map((c) => c.url)}`);
  }
});

test('a room ID named like a built-in property gets the default room version, not the built-in', async () => {
  const peer = 'peer.test:8448';
  for (const room of ['constructor', '__proto__', 'toString']) {
    stubFetch({
      [`https://${peer}/`]: () => jsonResponse(200, m.serverKeys(peer, PEER_KEY, Date.now() + 86_400_000)),
      [ORIGIN]: () => jsonResponse(200, { pdus: {} }),
    });
    const pdu = { room_id: room, type: 'm.room.message', sender: `@u:${peer}`, content: {}, depth: 1, prev_events: [], auth_events: [], origin_server_ts: 1 };
    const r = await worker.fetch(
      signedRequest('PUT', `/_matrix/federation/v1/send/t-${encodeURIComponent(room)}`, { from: peer, content: { origin: peer, origin_server_ts: 1, pdus: [pdu] } }),
      env({ DEFAULT_ROOM_VERSION: '10' }),
    );
    const edge = r.headers.get('x-mxfed-edge') ?? '';
    assert.equal(r.status, 200, `${room}: ${await r.text()}`);
    // Checked as a room version 10 PDU (and refused: it is not signed), not passed on unchecked
    // under a version made of Object's property.
    assert.match(edge, /unchecked=0/, `${room}: ${edge}`);
    assert.match(edge, /rejected=1/, `${room}: ${edge}`);
  }
});

test('a request URI ending in a bare ? is verified and forwarded with it, as signed', async () => {
  const peer = 'peer.test:8448';
  stubFetch({
    [`https://${peer}/`]: () => jsonResponse(200, m.serverKeys(peer, PEER_KEY, Date.now() + 86_400_000)),
    [ORIGIN]: () => jsonResponse(200, {}),
  });
  const r = await worker.fetch(signedRequest('GET', '/_matrix/federation/v1/query/profile?', { from: peer }), env());
  assert.equal(r.status, 200, await r.text());
  assert.ok(calls.some((c) => c.url === `${ORIGIN}/_matrix/federation/v1/query/profile?`), calls.map((c) => c.url).join(' '));
});
