// The edge worker in workerd itself (worker/run-local.sh), in front of a recording origin and
// two key servers, all Node http servers on 127.0.0.1. Requests are genuinely signed with the
// JS API; the tests check what the worker answers and what it forwards.
// Usage: node --test tests/worker.test.mjs   (MXFED_WASM_PKG: the package dir, default ../pkg)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';

const pkgDir = process.env.MXFED_WASM_PKG ?? fileURLToPath(new URL('../pkg/', import.meta.url));
const m = await import(pathToFileURL(path.join(pkgDir, 'node.js')).href);
const runLocal = fileURLToPath(new URL('../worker/run-local.sh', import.meta.url));

const EDGE = 'edge.test';
const REMOTE = 'remote.test';
const THIRD = 'third.test';
const EDGE_KEY = 'ed25519 e1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1\n';
// Two keys: Synapse sends one Authorization header per key, which fetch() joins with ", ".
const REMOTE_KEY = 'ed25519 r1 nJ8f0Kp7Vtq8Qm2l5Wc3YxZa1Bb2Cc3Dd4Ee5Ff6Gg7\ned25519 r2 Hh8Ii9Jj0Kk1Ll2Mm3Nn4Oo5Pp6Qq7Rr8Ss9Tt0Uu1V\n';
const THIRD_KEY = 'ed25519 t1 Ww2Xx3Yy4Zz5Aa6Bb7Cc8Dd9Ee0Ff1Gg2Hh3Ii4Jj5K\n';
const FORGER_KEY = 'ed25519 r1 Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp9Oo8Nn7Mm6L\n';
// A server whose keys only the notary gives (it is not among the dev key servers).
const FAR = 'far.test';
const FAR_KEY = 'ed25519 f1 Pp1Oo2Nn3Mm4Ll5Kk6Jj7Ii8Hh9Gg0Ff1Ee2Dd3Cc4B\n';
const NOTARY = 'notary.test';
const NOTARY_KEY = 'ed25519 n1 Aa9Bb8Cc7Dd6Ee5Ff4Gg3Hh2Ii1Jj0Kk9Ll8Mm7Nn6O\n';
const ROOM = '!room:remote.test';
const UNKNOWN_ROOM = '!elsewhere:remote.test';

const servers = [];
const origin = { requests: [] };
const keyFetches = { [REMOTE]: 0, [THIRD]: 0 };
const notaryQueries = [];
let base;
let worker;
let workDir;

function listen(handler) {
  return new Promise((resolve) => {
    const s = http.createServer(handler);
    s.listen(0, '127.0.0.1', () => {
      servers.push(s);
      resolve(`http://127.0.0.1:${s.address().port}`);
    });
  });
}

function readBody(req) {
  return new Promise((resolve) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
  });
}

function keyServer(name, key) {
  return listen((req, res) => {
    if (req.url === '/_matrix/key/v2/server') {
      keyFetches[name] += 1;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(m.serverKeys(name, key, Date.now() + 86_400_000));
    } else {
      res.writeHead(404).end('{}');
    }
  });
}

