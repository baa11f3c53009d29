//! The whole vectors corpus through the core compiled to `wasm32-unknown-unknown`, run by
//! wasmtime: the cross-host conformance runner for plain WebAssembly runtimes.
//!
//! The module is `tests/wasm-abi` (the core host's operations over a C ABI of byte buffers),
//! built by `host-wasm/build.sh`. Its path comes from `MXFED_WASM_ABI` (set by
//! `scripts/test.d/30-wasm.sh`), else `host-wasm/target/mxfed_wasm_abi.wasm`. Missing module:
//! the test fails when `CI` is set and skips with a note otherwise. It is `#[ignore]`d in the
//! workspace-wide `cargo test`, which runs before the wasm stage has built the module; the wasm
//! stage runs it with `--include-ignored`.
//!
//! Adding another runtime (wasmer, wasmi, a browser engine…) means implementing [`AbiCall`] for
//! it: [`AbiHost`] turns any of them into a conformance [`Host`].

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Mutex;

use mxfed_conformance::{Host, Outcome};

/// One runtime's way to call an exported ABI function: `args` in, `(status, bytes)` out.
trait AbiCall {
    fn call(&mut self, export: &str, args: &[u8]) -> (u32, Vec<u8>);
}

/// Argument encoding of the ABI (see `tests/wasm-abi/src/lib.rs`).
#[derive(Default)]
struct ArgsBuf(Vec<u8>);

impl ArgsBuf {
    fn bytes(mut self, b: &[u8]) -> Self {
        self.0
            .extend_from_slice(&u32::try_from(b.len()).unwrap().to_le_bytes());
        self.0.extend_from_slice(b);
        self
    }
    fn s(self, s: &str) -> Self {
        self.bytes(s.as_bytes())
    }
    fn opt(mut self, b: Option<&[u8]>) -> Self {
        match b {
            Some(b) => self.bytes(b),
            None => {
                self.0.extend_from_slice(&u32::MAX.to_le_bytes());
                self
            }
        }
    }
    fn list<T: AsRef<[u8]>>(self, items: &[T]) -> Self {
        let inner = items
            .iter()
            .fold(ArgsBuf::default(), |a, i| a.bytes(i.as_ref()));
        self.bytes(&inner.0)
    }
}

/// A conformance host over any [`AbiCall`] runtime.
struct AbiHost<R> {
    name: String,
    rt: Mutex<R>,
}

impl<R: AbiCall> AbiHost<R> {
    fn call(&self, op: &str, args: ArgsBuf) -> Option<Outcome> {
        let mut rt = self.rt.lock().unwrap_or_else(|e| e.into_inner());
        let (status, bytes) = rt.call(&format!("mxfed_{op}"), &args.0);
        match status {
            0 => Some(Ok(bytes)),
            1 => Some(Err(String::from_utf8_lossy(&bytes).into_owned())),
            _ => None,
        }
    }
    fn must(&self, op: &str, args: ArgsBuf) -> Outcome {
        self.call(op, args)
            .unwrap_or_else(|| Err(format!("{op} unsupported")))
    }
}

fn a() -> ArgsBuf {
    ArgsBuf::default()
}

