// Types of the mxfed-wasm package (the same for every entry: node, workerd, web).

/** JSON input: JSON text, UTF-8 bytes, or a plain object (JSON.stringify'd unsorted and
 *  canonicalised in Rust). */
export type JsonInput = string | Uint8Array | ArrayBuffer | ArrayBufferView | object;

/** Synapse `signing.key` text, or keys loaded once with `loadSigningKeys`. */
export type SigningKeyInput = string | Uint8Array | SigningKeys;

/** Verification keys: a KeyRing, a KeyCache, or `/_matrix/key/v2/server` responses. */
export type KeysInput = KeyRing | KeyCache | JsonInput[];

/** Room versions "1" … "12". */
export type RoomVersionId = string | number;

/** An error thrown by mxfed. `code` is the core's stable code, the same in every host. */
export interface MxfedError extends Error {
  name: 'MxfedError';
  code: string;
  /** HTTP status a server answers with (request authentication and transaction errors). */
  status?: number;
  /** Matrix errcode a server answers with. */
  errcode?: string;
}

export function isMxfedError(e: unknown): e is MxfedError;

/** One PDU's verdict, exactly as `mxfed event check` prints it. */
export interface PduVerdict {
  event_id: string | null;
  signatures: Record<string, Record<string, string>>;
  content_hash: 'ok' | 'mismatch' | null;
  verdict: 'accepted' | 'redacted' | 'rejected';
  reason?: string;
  error?: string;
}

export interface ParsedTransaction {
  origin: string;
  origin_server_ts: number;
  /** PDUs with a room_id. Numbers of room v1-5 PDUs pass through JSON.parse: floats and
   *  integers beyond 2^53 lose their exact text here (the core keeps it). */
  pdus: Record<string, unknown>[];
  edus: Record<string, unknown>[];
  /** Items left out, with the JSON pointer of each (`/pdus/3`). */
  rejected: { item: string; code: string; error: string }[];
}

export class SigningKeys {
  constructor(text: string);
  static generateLine(entropy: Uint8Array): string;
  publicKeysJson(): string;
  keyIds(): string[];
  toSynapse(): string;
  free(): void;
}

export class KeyRing {
  constructor();
  /** Adds a self-signed /_matrix/key/v2/server response. */
  add(response: Uint8Array): void;
  free(): void;
}

/** The core's key cache: verified responses and when to (re)fetch. */
export class KeyCache {
  constructor();
  insert(response: Uint8Array, expectedServer: string | undefined, fetchedAt: number): string;
  insertNotaryAnswer(response: Uint8Array, notary: string, notaryKeys: Uint8Array, fetchedAt: number): string;
  static notaryQuery(server: string): string;
  fetchForRequest(server: string, keyIds: string[], now: number): string | undefined;
  response(server: string): string | undefined;
  keyRing(): KeyRing;
  free(): void;
}

/** The edge worker's request checks (see host-wasm/src/edge.rs). */
export class EdgeRequest {
  constructor(method: string, uri: string, destination: string, authorization?: string | null, body?: Uint8Array | null);
  keyFetch(cache: KeyCache, now: number): string | undefined;
  authenticate(cache: KeyCache, now: number): string;
  beginTransaction(): string[];
  pduKeyFetches(cache: KeyCache, versions: Uint8Array): string;
  filter(cache: KeyCache, versions: Uint8Array, forwardUnknown: boolean): string;
  forwardKind(): 'original' | 'rewritten' | 'nothing';
  forwardBody(): Uint8Array | undefined;
  mergeResponse(origin?: Uint8Array | null): Uint8Array;
  free(): void;
}

export function edgeRoute(method: string, path: string): 'well_known' | 'server_keys' | 'open' | 'federation' | 'send' | 'passthrough';

export function loadSigningKeys(text: string | Uint8Array): SigningKeys;
export function generateSigningKey(): string;
export function publicKeys(keys: SigningKeyInput): Record<string, string>;

export function canonicalJson(input: JsonInput): string;
/** Whether the bytes are canonical JSON already (what `canonicalJson` writes for their value). */
export function isCanonicalJson(bytes: Uint8Array): boolean;
export function signJson(object: JsonInput, serverName: string, keys: SigningKeyInput): string;
export function verifyJson(object: JsonInput, serverName: string, verifyKeys: JsonInput): string[];
export function contentHash(event: JsonInput, roomVersion: RoomVersionId): string;
export function referenceHash(event: JsonInput, roomVersion: RoomVersionId): string;
export function eventId(event: JsonInput, roomVersion: RoomVersionId): string;
export function roomId(event: JsonInput, roomVersion: RoomVersionId): string;
export function redact(event: JsonInput, roomVersion: RoomVersionId): string;
export function hashAndSignEvent(event: JsonInput, roomVersion: RoomVersionId, serverName: string, keys: SigningKeyInput): string;
export function checkPdus(pdus: JsonInput[], roomVersion: RoomVersionId, keys: KeysInput): PduVerdict[];

