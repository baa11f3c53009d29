// The mxfed JS API: thin wrappers over the wasm exports of host-wasm/src/lib.rs. They turn
// strings, objects and byte views into bytes, call the core, and give back strings or plain
// objects. No protocol logic lives here.
//
// JSON in: a string (JSON text), a Uint8Array/ArrayBuffer/view (UTF-8 JSON), or a plain object,
// which is JSON.stringify'd WITHOUT sorting and canonicalised in Rust: sorting in JS would use
// UTF-16 order, which is wrong beyond the BMP. JSON documents out are canonical JSON strings.
// Errors are `Error`s named `MxfedError` with `code` (the core's stable code) and, for
// request authentication, `status` and `errcode`.
import * as raw from './mxfed_wasm.js';

export { SigningKeys } from './mxfed_wasm.js';

/** What the edge worker does with a request: `well_known`, `server_keys`, `open`, `federation`,
 *  `send` or `passthrough`. */
export function edgeRoute(method, path) {
  return raw.edgeRoute(stringArg(method, 'method'), stringArg(path, 'path'));
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function mxfedError(code, message) {
  const e = new Error(message);
  e.name = 'MxfedError';
  e.code = code;
  return e;
}

/** Whether `e` is an error thrown by mxfed (it has a stable `code`). */
export function isMxfedError(e) {
  return e instanceof Error && e.name === 'MxfedError' && typeof e.code === 'string';
}

function toBytes(input, what) {
  if (input instanceof Uint8Array) return input;
  if (typeof input === 'string') return encoder.encode(input);
  if (input instanceof ArrayBuffer) return new Uint8Array(input);
  if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  if (input !== null && typeof input === 'object') {
    let text;
    try {
      text = JSON.stringify(input);
    } catch (e) {
      // A BigInt, a cycle, a throwing toJSON: JSON.stringify's TypeError has no .code.
      throw mxfedError('bad_argument', `${what}: not representable as JSON: ${e?.message ?? e}`);
    }
    return encoder.encode(text);
  }
  throw mxfedError('bad_argument', `${what}: expected JSON text, bytes or an object, got ${input === null ? 'null' : typeof input}`);
}

function optBytes(input, what) {
  return input === undefined || input === null ? undefined : toBytes(input, what);
}

function toText(input, what) {
  if (typeof input === 'string') return input;
  if (input instanceof Uint8Array || input instanceof ArrayBuffer || ArrayBuffer.isView(input)) {
    return decoder.decode(toBytes(input, what));
  }
  throw mxfedError('bad_argument', `${what}: expected a string`);
}

// The key and edge classes, with their arguments converted as every function's are: the
// wasm-bindgen glue copies `arg.length` elements of whatever it is given, so a string became
// zero bytes and an ArrayBuffer or object no bytes at all (an EdgeRequest body read as none).

/** Keys known about other servers. `add(response)`: a self-signed key response. */
export class KeyRing extends raw.KeyRing {
  add(response) {
    return super.add(toBytes(response, 'response'));
  }
}

/** The core's key cache. */
export class KeyCache extends raw.KeyCache {
  insert(response, expectedServer, fetchedAt) {
    const server = expectedServer === undefined || expectedServer === null ? undefined : stringArg(expectedServer, 'expectedServer');
    return super.insert(toBytes(response, 'response'), server, timeArg(fetchedAt, 'fetchedAt'));
  }

  insertNotaryAnswer(response, notary, notaryKeys, fetchedAt) {
    return super.insertNotaryAnswer(toBytes(response, 'response'), stringArg(notary, 'notary'), toBytes(notaryKeys, 'notaryKeys'), timeArg(fetchedAt, 'fetchedAt'));
  }

  /** The cached keys as a KeyRing (this module's, converting its arguments like the others). */
  keyRing() {
    // The glue wraps the ring it returns in its own class, not this module's.
    return Object.setPrototypeOf(super.keyRing(), KeyRing.prototype);
  }
}

/** A federation request under the edge's checks (host-wasm/src/edge.rs). */
export class EdgeRequest extends raw.EdgeRequest {
  constructor(method, uri, destination, authorization, body) {
    super(
      stringArg(method, 'method'),
      stringArg(uri, 'uri'),
      stringArg(destination, 'destination'),
      authorization === undefined || authorization === null ? undefined : stringArg(authorization, 'authorization'),
      optBytes(body, 'body'),
    );
  }
}

// Signing keys: a SigningKeys, or Synapse `signing.key` text (parsed for this call only).
function withSigningKeys(keys, f) {
  if (keys instanceof raw.SigningKeys) return f(keys);
  const k = new raw.SigningKeys(toText(keys, 'signing key'));
  try {
    return f(k);
  } finally {
    k.free();
  }
}

// Verification keys: a KeyRing, a KeyCache (its keys now), or a list of
// /_matrix/key/v2/server responses (each must be self-signed).
function withKeyRing(keys, f) {
  if (keys instanceof raw.KeyRing) return f(keys);
  let ring;
  if (keys instanceof raw.KeyCache) {
    ring = keys.keyRing();
  } else if (Array.isArray(keys)) {
    ring = new raw.KeyRing();
    try {
      for (const r of keys) ring.add(toBytes(r, 'key response'));
    } catch (e) {
      ring.free();
      throw e;
    }
  } else {
    throw mxfedError('bad_argument', 'keys: expected a KeyRing, a KeyCache or a list of key responses');
  }
  try {
    return f(ring);
  } finally {
    ring.free();
  }
}

/** Loads Synapse `signing.key` text once, for repeated signing. Call `.free()` when done. */
export function loadSigningKeys(text) {
  return new raw.SigningKeys(toText(text, 'signing key'));
}

/** A new Synapse `signing.key` line (`ed25519 a_abcd <seed>`) from crypto.getRandomValues. */
export function generateSigningKey() {
  const entropy = new Uint8Array(36);
  globalThis.crypto.getRandomValues(entropy);
  return raw.SigningKeys.generateLine(entropy);
}

/** The verify keys of signing keys: `{"ed25519:<v>": "<base64>"}`. */
export function publicKeys(keys) {
  return withSigningKeys(keys, (k) => JSON.parse(k.publicKeysJson()));
}

/** Canonical JSON (string) of JSON; numbers normalised as the spec's examples ask. */
export function canonicalJson(input) {
  return raw.canonicalJson(toBytes(input, 'input'));
}

/** Whether `bytes` are canonical JSON already: exactly what `canonicalJson` writes for the value
 *  they parse to. Floats, integers beyond +/-(2^53-1) and bytes that are not JSON are not. Bytes
 *  only (a string or object would have to be encoded first, which answers another question). */
export function isCanonicalJson(bytes) {
  if (!(bytes instanceof ArrayBuffer || ArrayBuffer.isView(bytes))) {
    throw mxfedError('bad_argument', 'bytes: expected a Uint8Array');
  }
  return raw.isCanonicalJson(toBytes(bytes, 'bytes'));
}

/** `object` signed by `serverName` with every key; canonical JSON string. */
export function signJson(object, serverName, keys) {
  const bytes = toBytes(object, 'object');
  const name = serverNameArg(serverName);
  return withSigningKeys(keys, (k) => raw.signJson(bytes, name, k));
}

/** Verifies `serverName`'s signatures with `verifyKeys` (`{"ed25519:<v>": "<base64>"}`).
 *  Returns the key IDs that verified; throws (`signature_invalid`, …) otherwise. */
export function verifyJson(object, serverName, verifyKeys) {
  return JSON.parse(raw.verifyJson(toBytes(object, 'object'), serverNameArg(serverName), toBytes(verifyKeys, 'verifyKeys'))).verified;
}

/** The content hash (unpadded base64) of an event of room version `roomVersion`. */
export function contentHash(event, roomVersion) {
  return raw.contentHash(toBytes(event, 'event'), String(roomVersion));
}

/** The reference hash (unpadded base64). */
export function referenceHash(event, roomVersion) {
  return raw.referenceHash(toBytes(event, 'event'), String(roomVersion));
}

/** The event ID. */
export function eventId(event, roomVersion) {
  return raw.eventId(toBytes(event, 'event'), String(roomVersion));
}

/** The room ID that a room version 12+ `m.room.create` event defines. */
export function roomId(event, roomVersion) {
  return raw.roomId(toBytes(event, 'event'), String(roomVersion));
}

/** The redacted event (canonical JSON string). */
export function redact(event, roomVersion) {
  return raw.redact(toBytes(event, 'event'), String(roomVersion));
}

/** The event with its content hash and `serverName`'s signatures (canonical JSON string). */
export function hashAndSignEvent(event, roomVersion, serverName, keys) {
  const bytes = toBytes(event, 'event');
  const name = serverNameArg(serverName);
  return withSigningKeys(keys, (k) => raw.hashAndSignEvent(bytes, String(roomVersion), name, k));
}

/** Our signed membership event from a resident server's `make_join`, `make_leave` or
 *  `make_knock` answer (`{room_version, event}`), once its template is checked to be the event
 *  asked for. `request`: `{roomId, userId, membership, origin, content?, now?, eventIdLocalpart?}`
 *  (`now` in ms, default Date.now(); room versions 1-2 draw their event ID's local part with
 *  crypto.getRandomValues unless given). Signed with the first key. Returns
 *  `{eventId, roomVersion, event}`, `event` as canonical JSON text to send with `send_*`. */
export function membershipFromTemplate(answer, request, keys) {
  const { roomId, userId, membership, origin, content, now = Date.now() } = objectArg(request, 'request');
  for (const [v, name] of [[roomId, 'roomId'], [userId, 'userId'], [membership, 'membership'], [origin, 'origin']]) stringArg(v, `request.${name}`);
  timeArg(now, 'request.now');
  let { eventIdLocalpart } = request;
  if (eventIdLocalpart === undefined || eventIdLocalpart === null) {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
    const entropy = new Uint8Array(18);
    globalThis.crypto.getRandomValues(entropy);
    eventIdLocalpart = Array.from(entropy, (b) => alphabet[b % alphabet.length]).join('');
  }
  stringArg(eventIdLocalpart, 'request.eventIdLocalpart');
  const bytes = toBytes(answer, 'answer');
  const extra = optBytes(content, 'content');
  const out = withSigningKeys(keys, (k) =>
    raw.membershipFromTemplate(bytes, roomId, userId, membership, origin, extra, now, eventIdLocalpart, k),
  );
  // The event is taken out of the canonical answer as text, not through JSON.stringify.
  const { event_id: eventId, room_version: roomVersion } = JSON.parse(out);
  const start = out.indexOf('"event":') + '"event":'.length;
  const end = out.lastIndexOf(',"event_id":');
  return { eventId, roomVersion, event: out.slice(start, end) };
}

/** Checks PDUs (format, signatures, content hash) against `keys`. One verdict object per PDU,
 *  exactly `mxfed event check`'s: `{event_id, signatures, content_hash, verdict[, reason, error]}`. */
export function checkPdus(pdus, roomVersion, keys) {
  const [data, ends] = pduBatch(pdus);
  const out = withKeyRing(keys, (ring) => raw.checkPdus(data, ends, String(roomVersion), ring));
  return jsonLines(out);
}

/** The `Authorization` header values (one per key) for `{method, uri, origin, destination, content?}`. */
export function signRequest(request, keys) {
  const { method, uri, origin, destination, content } = objectArg(request, 'request');
  for (const [v, name] of [[method, 'method'], [uri, 'uri'], [origin, 'origin'], [destination, 'destination']]) stringArg(v, `request.${name}`);
  const body = optBytes(content, 'content');
  return withSigningKeys(keys, (k) => raw.signRequest(method, uri, origin, destination, body, k)).split('\n');
}

/** Verifies `{method, uri, destination, content?, authorization}` (`authorization`: one header
 *  value or a list) against `keys` at `now` (ms, default Date.now()). Returns
 *  `{origin, verified: [keyIds]}`; throws with `code`, `status` and `errcode` otherwise. */
export function verifyRequest(request, keys, now = Date.now()) {
  const { method, uri, destination, content, authorization } = objectArg(request, 'request');
  for (const [v, name] of [[method, 'method'], [uri, 'uri'], [destination, 'destination']]) stringArg(v, `request.${name}`);
  timeArg(now, 'now');
  const headers = authorization === undefined || authorization === null ? [] : [].concat(authorization);
  headers.forEach((h) => stringArg(h, 'request.authorization'));
  const body = optBytes(content, 'content');
  return JSON.parse(withKeyRing(keys, (ring) => raw.verifyRequest(method, uri, destination, body, headers, ring, now)));
}

/** Our signed `/_matrix/key/v2/server` response (canonical JSON string). */
export function serverKeys(serverName, keys, validUntilTs) {
  const name = serverNameArg(serverName);
  timeArg(validUntilTs, 'validUntilTs');
  return withSigningKeys(keys, (k) => raw.serverKeys(name, k, validUntilTs));
}

/** A `PUT /send/{txnId}` body parsed by the core:
 *  `{origin, origin_server_ts, pdus, edus, rejected: [{item, code, error}]}`. */
export function parseTransaction(body) {
  return JSON.parse(raw.parseTransaction(toBytes(body, 'body')));
}

/** Unpadded standard base64 of bytes (or of a string's UTF-8). */
export function encodeBase64(data) {
  return raw.encodeBase64(typeof data === 'string' ? encoder.encode(data) : toBytes(data, 'data'));
}

/** Bytes of unpadded (or padded) standard base64. */
export function decodeBase64(text) {
  return raw.decodeBase64(stringArg(text, 'text'));
}

function serverNameArg(serverName) {
  return stringArg(serverName, 'serverName');
}

function stringArg(value, name) {
  if (typeof value !== 'string') throw mxfedError('bad_argument', `${name}: expected a string`);
  return value;
}

function objectArg(value, name) {
  if (value === null || typeof value !== 'object') throw mxfedError('bad_argument', `${name}: expected an object`);
  return value;
}

function timeArg(value, name) {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw mxfedError('bad_argument', `${name}: expected a number of milliseconds`);
  return value;
}

/** Whether a server ACL (the content of an `m.room.server_acl` event) lets `serverName` (with
 *  or without a port) take part. Throws `json_*` for content that is not a JSON object and
 *  `bad_server_name` for a malformed name. */
export function serverAclAllows(content, serverName) {
  return raw.serverAclAllows(toBytes(content, 'content'), serverNameArg(serverName));
}

/** The discovery plan for `serverName`. Without `wellKnown`: `{action: 'connect', host, port}`
 *  or `{action: 'well_known', url}`. With the well-known answer's body (`null` or `''` when the
 *  fetch failed or was not 200): `{action: 'connect', host, port}` or
 *  `{action: 'srv', host, srv_names}`. */
export function discoveryPlan(serverName, wellKnown) {
  const body = wellKnown === undefined ? undefined : wellKnown === null ? new Uint8Array() : toBytes(wellKnown, 'wellKnown');
  return JSON.parse(raw.discoveryPlan(serverNameArg(serverName), body));
}

/** The SRV record to connect to from `[{priority, weight, port, target}]`: `{host, port}`, or
 *  `null` when no record is usable. */
export function pickSrv(records) {
  return JSON.parse(raw.pickSrv(toBytes(records, 'records')));
}

/** Every target of an SRV answer (`[{priority, weight, port, target}]`) in the order to try
 *  them: `{action: 'connect', targets: [{host, port}, …]}`; `{action: 'unavailable'}` when the
 *  only target is `.` (the service is not offered: fail); `{action: 'next'}` with no record. */
export function srvTargets(records) {
  return JSON.parse(raw.srvTargets(toBytes(records, 'records')));
}

/** How long to use a valid well-known answer, in milliseconds, from its `Cache-Control` and
 *  `Expires` header values (`null` or `undefined` when absent), received at `nowMs` (default:
 *  `Date.now()`): `no-store` gives 5 minutes, else `max-age`, else `Expires` minus now (not a
 *  date: past), else 24 hours; at least 5 minutes, at most 48 hours. Throws `bad_argument` for
 *  header values that are not strings. */
export function wellKnownLifetime(cacheControl, expires, nowMs) {
  const header = (v, name) => {
    if (v === null || v === undefined) return undefined;
    if (typeof v !== 'string') throw mxfedError('bad_argument', `${name}: expected a string, null or undefined`);
    return v;
  };
  return raw.wellKnownLifetime(header(cacheControl, 'cacheControl'), header(expires, 'expires'), timeArg(nowMs ?? Date.now(), 'nowMs'));
}

/** Whether a server may see an event, given the `history_visibility` value in force after it
 *  (`null` or `undefined`: the room has no `m.room.history_visibility` event; unknown values
 *  count as `shared`, as Synapse) and the memberships after it of that server's users (an
 *  iterable of strings). Throws `bad_argument` for anything else. */
export function serverMaySee(historyVisibility, memberships) {
  if (historyVisibility !== null && historyVisibility !== undefined && typeof historyVisibility !== 'string') {
    throw mxfedError('bad_argument', 'historyVisibility: expected a string, null or undefined');
  }
  const notStrings = () => mxfedError('bad_argument', 'memberships: expected an iterable of strings');
  if (memberships === null || memberships === undefined || typeof memberships === 'string' || typeof memberships[Symbol.iterator] !== 'function') {
    throw notStrings();
  }
  const list = [];
  for (const m of memberships) {
    if (typeof m !== 'string') throw notStrings();
    list.push(m);
  }
  return raw.serverMaySee(historyVisibility ?? undefined, list);
}

// A batch of PDUs as the wasm side reads it: the bytes back to back, and each one's end offset.
function pduBatch(pdus) {
  if (!Array.isArray(pdus)) throw mxfedError('bad_argument', 'pdus: expected a list');
  const parts = pdus.map((p) => toBytes(p, 'pdu'));
  const ends = new Uint32Array(parts.length);
  let total = 0;
  parts.forEach((p, i) => {
    total += p.length;
    ends[i] = total;
  });
  const data = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    data.set(p, at);
    at += p.length;
  }
  return [data, ends];
}