impl<R: AbiCall> Host for AbiHost<R> {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn canonical_json(&self, input: &[u8]) -> Outcome {
        self.must("canonical_json", a().bytes(input))
    }
    fn sign_json(&self, seed: &str, version: &str, server: &str, input: &[u8]) -> Outcome {
        self.must("sign_json", a().s(seed).s(version).s(server).bytes(input))
    }
    fn verify_json(&self, server: &str, key_id: &str, public: &str, input: &[u8]) -> Outcome {
        self.must(
            "verify_json",
            a().s(server).s(key_id).s(public).bytes(input),
        )
    }
    fn public_key(&self, seed: &str) -> Outcome {
        self.must("public_key", a().s(seed))
    }
    fn content_hash(&self, rv: &str, ev: &[u8]) -> Outcome {
        self.must("content_hash", a().s(rv).bytes(ev))
    }
    fn reference_hash(&self, rv: &str, ev: &[u8]) -> Outcome {
        self.must("reference_hash", a().s(rv).bytes(ev))
    }
    fn event_id(&self, rv: &str, ev: &[u8]) -> Outcome {
        self.must("event_id", a().s(rv).bytes(ev))
    }
    fn room_id(&self, rv: &str, ev: &[u8]) -> Outcome {
        self.must("room_id", a().s(rv).bytes(ev))
    }
    fn redact(&self, rv: &str, ev: &[u8]) -> Outcome {
        self.must("redact", a().s(rv).bytes(ev))
    }
    fn hash_and_sign_event(
        &self,
        rv: &str,
        seed: &str,
        version: &str,
        server: &str,
        ev: &[u8],
    ) -> Outcome {
        self.must(
            "hash_and_sign_event",
            a().s(rv).s(seed).s(version).s(server).bytes(ev),
        )
    }
    fn check_pdus(&self, rv: &str, keys: &[Vec<u8>], pdus: &[u8]) -> Outcome {
        self.must("check_pdus", a().s(rv).list(keys).bytes(pdus))
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
        self.must(
            "sign_request",
            a().s(seed)
                .s(version)
                .s(origin)
                .s(destination)
                .s(method)
                .s(uri)
                .opt(content),
        )
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
        self.must(
            "verify_request",
            a().s(destination)
                .list(keys)
                .s(method)
                .s(uri)
                .opt(content)
                .list(headers)
                .s(&now_ms.to_string()),
        )
    }
    fn server_keys(&self, seed: &str, version: &str, server: &str, valid_until_ts: u64) -> Outcome {
        self.must(
            "server_keys",
            a().s(seed)
                .s(version)
                .s(server)
                .s(&valid_until_ts.to_string()),
        )
    }
    fn base64_encode(&self, bytes: &[u8]) -> Option<Outcome> {
        self.call("base64_encode", a().bytes(bytes))
    }
    fn server_acl_allows(&self, content: &[u8], server_name: &str) -> Option<Outcome> {
        self.call("server_acl_allows", a().bytes(content).s(server_name))
    }
    fn discovery_plan(&self, server_name: &str, well_known: Option<&[u8]>) -> Option<Outcome> {
        self.call("discovery_plan", a().s(server_name).opt(well_known))
    }
    fn pick_srv(&self, records: &[u8]) -> Option<Outcome> {
        self.call("pick_srv", a().bytes(records))
    }
    fn srv_targets(&self, records: &[u8]) -> Option<Outcome> {
        self.call("srv_targets", a().bytes(records))
    }
    fn well_known_lifetime(
        &self,
        cache_control: Option<&str>,
        expires: Option<&str>,
        now_ms: u64,
    ) -> Option<Outcome> {
        self.call(
            "well_known_lifetime",
            a().opt(cache_control.map(str::as_bytes))
                .opt(expires.map(str::as_bytes))
                .s(&now_ms.to_string()),
        )
    }
    fn is_canonical_json(&self, input: &[u8]) -> Option<Outcome> {
        self.call("is_canonical_json", a().bytes(input))
    }
    fn server_may_see(&self, visibility: Option<&str>, memberships: &[&str]) -> Option<Outcome> {
        self.call(
            "server_may_see",
            a().opt(visibility.map(str::as_bytes)).list(memberships),
        )
    }
    fn room_replay(&self, rv: &str, keys: &[Vec<u8>], pdus: &[u8]) -> Option<Outcome> {
        self.call("room_replay", a().s(rv).list(keys).bytes(pdus))
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
        let rooms: Vec<&str> = joined_to.iter().map(|(r, _)| *r).collect();
        let flags: Vec<&str> = joined_to
            .iter()
            .map(|(_, j)| if *j { "true" } else { "false" })
            .collect();
        self.call(
            "restricted_join",
            a().s(rv)
                .list(keys)
                .bytes(pdus)
                .s(user_id)
                .s(server_name)
                .list(&rooms)
                .list(&flags),
        )
    }
    fn membership_from_template(
        &self,
        seed: &str,
        version: &str,
        answer: &[u8],
        request: &[u8],
    ) -> Option<Outcome> {
        self.call(
            "membership_from_template",
            a().s(seed).s(version).bytes(answer).bytes(request),
        )
    }
}

