// The benchmark operations, shared by Node (bench.mjs) and workerd (bench-worker.js); the same
// inputs as host-wasm/examples/native_bench.rs.
const KEY = 'ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1';

export function event(i) {
  return `{"type":"m.room.message","room_id":"!bench:domain","sender":"@alice:domain","content":{"msgtype":"m.text","body":"benchmark message ${i} ${'lorem ipsum '.repeat(16)}"},"origin_server_ts":1700000000000,"depth":${i + 1},"prev_events":["$prev"],"auth_events":["$a1","$a2","$a3"]}`;
}

export function setup(m) {
  const enc = new TextEncoder();
  const keys = m.loadSigningKeys(KEY);
  const pk = enc.encode(keys.publicKeysJson());
  const ev = enc.encode(event(0));
  const signed = enc.encode(m.hashAndSignEvent(ev, '10', 'domain', keys));
  const signedObj = enc.encode(m.signJson(ev, 'domain', keys));
  const ring = new m.KeyRing();
  ring.add(enc.encode(m.serverKeys('domain', keys, 2 ** 42)));
  const batch = [];
  for (let i = 0; i < 100; i++) batch.push(enc.encode(m.hashAndSignEvent(event(i), '10', 'domain', keys)));
  return {
    canonicalise: () => m.canonicalJson(ev),
    sign: () => m.hashAndSignEvent(ev, '10', 'domain', keys),
    verify: () => m.verifyJson(signedObj, 'domain', pk),
    pdu_check: () => m.checkPdus([signed], '10', ring),
    batch_check: () => m.checkPdus(batch, '10', ring),
  };
}