/** What `membershipFromTemplate` asks for and adds. */
export interface MembershipRequest {
  roomId: string;
  userId: string;
  membership: 'join' | 'leave' | 'knock';
  /** Our server name: the event's origin and signer. */
  origin: string;
  /** Content keys to add where the template has none (a display name). */
  content?: JsonInput | null;
  /** origin_server_ts in ms (default Date.now()). */
  now?: number;
  /** Room versions 1-2: the event ID's local part (default: random). */
  eventIdLocalpart?: string | null;
}
/** Our signed membership event from a `make_*` answer; `event` is canonical JSON text. */
export function membershipFromTemplate(
  answer: JsonInput,
  request: MembershipRequest,
  keys: SigningKeyInput,
): { eventId: string; roomVersion: string; event: string };

export interface RequestToSign {
  method: string;
  uri: string;
  origin: string;
  destination: string;
  content?: JsonInput | null;
}
export function signRequest(request: RequestToSign, keys: SigningKeyInput): string[];

export interface RequestToVerify {
  method: string;
  uri: string;
  destination: string;
  content?: JsonInput | null;
  authorization: string | string[];
}
export function verifyRequest(request: RequestToVerify, keys: KeysInput, now?: number): { origin: string; verified: string[] };

export function serverKeys(serverName: string, keys: SigningKeyInput, validUntilTs: number): string;
export function parseTransaction(body: JsonInput): ParsedTransaction;
export function encodeBase64(data: string | Uint8Array | ArrayBuffer | ArrayBufferView): string;
export function decodeBase64(text: string): Uint8Array;

/** The next step of server discovery (`discoveryPlan`). */
export type DiscoveryPlan =
  | { action: 'connect'; host: string; port: number }
  | { action: 'well_known'; url: string }
  | { action: 'srv'; host: string; srv_names: string[] }
  | { action: 'unusable'; reason: 'port_out_of_range' };

/** An SRV record as the resolver answered it. */
export interface SrvRecord {
  priority: number;
  weight: number;
  port: number;
  target: string;
}

export function serverAclAllows(content: JsonInput, serverName: string): boolean;
export function discoveryPlan(serverName: string, wellKnown?: JsonInput | null): DiscoveryPlan;
export function pickSrv(records: SrvRecord[] | JsonInput): { host: string; port: number } | null;
export function srvTargets(
  records: SrvRecord[] | JsonInput,
): { action: 'connect'; targets: { host: string; port: number }[] } | { action: 'unavailable' } | { action: 'next' };
export function wellKnownLifetime(cacheControl?: string | null, expires?: string | null, nowMs?: number): number;
export function serverMaySee(historyVisibility: string | null | undefined, memberships: Iterable<string>): boolean;

/** One PDU's verdict in a room: `PduVerdict` with the room pipeline's verdicts. */
export interface RoomVerdict extends Omit<PduVerdict, 'verdict'> {
  verdict: 'accepted' | 'redacted' | 'rejected' | 'soft_failed';
}

/** One state entry. */
export interface StateEntry {
  event_id: string;
  state_key: string;
  type: string;
}

/** One room in memory, run through the core's receipt pipeline. Call `free()` when done. */
export class Room {
  constructor(roomVersion: RoomVersionId);
  readonly roomVersion: string;
  receive(pdu: JsonInput, keys: KeysInput): RoomVerdict;
  /** The verdict `receive` would give, without taking the PDU in. */
  check(pdu: JsonInput, keys: KeysInput): RoomVerdict;
  receiveAll(pdus: JsonInput[], keys: KeysInput): RoomVerdict[];
  currentState(): StateEntry[];
  forwardExtremities(): string[];
  stateAfter(eventId: string): StateEntry[] | null;
  has(eventId: string): boolean;
  /** The local user to name in join_authorised_via_users_server, or null when no
   *  authorisation is needed; throws `restricted_*` when we cannot authorise the join. */
  restrictedJoin(
    userId: string,
    serverName: string,
    joinedTo?: Record<string, boolean> | Map<string, boolean>,
  ): string | null;
  free(): void;
}

export function replay(
  pdus: JsonInput[],
  roomVersion: RoomVersionId,
  keys: KeysInput,
): { verdicts: RoomVerdict[]; state: StateEntry[] };