/// The module in wasmtime.
struct Wasmtime {
    store: wasmtime::Store<()>,
    instance: wasmtime::Instance,
    memory: wasmtime::Memory,
    alloc: wasmtime::TypedFunc<u32, u32>,
    free: wasmtime::TypedFunc<(u32, u32), ()>,
}

impl Wasmtime {
    fn load(path: &std::path::Path) -> Wasmtime {
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::from_file(&engine, path).unwrap();
        // The core is sans-io: the module needs nothing from its host.
        let imports: Vec<String> = module
            .imports()
            .map(|i| format!("{}::{}", i.module(), i.name()))
            .collect();
        assert!(imports.is_empty(), "the core module imports {imports:?}");
        let mut store = wasmtime::Store::new(&engine, ());
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let memory = instance.get_memory(&mut store, "memory").unwrap();
        let alloc = instance.get_typed_func(&mut store, "mxfed_alloc").unwrap();
        let free = instance.get_typed_func(&mut store, "mxfed_free").unwrap();
        Wasmtime {
            store,
            instance,
            memory,
            alloc,
            free,
        }
    }
}

impl AbiCall for Wasmtime {
    fn call(&mut self, export: &str, args: &[u8]) -> (u32, Vec<u8>) {
        let f = self
            .instance
            .get_typed_func::<(u32, u32), u32>(&mut self.store, export)
            .unwrap_or_else(|e| panic!("{export}: {e}"));
        let len = u32::try_from(args.len()).unwrap();
        let p = self.alloc.call(&mut self.store, len).unwrap();
        self.memory
            .write(&mut self.store, p as usize, args)
            .unwrap();
        let r = f.call(&mut self.store, (p, len)).unwrap();
        self.free.call(&mut self.store, (p, len)).unwrap();
        let mut head = [0u8; 8];
        self.memory
            .read(&self.store, r as usize, &mut head)
            .unwrap();
        let status = u32::from_le_bytes(head[..4].try_into().unwrap());
        let n = u32::from_le_bytes(head[4..].try_into().unwrap());
        let mut out = vec![0u8; n as usize];
        self.memory
            .read(&self.store, r as usize + 8, &mut out)
            .unwrap();
        self.free.call(&mut self.store, (r, 8 + n)).unwrap();
        (status, out)
    }
}

fn module_path() -> Option<PathBuf> {
    let path = std::env::var_os("MXFED_WASM_ABI").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../host-wasm/target/mxfed_wasm_abi.wasm")
        },
        PathBuf::from,
    );
    if path.is_file() {
        return Some(path);
    }
    let msg = format!(
        "wasmtime_host: the C-ABI module {} is missing: run host-wasm/build.sh \
         (scripts/test.d/30-wasm.sh does)",
        path.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{msg}");
    eprintln!("\n!!! SKIPPED: {msg}\n");
    None
}

#[test]
#[ignore = "needs the wasm32 module from host-wasm/build.sh; scripts/test.d/30-wasm.sh runs it"]
fn wasmtime_reproduces_every_vector() {
    let Some(path) = module_path() else { return };
    let host = AbiHost {
        name: "wasmtime".into(),
        rt: Mutex::new(Wasmtime::load(&path)),
    };
    mxfed_conformance::run_all(&host).assert_ok("wasmtime", 1000);
}
