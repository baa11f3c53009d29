//! The conformance [`Host`] operations of the core, exported over a C ABI for plain WebAssembly
//! runtimes (wasmtime in `tests/tests/wasmtime_host.rs`): no wasm-bindgen, no imports, only
//! byte buffers in linear memory.
//!
//! Each operation is the core host ([`CoreHost`]) itself, so what this proves is that the
//! core compiled to `wasm32-unknown-unknown` gives the bytes the native build gives.
//!
//! # The ABI
//! - `mxfed_alloc(len) -> ptr` and `mxfed_free(ptr, len)` manage buffers in the module's memory.
//! - `mxfed_<op>(args_ptr, args_len) -> result_ptr`, one per [`Host`] method: the arguments are
//!   the method's parameters in order, each a field `[len: u32 LE][bytes]` (`len = u32::MAX`
//!   is `None`; a list is one field holding its items as fields; numbers are decimal text).
//!   The result is `[status: u32 LE][len: u32 LE][bytes]` — status 0 ok (bytes = output), 1
//!   error (bytes = the error code), 2 unsupported — and the caller frees it with
//!   `mxfed_free(result_ptr, 8 + len)`.
//!
//! Adding an operation: one line in the `ops!` invocation below and one method in the runtime's
//! `Host` impl.
//!
//! # Unsafe
//! The core forbids `unsafe`; this crate needs it for exactly two things, both at the boundary:
//! reading an argument buffer the caller wrote through a raw pointer, and giving back / taking
//! back ownership of buffers it allocated. Every buffer crossing the boundary is a
//! `Box<[u8]>`, so `ptr`/`len` always describe one whole allocation.

use mxfed_conformance::{CoreHost, Host, Outcome};

/// Allocates `len` bytes for the caller to write arguments into.
#[no_mangle]
pub extern "C" fn mxfed_alloc(len: usize) -> *mut u8 {
    Box::into_raw(vec![0u8; len].into_boxed_slice()).cast::<u8>()
}

/// Frees a buffer from [`mxfed_alloc`] or a result.
///
/// # Safety
/// `ptr` and `len` must be exactly those of one live buffer this module handed out.
#[no_mangle]
pub unsafe extern "C" fn mxfed_free(ptr: *mut u8, len: usize) {
    if !ptr.is_null() {
        // SAFETY: the caller passes back a (pointer, length) this module created from a
        // Box<[u8]> of that length, once.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
    }
}

/// Reads length-prefixed fields.
struct Args<'a> {
    buf: &'a [u8],
}

impl<'a> Args<'a> {
    fn field(&mut self) -> Option<&'a [u8]> {
        let (len, rest) = self.buf.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len);
        if len == u32::MAX {
            self.buf = rest;
            return None;
        }
        let len = usize::try_from(len).ok()?;
        let (field, rest) = (rest.get(..len)?, rest.get(len..)?);
        self.buf = rest;
        Some(field)
    }
    fn bytes(&mut self) -> &'a [u8] {
        self.field().unwrap_or_default()
    }
    fn opt(&mut self) -> Option<&'a [u8]> {
        self.field()
    }
    fn str(&mut self) -> &'a str {
        std::str::from_utf8(self.bytes()).unwrap_or_default()
    }
    fn u64(&mut self) -> u64 {
        self.str().parse().unwrap_or_default()
    }
    fn list(&mut self) -> Vec<Vec<u8>> {
        let mut inner = Args { buf: self.bytes() };
        let mut out = Vec::new();
        while !inner.buf.is_empty() {
            out.push(inner.bytes().to_vec());
        }
        out
    }
    fn strings(&mut self) -> Vec<String> {
        self.list()
            .into_iter()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect()
    }
}

fn result(status: u32, bytes: &[u8]) -> *mut u8 {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(8 + bytes.len());
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    Box::into_raw(out.into_boxed_slice()).cast::<u8>()
}

fn outcome(o: Option<Outcome>) -> *mut u8 {
    match o {
        Some(Ok(b)) => result(0, &b),
        Some(Err(code)) => result(1, code.as_bytes()),
        None => result(2, b""),
    }
}

