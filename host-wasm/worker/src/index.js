// mxfed edge worker: federation checks at the edge, in front of an origin homeserver.
//
// - serves /.well-known/matrix/server and /_matrix/key/v2/server for SERVER_NAME;
// - on every other /_matrix/federation/* request verifies X-Matrix (fetching the requesting
//   server's keys, cached by the core's KeyCache policy) and answers failures with the Matrix
//   error the core chose; forwards the rest to ORIGIN;
// - on PUT /_matrix/federation/v1/send/{txnId} checks every PDU (format, signatures, content
//   hash) before forwarding, forwards only the valid ones and merges the per-PDU errors into the
//   origin's response.
//
// All decisions are the core's (host-wasm/src/edge.rs over mxfed-core); this file only does
// I/O: fetch(), timers, configuration. Configuration: environment bindings, see
// host-wasm/README.md ("The edge worker").
import { EdgeRequest, KeyCache, discoveryPlan, edgeRoute, isMxfedError, loadSigningKeys, serverKeys } from 'mxfed-wasm';

const encoder = new TextEncoder();
// Synapse's limit on a transaction body (mxfed_core::transaction::MAX_BODY_BYTES).
const MAX_BODY_BYTES = 200 * 65536;
const FETCH_TIMEOUT_MS = 10_000;
// What the edge reads of a key server's or well-known answer (a peer's server picks its size).
const MAX_FETCH_BYTES = 1024 * 1024;
// How long the origin may take to answer a forwarded request (Synapse gives up after 60 s).
const ORIGIN_TIMEOUT_MS = 60_000;
const DAY_MS = 86_400_000;

// Per-isolate state: the key cache lives as long as the isolate does.
const keyCache = new KeyCache();
const inflightKeys = new Map();
const roomVersions = new Map(); // room ID -> { version, until }, oldest first
// Room IDs come from signed but otherwise arbitrary requests: the cache is bounded, the oldest
// entry going first.
const ROOM_VERSION_CACHE_MAX = 10_000;
let ourKeys = null; // [SIGNING_KEY text, SigningKeys]
let ourKeyResponse = null; // { body, refreshAt }

function json(status, body, headers = {}) {
  const text = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
  return new Response(text, { status, headers: { 'content-type': 'application/json', ...headers } });
}

function matrixError(status, errcode, error) {
  return json(status, { errcode, error });
}

function errorResponse(e) {
  if (isMxfedError(e) && e.status) return matrixError(e.status, e.errcode, e.message);
  if (isMxfedError(e)) return matrixError(400, 'M_BAD_JSON', e.message);
  // Details of a 5xx go to the log, not to the peer.
  console.error('mxfed edge: internal error', e?.stack ?? e);
  return matrixError(500, 'M_UNKNOWN', 'Internal error');
}

function config(env) {
  for (const name of ['SERVER_NAME', 'SIGNING_KEY', 'ORIGIN']) {
    if (!env[name]) throw new Error(`binding ${name} is not set`);
  }
  const parse = (name, dflt) => {
    const v = env[name];
    if (v === undefined || v === '') return dflt;
    return typeof v === 'string' ? JSON.parse(v) : v;
  };
  const dev = env.DEV_MODE === '1' || env.DEV_MODE === 'true' || env.DEV_MODE === true;
  return {
    serverName: env.SERVER_NAME,
    origin: String(env.ORIGIN).replace(/\/+$/, ''),
    wellKnown: env.WELL_KNOWN_SERVER || `${env.SERVER_NAME}:443`,
    keyValidityMs: Number(env.KEY_VALIDITY_MS || DAY_MS),
    roomVersions: parse('ROOM_VERSIONS', {}),
    roomVersionUrl: env.ROOM_VERSION_URL || null,
    roomVersionToken: env.ROOM_VERSION_TOKEN || null,
    defaultRoomVersion: env.DEFAULT_ROOM_VERSION || null,
    forwardUnknown: (env.UNKNOWN_ROOM_POLICY || 'forward') !== 'drop',
    notary: env.KEY_NOTARY ? String(env.KEY_NOTARY).replace(/\/+$/, '') : null,
    notaryName: env.KEY_NOTARY_NAME || env.SERVER_NAME,
    notaryKeys: env.KEY_NOTARY_KEYS ? parse('KEY_NOTARY_KEYS', null) : null,
    sharedSecret: env.ORIGIN_SHARED_SECRET || null,
    dev,
    devKeyServers: dev ? parse('DEV_KEY_SERVERS', {}) : {},
  };
}