async function freePort() {
  const s = http.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

before(async () => {
  workDir = mkdtempSync(path.join(tmpdir(), 'mxfed-edge-test-'));
  const keyFile = path.join(workDir, 'signing.key');
  writeFileSync(keyFile, EDGE_KEY);
  const remoteKeys = await keyServer(REMOTE, REMOTE_KEY);
  const thirdKeys = await keyServer(THIRD, THIRD_KEY);
  // The notary: far.test's own response, countersigned; nothing for anyone else.
  const notaryUrl = await listen(async (req, res) => {
    const body = JSON.parse((await readBody(req)).toString() || '{}');
    notaryQueries.push({ method: req.method, url: req.url, body });
    const keys = [];
    if (req.url === '/_matrix/key/v2/query' && body.server_keys?.[FAR]) {
      keys.push(JSON.parse(m.signJson(m.serverKeys(FAR, FAR_KEY, Date.now() + 86_400_000), NOTARY, NOTARY_KEY)));
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ server_keys: keys }));
  });
  // The recording origin: answers /send with {} for every PDU it got (as a homeserver that
  // accepted them), room versions for the admin API, and echoes anything else.
  const originUrl = await listen(async (req, res) => {
    const body = await readBody(req);
    if (req.url.startsWith('/_synapse/admin/v1/rooms/')) {
      const room = decodeURIComponent(req.url.split('/').pop());
      if (room === ROOM) return res.writeHead(200, { 'content-type': 'application/json' }).end('{"room_version":"10"}');
      return res.writeHead(404, { 'content-type': 'application/json' }).end('{"errcode":"M_NOT_FOUND"}');
    }
    origin.requests.push({ method: req.method, url: req.url, headers: req.headers, body });
    // An origin that goes away in the middle of a request.
    if (req.url.includes('/query/hang-up')) return req.socket.destroy();
    res.writeHead(200, { 'content-type': 'application/json' });
    if (req.url.startsWith('/_matrix/federation/v1/send/')) {
      const pdus = JSON.parse(body.toString()).pdus ?? [];
      const ids = pdus.filter((p) => p.room_id === ROOM).map((p) => m.eventId(p, '10'));
      return res.end(JSON.stringify({ pdus: Object.fromEntries(ids.map((id) => [id, {}])) }));
    }
    res.end(JSON.stringify({ origin: 'recorded', path: req.url }));
  });
  const port = await freePort();
  worker = spawn(
    runLocal,
    [
      '--port', String(port), '--server-name', EDGE, '--signing-key', keyFile, '--origin', originUrl, '--dev',
      '--key-server', `${REMOTE}=${remoteKeys}`, '--key-server', `${THIRD}=${thirdKeys}`,
      '--var', `ROOM_VERSION_URL=${originUrl}/_synapse/admin/v1/rooms/{room_id}`,
      '--var', 'ORIGIN_SHARED_SECRET=s3cret',
      '--var', `KEY_NOTARY=${notaryUrl}`, '--var', `KEY_NOTARY_NAME=${NOTARY}`,
      '--var', `KEY_NOTARY_KEYS=${JSON.stringify(m.publicKeys(NOTARY_KEY))}`,
    ],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      if ((await fetch(`${base}/.well-known/matrix/server`)).ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error('the worker did not start within 30 s');
    await new Promise((r) => setTimeout(r, 100));
  }
});

after(async () => {
  if (worker && worker.exitCode === null) {
    const exited = new Promise((r) => worker.once('exit', r));
    worker.kill('SIGTERM');
    await exited;
  }
  for (const s of servers) s.close();
  rmSync(workDir, { recursive: true, force: true });
});

const enc = new TextEncoder();

async function signed(method, pathAndQuery, content, { key = REMOTE_KEY, from = REMOTE, to = EDGE, body } = {}) {
  const text = content === undefined ? undefined : JSON.stringify(content);
  const auth = m.signRequest({ method, uri: pathAndQuery, origin: from, destination: to, content: text }, key);
  const headers = new Headers();
  for (const h of auth) headers.append('authorization', h);
  if (text !== undefined) headers.set('content-type', 'application/json');
  const r = await fetch(`${base}${pathAndQuery}`, { method, headers, body: body ?? text });
  return { status: r.status, headers: r.headers, json: await r.json() };
}

function event(fields, signer = REMOTE, key = REMOTE_KEY) {
  const ev = {
    type: 'm.room.message',
    room_id: ROOM,
    sender: `@alice:${signer}`,
    content: { body: 'hello' },
    origin_server_ts: Date.now(),
    depth: 5,
    prev_events: [],
    auth_events: [],
    ...fields,
  };
  return JSON.parse(m.hashAndSignEvent(ev, '10', signer, key));
}

const lastForwarded = () => origin.requests.at(-1);

test('well-known and the signed key response', async () => {
  const wk = await (await fetch(`${base}/.well-known/matrix/server`)).json();
  assert.deepEqual(wk, { 'm.server': `${EDGE}:443` });
  const keys = await (await fetch(`${base}/_matrix/key/v2/server`)).text();
  const ring = new m.KeyRing();
  ring.add(enc.encode(keys)); // throws unless self-signed
  ring.free();
  assert.deepEqual(JSON.parse(keys).verify_keys, { 'ed25519:e1': { key: m.publicKeys(EDGE_KEY)['ed25519:e1'] } });
});

test('a genuine request is verified and forwarded with the authenticated origin', async () => {
  const n = origin.requests.length;
  const r = await signed('GET', '/_matrix/federation/v1/event/%24abc?x=1');
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, { origin: 'recorded', path: '/_matrix/federation/v1/event/%24abc?x=1' });
  assert.equal(origin.requests.length, n + 1);
  const fwd = lastForwarded();
  assert.equal(fwd.headers['x-mxfed-edge-origin'], REMOTE);
  assert.equal(fwd.headers['x-mxfed-edge-secret'], 's3cret');
  // Both X-Matrix headers reach the origin.
  assert.match(fwd.headers.authorization, /key="ed25519:r1".*key="ed25519:r2"/);
});