/// # Safety
/// `ptr` must point to `len` readable bytes (or `len` be 0).
unsafe fn args<'a>(ptr: *const u8, len: usize) -> Args<'a> {
    let buf = if ptr.is_null() || len == 0 {
        &[][..]
    } else {
        // SAFETY: the caller wrote `len` bytes at `ptr`, in a buffer from `mxfed_alloc`, and
        // does not touch it until this call returns.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    };
    Args { buf }
}

macro_rules! ops {
    ($($name:ident => |$a:ident| $call:expr;)*) => {$(
        /// A `Host` operation over the ABI (see the crate docs).
        ///
        /// # Safety
        /// `ptr` must point to `len` readable bytes of encoded arguments.
        #[no_mangle]
        pub unsafe extern "C" fn $name(ptr: *const u8, len: usize) -> *mut u8 {
            // SAFETY: forwarded from this function's own contract.
            let mut $a = unsafe { args(ptr, len) };
            outcome($call)
        }
    )*};
}

ops! {
    mxfed_canonical_json => |a| Some(CoreHost.canonical_json(a.bytes()));
    mxfed_sign_json => |a| Some(CoreHost.sign_json(a.str(), a.str(), a.str(), a.bytes()));
    mxfed_verify_json => |a| Some(CoreHost.verify_json(a.str(), a.str(), a.str(), a.bytes()));
    mxfed_public_key => |a| Some(CoreHost.public_key(a.str()));
    mxfed_content_hash => |a| Some(CoreHost.content_hash(a.str(), a.bytes()));
    mxfed_reference_hash => |a| Some(CoreHost.reference_hash(a.str(), a.bytes()));
    mxfed_event_id => |a| Some(CoreHost.event_id(a.str(), a.bytes()));
    mxfed_room_id => |a| Some(CoreHost.room_id(a.str(), a.bytes()));
    mxfed_redact => |a| Some(CoreHost.redact(a.str(), a.bytes()));
    mxfed_hash_and_sign_event => |a| Some(CoreHost.hash_and_sign_event(a.str(), a.str(), a.str(), a.str(), a.bytes()));
    mxfed_check_pdus => |a| Some(CoreHost.check_pdus(a.str(), &a.list(), a.bytes()));
    mxfed_sign_request => |a| Some(CoreHost.sign_request(a.str(), a.str(), a.str(), a.str(), a.str(), a.str(), a.opt()));
    mxfed_verify_request => |a| Some(CoreHost.verify_request(a.str(), &a.list(), a.str(), a.str(), a.opt(), &a.strings(), a.u64()));
    mxfed_server_keys => |a| Some(CoreHost.server_keys(a.str(), a.str(), a.str(), a.u64()));
    mxfed_base64_encode => |a| CoreHost.base64_encode(a.bytes());
    mxfed_server_acl_allows => |a| CoreHost.server_acl_allows(a.bytes(), a.str());
    mxfed_discovery_plan => |a| CoreHost.discovery_plan(a.str(), a.opt());
    mxfed_pick_srv => |a| CoreHost.pick_srv(a.bytes());
    mxfed_srv_targets => |a| CoreHost.srv_targets(a.bytes());
    mxfed_well_known_lifetime => |a| {
        let (cc, exp, now) = (a.opt(), a.opt(), a.u64());
        let cc = cc.map(|b| std::str::from_utf8(b).unwrap_or_default());
        let exp = exp.map(|b| std::str::from_utf8(b).unwrap_or_default());
        CoreHost.well_known_lifetime(cc, exp, now)
    };
    mxfed_is_canonical_json => |a| CoreHost.is_canonical_json(a.bytes());
    mxfed_server_may_see => |a| {
        let visibility = a.opt().map(|v| std::str::from_utf8(v).unwrap_or_default());
        let memberships = a.strings();
        let memberships: Vec<&str> = memberships.iter().map(String::as_str).collect();
        CoreHost.server_may_see(visibility, &memberships)
    };
    mxfed_room_replay => |a| CoreHost.room_replay(a.str(), &a.list(), a.bytes());
    mxfed_restricted_join => |a| {
        let (rv, keys, pdus, user, server) = (a.str(), a.list(), a.bytes(), a.str(), a.str());
        // joined_to: the rooms, then "true"/"false" for each.
        let (rooms, flags) = (a.strings(), a.strings());
        let joined_to: Vec<(&str, bool)> = rooms
            .iter()
            .zip(&flags)
            .map(|(r, f)| (r.as_str(), f == "true"))
            .collect();
        CoreHost.restricted_join(rv, &keys, pdus, user, server, &joined_to)
    };
    mxfed_membership_from_template => |a| CoreHost.membership_from_template(a.str(), a.str(), a.bytes(), a.bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(out: &mut Vec<u8>, b: Option<&[u8]>) {
        match b {
            None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
            Some(b) => {
                out.extend_from_slice(&u32::try_from(b.len()).unwrap().to_le_bytes());
                out.extend_from_slice(b);
            }
        }
    }

    fn call(f: unsafe extern "C" fn(*const u8, usize) -> *mut u8, args: &[u8]) -> (u32, Vec<u8>) {
        let p = mxfed_alloc(args.len());
        unsafe {
            std::ptr::copy_nonoverlapping(args.as_ptr(), p, args.len());
            let r = f(p, args.len());
            mxfed_free(p, args.len());
            let head = std::slice::from_raw_parts(r, 8);
            let status = u32::from_le_bytes(head[..4].try_into().unwrap());
            let len = u32::from_le_bytes(head[4..].try_into().unwrap()) as usize;
            let body = std::slice::from_raw_parts(r.add(8), len).to_vec();
            mxfed_free(r, 8 + len);
            (status, body)
        }
    }

    #[test]
    fn abi_round_trip() {
        let mut a = Vec::new();
        field(&mut a, Some(br#"{"b":1,"a":1e2}"#));
        assert_eq!(
            call(mxfed_canonical_json, &a),
            (0, br#"{"a":100,"b":1}"#.to_vec())
        );
        let mut a = Vec::new();
        field(&mut a, Some(b"{"));
        assert_eq!(call(mxfed_canonical_json, &a).0, 1);
        let mut inner = Vec::new();
        field(&mut inner, Some(b"x"));
        field(&mut inner, None);
        let mut args = Args { buf: &inner };
        assert_eq!((args.opt(), args.opt()), (Some(&b"x"[..]), None));
    }
}