function signingKeys(env) {
  if (!ourKeys || ourKeys[0] !== env.SIGNING_KEY) {
    ourKeys?.[1].free();
    ourKeys = [env.SIGNING_KEY, loadSigningKeys(env.SIGNING_KEY)];
    ourKeyResponse = null;
  }
  return ourKeys[1];
}

function keyResponse(env, cfg, now) {
  if (!ourKeyResponse || now >= ourKeyResponse.refreshAt) {
    const body = serverKeys(cfg.serverName, signingKeys(env), now + cfg.keyValidityMs);
    ourKeyResponse = { body, refreshAt: now + cfg.keyValidityMs / 2 };
  }
  return ourKeyResponse.body;
}

class TooLarge extends Error {}

// A body, read chunk by chunk: past `limit` bytes the stream is cancelled and TooLarge thrown,
// so a body without a declared length (chunked) cannot fill the isolate's memory first.
async function readLimited(stream, limit) {
  if (stream === null) return new Uint8Array(0);
  const reader = stream.getReader();
  const chunks = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      reader.cancel().catch(() => {}); // not awaited: nothing to wait for
      throw new TooLarge(`more than ${limit} bytes`);
    }
    chunks.push(value);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

async function fetchBytes(url, init = {}) {
  const r = await fetch(url, { ...init, signal: AbortSignal.timeout(FETCH_TIMEOUT_MS), redirect: 'manual' });
  if (r.status !== 200) {
    r.body?.cancel().catch(() => {});
    throw new Error(`${url}: HTTP ${r.status}`);
  }
  return readLimited(r.body, MAX_FETCH_BYTES);
}

// Where a server's federation API is: DEV_KEY_SERVERS (dev only), else as the core's discovery
// plan says: an IP literal or a name with a port directly (port 8448 when it names none), else
// its /.well-known/matrix/server delegation, else port 8448. (SRV records need DNS the Workers
// runtime does not offer: such servers need KEY_NOTARY.) In dev mode only mapped servers are
// reached: a dev edge never resolves names on the network.
async function serverBase(cfg, server) {
  if (cfg.devKeyServers[server]) return String(cfg.devKeyServers[server]).replace(/\/+$/, '');
  if (cfg.dev) throw new Error(`dev mode: no DEV_KEY_SERVERS entry for ${server}`);
  let plan = discoveryPlan(server);
  if (plan.action === 'well_known') {
    let wellKnown = null;
    try {
      wellKnown = await fetchBytes(plan.url);
    } catch {
      // No delegation: the server name itself, on 8448.
    }
    // The core reads the answer (null: none): `m.server` must be a valid server name with a
    // usable port (no path, no fragment), else the answer counts as none. Its SRV step is left
    // out (no DNS here): the host on port 8448.
    plan = discoveryPlan(server, wellKnown);
  }
  if (plan.action !== 'connect' && plan.action !== 'srv') throw new Error(`${server}: ${plan.reason ?? plan.action}`);
  const port = plan.action === 'connect' ? plan.port : 8448;
  const host = plan.host.includes(':') ? `[${plan.host}]` : plan.host;
  return `https://${host}:${port}`;
}