test('keys of a server without a dev mapping come from the notary, asked for the key with a minimum validity', async () => {
  const before = Date.now();
  const r = await signed('GET', '/_matrix/federation/v1/query/far?x=1', undefined, { key: FAR_KEY, from: FAR });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(lastForwarded().headers['x-mxfed-edge-origin'], FAR);
  const q = notaryQueries.find((n) => n.body.server_keys?.[FAR]);
  assert.ok(q, 'the notary was asked');
  assert.equal(q.method, 'POST');
  const criteria = q.body.server_keys[FAR]['ed25519:f1'];
  assert.ok(criteria, `asked for the request's key: ${JSON.stringify(q.body)}`);
  assert.ok(criteria.minimum_valid_until_ts >= before, `with a minimum validity: ${JSON.stringify(q.body)}`);
});

test('keys are fetched once and then served from the cache', async () => {
  const before = keyFetches[REMOTE];
  for (let i = 0; i < 3; i++) assert.equal((await signed('GET', `/_matrix/federation/v1/query/profile?i=${i}`)).status, 200);
  assert.ok(before <= 1, `fetched ${before} times before`);
  assert.equal(keyFetches[REMOTE], 1);
});

test('forged, tampered, misdirected and malformed requests are refused and not forwarded', async () => {
  const n = origin.requests.length;
  const forged = await signed('GET', '/_matrix/federation/v1/query/profile', undefined, { key: FORGER_KEY });
  assert.equal(forged.status, 401);
  assert.equal(forged.json.errcode, 'M_UNAUTHORIZED');
  const tampered = await signed('PUT', '/_matrix/federation/v1/invite/!r:x/$e', { a: 1 }, { body: JSON.stringify({ a: 2 }) });
  assert.equal(tampered.status, 401);
  assert.match(tampered.json.error, /does not verify/);
  const elsewhere = await signed('GET', '/_matrix/federation/v1/query/profile', undefined, { to: 'other.test' });
  assert.equal(elsewhere.status, 401);
  const none = await fetch(`${base}/_matrix/federation/v1/query/profile`);
  assert.equal(none.status, 401);
  assert.equal((await none.json()).errcode, 'M_UNAUTHORIZED');
  const malformed = await fetch(`${base}/_matrix/federation/v1/query/profile`, { headers: { authorization: 'X-Matrix origin="unterminated' } });
  assert.equal(malformed.status, 400);
  const unknownServer = await signed('GET', '/_matrix/federation/v1/query/profile', undefined, { from: 'nobody.test', key: REMOTE_KEY });
  assert.equal(unknownServer.status, 401);
  assert.equal(origin.requests.length, n, 'nothing was forwarded');
});

test('a transaction of valid PDUs is forwarded byte for byte', async () => {
  const pdus = [event({ depth: 6 }), event({ depth: 7, sender: `@carol:${THIRD}` }, THIRD, THIRD_KEY)];
  const txn = { origin: REMOTE, origin_server_ts: Date.now(), pdus, edus: [] };
  const r = await signed('PUT', '/_matrix/federation/v1/send/t1', txn);
  assert.equal(r.status, 200);
  assert.equal(lastForwarded().body.toString(), JSON.stringify(txn));
  assert.equal(lastForwarded().headers['x-mxfed-edge-origin'], REMOTE);
  assert.deepEqual(Object.keys(r.json.pdus).sort(), pdus.map((p) => m.eventId(p, '10')).sort());
  assert.match(r.headers.get('x-mxfed-edge'), /forward=original;accepted=2;redacted=0;rejected=0/);
  assert.equal(keyFetches[THIRD], 1, 'the third server keys were fetched for its PDU');
});

test('bad PDUs are dropped and their errors merged into the response', async () => {
  const good = event({ depth: 8 });
  const badSig = event({ depth: 9 });
  badSig.signatures[REMOTE]['ed25519:r1'] = 'A' + badSig.signatures[REMOTE]['ed25519:r1'].slice(1);
  const tamperedContent = { ...event({ depth: 10 }), content: { body: 'changed' } };
  const forgedThird = event({ depth: 11, sender: `@mallory:${THIRD}` }, THIRD, FORGER_KEY.replace('r1', 't1'));
  const oversize = event({ depth: 12, content: { body: 'x'.repeat(70_000) } });
  const unknownRoom = event({ depth: 13, room_id: UNKNOWN_ROOM });
  const txn = { origin: REMOTE, origin_server_ts: Date.now(), pdus: [good, badSig, tamperedContent, forgedThird, oversize, unknownRoom, 42], edus: [{ edu_type: 'm.typing', content: { room_id: ROOM, user_id: `@alice:${REMOTE}`, typing: true } }] };
  const r = await signed('PUT', '/_matrix/federation/v1/send/t2', txn);
  assert.equal(r.status, 200);
  const forwarded = JSON.parse(lastForwarded().body.toString());
  // Valid, redacted-for-the-origin and unknown-room PDUs go on; the EDU too.
  assert.deepEqual(forwarded.pdus.map((p) => p.depth), [8, 10, 13]);
  assert.equal(forwarded.edus.length, 1);
  const id = (p) => m.eventId(p, '10');
  assert.deepEqual(r.json.pdus[id(good)], {});
  assert.deepEqual(r.json.pdus[id(tamperedContent)], {});
  assert.match(r.json.pdus[id(badSig)].error, /^signature_invalid: /);
  assert.match(r.json.pdus[id(forgedThird)].error, /^signature_invalid: /);
  assert.match(r.json.pdus[id(oversize)].error, /^pdu_too_large: /);
  assert.equal(r.json.pdus[id(unknownRoom)], undefined, 'the origin answers for rooms the edge cannot check');
  assert.match(r.headers.get('x-mxfed-edge'), /forward=rewritten;accepted=1;redacted=1;rejected=3;unchecked=1;dropped=1/);
});