const jsonLines = (text) => text.split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l));

function roomVersionArg(roomVersion) {
  if (typeof roomVersion !== 'string' && typeof roomVersion !== 'number') {
    throw mxfedError('bad_argument', 'roomVersion: expected a string or a number');
  }
  return String(roomVersion);
}

/** One room in memory, run through the core's receipt pipeline (format, signatures, content
 *  hash, auth against the auth events, the state before the event, soft failure against the
 *  current state): what `mxfed room replay` and `mxfed serve` run. Call `.free()` when done. */
export class Room {
  #room;

  constructor(roomVersion) {
    this.#room = new raw.Room(roomVersionArg(roomVersion));
  }

  /** The room version. */
  get roomVersion() {
    return this.#room.roomVersion;
  }

  /** Checks one PDU against `keys` and receives it (its prev and auth events received first):
   *  the verdict object, `checkPdus`'s with `verdict` one of accepted, redacted, rejected,
   *  soft_failed. A PDU that cannot be read is a rejected verdict. */
  receive(pdu, keys) {
    const bytes = toBytes(pdu, 'pdu');
    return JSON.parse(withKeyRing(keys, (ring) => this.#room.receive(bytes, ring)));
  }

  /** The verdict `receive` would give the PDU, without taking it in (the room is unchanged):
   *  whether an event would pass before it is signed or sent. */
  check(pdu, keys) {
    const bytes = toBytes(pdu, 'pdu');
    return JSON.parse(withKeyRing(keys, (ring) => this.#room.check(bytes, ring)));
  }

  /** Checks a batch (any order), orders it causally and receives each PDU: verdict objects in
   *  processing order. */
  receiveAll(pdus, keys) {
    const [data, ends] = pduBatch(pdus);
    return jsonLines(withKeyRing(keys, (ring) => this.#room.receiveAll(data, ends, ring)));
  }

  /** The current state: `[{event_id, state_key, type}]` sorted by type and state key. */
  currentState() {
    return JSON.parse(this.#room.currentState());
  }

  /** The forward extremities, sorted. */
  forwardExtremities() {
    return this.#room.forwardExtremities();
  }

  /** The state after a known event, as `currentState()`; `null` for an unknown event. */
  stateAfter(eventId) {
    if (typeof eventId !== 'string') throw mxfedError('bad_argument', 'eventId: expected a string');
    const s = this.#room.stateAfter(eventId);
    return s === undefined ? null : JSON.parse(s);
  }

  /** Whether the room has an event (accepted, soft-failed or rejected). */
  has(eventId) {
    if (typeof eventId !== 'string') throw mxfedError('bad_argument', 'eventId: expected a string');
    return this.#room.has(eventId);
  }

  /** The decision of `serverName`, resident in this room, on a join of `userId` when the join
   *  rule is restricted or knock_restricted: the local user to name in
   *  `join_authorised_via_users_server`, or `null` when no authorisation is needed. Our users
   *  are those whose ID ends in `:serverName`; `joinedTo` (a plain object or a Map) maps the
   *  allowed rooms we are in to whether `userId` is joined to each (we cannot tell about others).
   *  Throws `restricted_not_allowed`, `restricted_unable_to_authorise` or
   *  `restricted_unable_to_grant` when we cannot authorise the join. */
  restrictedJoin(userId, serverName, joinedTo = {}) {
    if (typeof userId !== 'string') throw mxfedError('bad_argument', 'userId: expected a string');
    if (typeof serverName !== 'string') throw mxfedError('bad_argument', 'serverName: expected a string');
    const notMap = () => mxfedError('bad_argument', 'joinedTo: expected an object or a Map of room ID to boolean');
    let entries;
    if (joinedTo instanceof Map) entries = [...joinedTo.entries()];
    else if (joinedTo !== null && typeof joinedTo === 'object' && !Array.isArray(joinedTo)) entries = Object.entries(joinedTo);
    else throw notMap();
    const joined = [];
    const notJoined = [];
    for (const [room, isJoined] of entries) {
      if (typeof room !== 'string' || typeof isJoined !== 'boolean') throw notMap();
      (isJoined ? joined : notJoined).push(room);
    }
    return JSON.parse(this.#room.restrictedJoin(userId, serverName, joined, notJoined)).via;
  }

  /** Frees the wasm memory of the room. */
  free() {
    this.#room.free();
  }
}

/** Replays a whole room, as `mxfed room replay`: checks every PDU (any order) against `keys`,
 *  orders them causally and runs each through the room pipeline. Returns `{verdicts, state}`:
 *  one verdict object per PDU in processing order, and the final current state as
 *  `Room.currentState()` gives it. */
export function replay(pdus, roomVersion, keys) {
  const [data, ends] = pduBatch(pdus);
  const rv = roomVersionArg(roomVersion);
  const lines = jsonLines(withKeyRing(keys, (ring) => raw.replay(data, ends, rv, ring)));
  const { state } = lines.pop();
  return { verdicts: lines, state };
}