// `need`: what the core asks for ({server, minimum_valid_until_ts, key_ids, notary_query}).
async function fetchKeysNow(env, cfg, need) {
  const { server } = need;
  const now = Date.now();
  if (cfg.notary && !cfg.devKeyServers[server]) {
    const notaryKeys = cfg.notaryKeys ?? JSON.parse(signingKeys(env).publicKeysJson());
    // The core's query: each key ID needed with the minimum validity, as Synapse asks (a notary
    // may otherwise answer from a cache that expires before the request's own timestamp).
    const query = need.notary_query ? JSON.stringify(need.notary_query) : KeyCache.notaryQuery(server);
    const body = await fetchBytes(`${cfg.notary}/_matrix/key/v2/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: query,
    });
    keyCache.insertNotaryAnswer(body, cfg.notaryName, encoder.encode(JSON.stringify(notaryKeys)), now);
    return;
  }
  const base = await serverBase(cfg, server);
  keyCache.insert(await fetchBytes(`${base}/_matrix/key/v2/server`), server, now);
}

// One fetch per server at a time; a failed fetch only means the check that needed it fails.
async function fetchKeys(env, cfg, fetch) {
  const { server } = fetch;
  if (!inflightKeys.has(server)) {
    const p = fetchKeysNow(env, cfg, fetch)
      .catch((e) => console.warn(`mxfed edge: keys of ${server}: ${e?.message ?? e}`))
      .finally(() => inflightKeys.delete(server));
    inflightKeys.set(server, p);
  }
  return inflightKeys.get(server);
}

function rememberRoomVersion(room, entry) {
  roomVersions.delete(room);
  roomVersions.set(room, entry);
  while (roomVersions.size > ROOM_VERSION_CACHE_MAX) roomVersions.delete(roomVersions.keys().next().value);
}

// Room versions, by policy: ROOM_VERSIONS, then ROOM_VERSION_URL (cached; a room's version
// never changes), then DEFAULT_ROOM_VERSION, else unknown (null).
async function lookupRoomVersion(cfg, room) {
  // Own properties only: a room ID like `constructor` must not find Object's.
  if (Object.hasOwn(cfg.roomVersions, room) && cfg.roomVersions[room]) return String(cfg.roomVersions[room]);
  const cached = roomVersions.get(room);
  if (cached && (cached.until === Infinity || cached.until > Date.now())) return cached.version;
  if (cfg.roomVersionUrl) {
    try {
      const url = cfg.roomVersionUrl.replace('{room_id}', encodeURIComponent(room));
      const headers = cfg.roomVersionToken ? { authorization: `Bearer ${cfg.roomVersionToken}` } : {};
      const r = await fetch(url, { headers, signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
      if (r.status === 200) {
        const v = (await r.json())?.room_version;
        if (typeof v === 'string' && v) {
          rememberRoomVersion(room, { version: v, until: Infinity });
          return v;
        }
      } else {
        await r.arrayBuffer();
      }
    } catch (e) {
      console.warn(`mxfed edge: room version of ${room}: ${e?.message ?? e}`);
    }
    // Not known to the origin (yet): ask again in a minute.
    rememberRoomVersion(room, { version: cfg.defaultRoomVersion, until: Date.now() + 60_000 });
  }
  return cfg.defaultRoomVersion;
}

// The request's path and query as sent, which is what its X-Matrix signature covers: `search`
// is empty for both `/p` and `/p?`, so a bare `?` is taken from the serialised URL.
function pathAndQuery(url) {
  return url.pathname + (url.search || (url.href.endsWith('?') ? '?' : ''));
}

function forwardHeaders(request, cfg, origin) {
  const h = new Headers(request.headers);
  for (const name of ['host', 'content-length', 'x-mxfed-edge-origin', 'x-mxfed-edge-secret']) h.delete(name);
  if (origin) h.set('x-mxfed-edge-origin', origin);
  if (cfg.sharedSecret) h.set('x-mxfed-edge-secret', cfg.sharedSecret);
  return h;
}

// The origin's answer; 502 M_UNKNOWN when it cannot be reached, 504 when it does not answer
// within ORIGIN_TIMEOUT_MS: a gateway's errors, not the edge's own (500).
async function forward(request, cfg, url, body, origin) {
  const method = request.method;
  // The timeout covers waiting for the answer's headers only: an abort after them would cut a
  // long answer (a large `send_join` or `/state`) off mid-body.
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), ORIGIN_TIMEOUT_MS);
  const init = { method, headers: forwardHeaders(request, cfg, origin), redirect: 'manual', signal: abort.signal };
  if (method !== 'GET' && method !== 'HEAD') init.body = body === undefined ? request.body : body;
  try {
    return await fetch(`${cfg.origin}${pathAndQuery(url)}`, init);
  } catch (e) {
    if (abort.signal.aborted) return matrixError(504, 'M_UNKNOWN', 'The origin server did not answer in time');
    console.error('mxfed edge: origin unreachable', e?.message ?? e);
    return matrixError(502, 'M_UNKNOWN', 'The origin server cannot be reached');
  } finally {
    clearTimeout(timer);
  }
}

async function handleSend(req, request, env, cfg, url, body, origin) {
  const rooms = req.beginTransaction();
  const versions = Object.create(null); // `__proto__` is a key like any other here
  await Promise.all(rooms.map(async (room) => (versions[room] = await lookupRoomVersion(cfg, room))));
  const versionBytes = encoder.encode(JSON.stringify(versions));
  const fetches = JSON.parse(req.pduKeyFetches(keyCache, versionBytes));
  await Promise.all(fetches.map((f) => fetchKeys(env, cfg, f)));
  const summary = JSON.parse(req.filter(keyCache, versionBytes, cfg.forwardUnknown));
  const kind = req.forwardKind();
  const edgeHeader = {
    'x-mxfed-edge': `forward=${kind};accepted=${summary.accepted};redacted=${summary.redacted};rejected=${summary.rejected.length};unchecked=${summary.unchecked};dropped=${summary.dropped.length + summary.unknown_dropped}`,
  };
  if (summary.rejected.length) {
    console.log(`mxfed edge: ${origin} ${url.pathname}: rejected ${summary.rejected.map((r) => `${r.event_id} (${r.reason})`).join(', ')}`);
  }
  if (kind === 'nothing') return json(200, req.mergeResponse(undefined), edgeHeader);
  const resp = await forward(request, cfg, url, kind === 'original' ? body : req.forwardBody(), origin);
  if (resp.status !== 200) return resp;
  const merged = req.mergeResponse(new Uint8Array(await resp.arrayBuffer()));
  return json(200, merged, edgeHeader);
}

async function handleFederation(route, request, env, cfg, url) {
  const declared = Number(request.headers.get('content-length') ?? 0);
  if (declared > MAX_BODY_BYTES) return matrixError(413, 'M_TOO_LARGE', 'Request body too large');
  const hasBody = request.method !== 'GET' && request.method !== 'HEAD' && request.body !== null;
  let body = null;
  if (hasBody) {
    try {
      body = await readLimited(request.body, MAX_BODY_BYTES);
    } catch (e) {
      if (e instanceof TooLarge) return matrixError(413, 'M_TOO_LARGE', 'Request body too large');
      throw e;
    }
  }
  const req = new EdgeRequest(request.method, pathAndQuery(url), cfg.serverName, request.headers.get('authorization'), body);
  try {
    const now = Date.now();
    const need = req.keyFetch(keyCache, now);
    if (need) await fetchKeys(env, cfg, JSON.parse(need));
    const origin = req.authenticate(keyCache, Date.now());
    if (route === 'send') return await handleSend(req, request, env, cfg, url, body, origin);
    return await forward(request, cfg, url, body ?? undefined, origin);
  } finally {
    req.free();
  }
}

export async function handle(request, env) {
  const cfg = config(env);
  const url = new URL(request.url);
  const route = edgeRoute(request.method, url.pathname);
  switch (route) {
    case 'well_known':
      return json(200, { 'm.server': cfg.wellKnown });
    case 'server_keys':
      return json(200, keyResponse(env, cfg, Date.now()));
    case 'federation':
    case 'send':
      return handleFederation(route, request, env, cfg, url);
    default:
      // `open` federation endpoints and everything else: the origin's business.
      return forward(request, cfg, url, undefined, null);
  }
}

export default {
  async fetch(request, env) {
    try {
      return await handle(request, env);
    } catch (e) {
      return errorResponse(e);
    }
  },
};