test('a transaction with nothing valid is answered at the edge', async () => {
  const n = origin.requests.length;
  const bad = event({ depth: 20 });
  bad.content.body = 'tampered after signing';
  bad.signatures = { [REMOTE]: { 'ed25519:r1': 'A'.repeat(86) } };
  const r = await signed('PUT', '/_matrix/federation/v1/send/t3', { origin: REMOTE, origin_server_ts: 1, pdus: [bad] });
  assert.equal(r.status, 200);
  assert.deepEqual(Object.keys(r.json.pdus), [m.eventId(bad, '10')]);
  assert.equal(origin.requests.length, n);
});

test('oversize and unreadable transactions are refused', async () => {
  const n = origin.requests.length;
  // Refused on the declared length, before the body is read.
  const tooLarge = await new Promise((resolve, reject) => {
    const req = http.request(`${base}/_matrix/federation/v1/send/big`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', 'content-length': String(200 * 65536 + 1) },
    });
    req.on('response', async (res) => {
      const body = await readBody(res);
      req.destroy();
      resolve({ status: res.statusCode, json: JSON.parse(body.toString()) });
    });
    req.on('error', reject);
    req.write('{"origin":');
  });
  assert.equal(tooLarge.status, 413);
  assert.equal(tooLarge.json.errcode, 'M_TOO_LARGE');
  const notTxn = await signed('PUT', '/_matrix/federation/v1/send/t4', { origin_server_ts: 1 });
  assert.equal(notTxn.status, 400);
  assert.equal(notTxn.json.errcode, 'M_BAD_JSON');
  assert.equal(origin.requests.length, n);
});

test('a body without a declared length is refused once over the limit, before its end', async () => {
  const n = origin.requests.length;
  // A chunked body that does not end: the edge must answer once it has read past the limit,
  // not wait for the whole body (which could be larger than the isolate's memory). The client
  // sends a little more than the limit and then waits without ending the body; it does not go on
  // writing, since a server that answers early and closes a connection with unread bytes resets
  // it, and a reset can reach the client before the answer does.
  const tooLarge = await new Promise((resolve, reject) => {
    const req = http.request(`${base}/_matrix/federation/v1/send/chunked`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
    });
    const noAnswer = setTimeout(() => {
      req.destroy();
      reject(new Error('no answer within 30 s of sending more than the limit'));
    }, 30_000);
    req.on('response', async (res) => {
      const body = await readBody(res);
      clearTimeout(noAnswer);
      req.destroy();
      resolve({ status: res.statusCode, json: JSON.parse(body.toString()) });
    });
    req.on('error', (e) => {
      clearTimeout(noAnswer);
      reject(e);
    });
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    for (let sent = 0; sent <= 200 * 65536 + 2 * chunk.length; sent += chunk.length) req.write(chunk);
  });
  assert.equal(tooLarge.status, 413);
  assert.equal(tooLarge.json.errcode, 'M_TOO_LARGE');
  assert.equal(origin.requests.length, n, 'nothing forwarded');
});

test('an origin that cannot be reached is a gateway error', async () => {
  const r = await signed('GET', '/_matrix/federation/v1/query/hang-up?x=1');
  assert.equal(r.status, 502);
  assert.equal(r.json.errcode, 'M_UNKNOWN');
});

test('non-federation traffic passes through untouched', async () => {
  const r = await fetch(`${base}/_matrix/client/versions`, { headers: { 'x-mxfed-edge-origin': 'spoofed.test' } });
  assert.equal(r.status, 200);
  assert.equal(lastForwarded().url, '/_matrix/client/versions');
  assert.equal(lastForwarded().headers['x-mxfed-edge-origin'], undefined, 'a client cannot spoof the edge header');
});
