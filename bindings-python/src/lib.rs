//! `mxfed._core`: the native module under the `mxfed` Python package.
//!
//! What it does: exposes mxfed-core's operations with the names every host uses (canonical JSON,
//! JSON signing and verification, content and reference hashes, event IDs, redaction, event
//! hashing-and-signing, batch PDU checks, X-Matrix request signing and verification, server key
//! responses, transactions, server ACLs, server discovery, history visibility, rooms: the receipt
//! pipeline, replay and restricted joins) and Synapse-compatible signing keys,
//! converting Python objects to and from the core's canonical values and core errors to
//! `mxfed.MxfedError` subclasses.
//!
//! What it deliberately does not do: any protocol logic. Every decision is the core's; this crate
//! converts (Python in → core call → Python out) and owns only what a host owns: files
//! (`signing.key`), the OS random source for new keys, the clock when no `now` is given.
//! The Python package around it (`bindings-python/python/mxfed/`) adds the drop-in
//! `signedjson`/`canonicaljson` layers and the federation client.
//!
//! Inputs: a `dict` (converted directly, see [`convert`]) or JSON text as `bytes`/`str` wherever
//! an object is expected; outputs are `dict`s, or `bytes` for canonical JSON.
//!
//! ```python
//! import mxfed
//! key = mxfed.SigningKey.from_seed("1", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
//! signed = mxfed.sign_json({"one": 1}, "domain", key)
//! assert mxfed.verify_json(signed, "domain", {"ed25519:1": key.verify_key}) == ["ed25519:1"]
//! ```

mod convert;
mod error;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

use pyo3::exceptions::{PyKeyError, PyOSError, PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyMemoryView, PyString};

use mxfed_core::acl::ServerAcl;
use mxfed_core::canonical::{self, Int, Object, ParseOptions, Value};
use mxfed_core::keys::{KeyId, SigningKey, VerifyKey};
use mxfed_core::server_keys::{build_server_keys, KeyRing, ServerKeys};
use mxfed_core::{
    base64, discovery, event, identifiers, pdu, room, signing, transaction, xmatrix, RoomVersion,
    Timestamp,
};

use convert::{
    object_to_py, to_object, to_object_nested, to_value, to_value_compat, to_value_nested, Numbers,
};
use error::{coded, MxfedError, OrRaise, SigningKeyError};

// ------------------------------------------------------------------------------------ inputs

/// A `str` argument. A Python `str` may hold a lone surrogate, which is not Unicode (no name,
/// ID, version or header can hold one): that is `MxfedError` `bad_argument`, not the
/// `UnicodeEncodeError` a `&str` argument gives. Anything but a `str` is still a `TypeError`.
struct Text(String);

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for Text {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Text> {
        let s = obj.cast::<PyString>()?;
        match s.to_cow() {
            Ok(text) => Ok(Text(text.into_owned())),
            Err(_) => Err(coded::<MxfedError>(
                "bad_argument",
                "a str argument holds a lone surrogate (not valid Unicode)",
            )),
        }
    }
}

/// A fixed-size integer argument (milliseconds, a thread count). One out of the type's range
/// (negative, or 2^64 and more) is `MxfedError` `bad_argument`, not `OverflowError`; anything
/// but an integer is still a `TypeError`.
struct Num<T>(T);

impl<'a, 'py, T: FromPyObject<'a, 'py, Error = PyErr>> FromPyObject<'a, 'py> for Num<T> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Num<T>> {
        T::extract(obj).map(Num).map_err(|e| {
            if e.is_instance_of::<PyOverflowError>(obj.py()) {
                coded::<MxfedError>(
                    "bad_argument",
                    format!("integer argument out of range ({})", e.value(obj.py())),
                )
            } else {
                e
            }
        })
    }
}

/// A timestamp or other integer that goes into canonical JSON: outside ±(2^53 − 1), even past
/// what an `i64` holds, is `json_integer_out_of_range` (as it is in a JSON value).
fn canonical_int(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<Int> {
    let out_of_range = || {
        coded::<error::CanonicalJsonError>(
            "json_integer_out_of_range",
            format!("{field} outside canonical range ±(2^53-1)"),
        )
    };
    match obj.extract::<i64>() {
        Ok(ms) => Int::new(ms).ok_or_else(out_of_range),
        Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => Err(out_of_range()),
        Err(e) => Err(e),
    }
}

/// The bytes of a bytes-like argument (`bytes`, `bytearray`, `memoryview`), if it is one.
fn as_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Option<Vec<u8>>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Some(b.as_bytes().to_vec()));
    }
    if obj.is_instance_of::<PyByteArray>() || obj.is_instance_of::<PyMemoryView>() {
        let b = obj
            .call_method0("__bytes__")
            .or_else(|_| obj.py().get_type::<PyBytes>().call1((obj,)))?;
        return Ok(Some(b.cast::<PyBytes>()?.as_bytes().to_vec()));
    }
    Ok(None)
}

/// JSON text given as `bytes`-like or `str`.
fn as_text(obj: &Bound<'_, PyAny>) -> PyResult<Option<Vec<u8>>> {
    if let Some(b) = as_bytes(obj)? {
        return Ok(Some(b));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        let s = s.to_cow().map_err(|_| {
            coded::<error::CanonicalJsonError>(
                "json_lone_surrogate",
                "string holds a lone surrogate (not valid Unicode)",
            )
        })?;
        return Ok(Some(s.as_bytes().to_vec()));
    }
    Ok(None)
}

fn room_version(id: &str) -> PyResult<&'static RoomVersion> {
    RoomVersion::get(id).or_raise()
}

fn numbers_for(v: &RoomVersion) -> Numbers {
    if v.strict_canonical_json {
        Numbers::Strict
    } else {
        Numbers::Legacy
    }
}

/// An event: JSON text parsed with the room version's number rules, or a dict converted with them.
fn event_arg(obj: &Bound<'_, PyAny>, v: &RoomVersion) -> PyResult<Object> {
    match as_text(obj)? {
        Some(bytes) => pdu::parse_pdu(&bytes, v).or_raise(),
        None => match convert::try_object(obj, numbers_for(v), canonical::DEFAULT_MAX_DEPTH) {
            Ok(o) => Ok(o),
            // A float or big integer under `unsigned`, which is neither hashed nor signed: the
            // core's `parse_pdu` decides on such an event's bytes (it reduces `unsigned` first),
            // so the dict is judged, and comes out, exactly as its JSON text would.
            Err(f) if f.is_number_under("unsigned") => {
                let o = to_object(obj, Numbers::Legacy)?;
                let mut bytes = Vec::with_capacity(2048);
                canonical::encode_object_into(&o, &mut bytes);
                pdu::parse_pdu(&bytes, v).or_raise()
            }
            Err(f) => Err(f.into_py_err()),
        },
    }
}

/// A JSON object to sign or verify: text parsed as `mxfed canonical` does (numbers normalised).
fn object_arg(obj: &Bound<'_, PyAny>) -> PyResult<Object> {
    match as_text(obj)? {
        Some(bytes) => canonical::parse_object(&bytes, &ParseOptions::NORMALIZE).or_raise(),
        None => to_object(obj, Numbers::Strict),
    }
}

/// One signing key or a sequence of them.
fn signing_keys(obj: &Bound<'_, PyAny>) -> PyResult<Vec<SigningKey>> {
    if let Ok(k) = obj.cast::<PySigningKey>() {
        return Ok(vec![k.get().key.clone()]);
    }
    if obj.is_instance_of::<PyString>() || as_bytes(obj)?.is_some() {
        return Err(PyTypeError::new_err(
            "expected an mxfed.SigningKey or a list of them",
        ));
    }
    let mut keys = Vec::new();
    for item in obj.try_iter()? {
        let item = item?;
        let k = item
            .cast::<PySigningKey>()
            .map_err(|_| PyTypeError::new_err("expected an mxfed.SigningKey or a list of them"))?;
        keys.push(k.get().key.clone());
    }
    if keys.is_empty() {
        return Err(coded::<SigningKeyError>(
            "empty_key_file",
            "no signing key given",
        ));
    }
    Ok(keys)
}

/// A key response: JSON text or a dict.
fn key_response(obj: &Bound<'_, PyAny>) -> PyResult<ServerKeys> {
    let o = match as_text(obj)? {
        Some(bytes) => canonical::parse_object(&bytes, &ParseOptions::STRICT).or_raise()?,
        None => to_object(obj, Numbers::Strict)?,
    };
    ServerKeys::from_response(&o).or_raise()
}

/// `f` on the keys of `obj`, run with the GIL released: a `KeyRing` (read-locked meanwhile), or
/// key responses (each verified as self-signed). `f` runs no Python code (see [`read`]).
fn with_key_ring<R: Send>(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    f: impl FnOnce(&KeyRing) -> R + Send,
) -> PyResult<R> {
    if let Ok(r) = obj.cast::<PyKeyRing>() {
        let shared = &r.get().inner;
        return Ok(py.detach(|| f(&read(shared).ring)));
    }
    let mut ring = KeyRing::new();
    for keys in key_responses(obj)? {
        ring.add(&keys);
    }
    Ok(py.detach(|| f(&ring)))
}

/// Whether `obj` is one JSON object (a mapping, or JSON text) rather than a collection of them.
fn is_one_object(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    Ok(obj.is_instance_of::<PyString>() || as_bytes(obj)?.is_some() || convert::is_mapping(obj)?)
}

/// One key response (a mapping or JSON text), or an iterable of them: each verified as
/// self-signed.
fn key_responses(obj: &Bound<'_, PyAny>) -> PyResult<Vec<ServerKeys>> {
    if is_one_object(obj)? {
        return Ok(vec![key_response(obj)?]);
    }
    let mut out = Vec::new();
    for item in obj.try_iter()? {
        out.push(key_response(&item?)?);
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------ sharing

// A `KeyRing` or a `Room` is shared between Python threads, and calls release the GIL while the
// core works, so its state sits behind an `RwLock`. Two rules keep that free of panics and deadlocks: no
// Python code runs while a lock is held (arguments are read before locking, Python objects and
// exceptions are made after unlocking), so a hook such as `__bytes__` can use the same object
// again; and a thread waits for a lock with the GIL released, so the holder can always finish.
// A poisoned lock (a panic while it was held, which the core does not do) is used as it is.

/// A read lock, waiting for it (callers wait with the GIL released: [`with_read`]).
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// A write lock, waiting for it (callers wait with the GIL released: [`with_write`]).
fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// `f` on the value behind `lock`: at once when no writer holds it, else once it is free, waiting
/// with the GIL released. `f` must not run Python code.
fn with_read<T: Send + Sync, R: Send>(
    py: Python<'_>,
    lock: &RwLock<T>,
    f: impl FnOnce(&T) -> R + Send,
) -> R {
    match lock.try_read() {
        Ok(guard) => f(&guard),
        Err(TryLockError::Poisoned(p)) => f(&p.into_inner()),
        Err(TryLockError::WouldBlock) => py.detach(|| f(&read(lock))),
    }
}

/// `f` on the value behind `lock`, mutably: at once when the lock is free, else once it is,
/// waiting with the GIL released. `f` must not run Python code.
fn with_write<T: Send + Sync, R: Send>(
    py: Python<'_>,
    lock: &RwLock<T>,
    f: impl FnOnce(&mut T) -> R + Send,
) -> R {
    match lock.try_write() {
        Ok(mut guard) => f(&mut guard),
        Err(TryLockError::Poisoned(p)) => f(&mut p.into_inner()),
        Err(TryLockError::WouldBlock) => py.detach(|| f(&mut write(lock))),
    }
}

fn seed_arg(seed: &Bound<'_, PyAny>) -> PyResult<[u8; 32]> {
    if let Some(b) = as_bytes(seed)? {
        return <[u8; 32]>::try_from(b.as_slice()).map_err(|_| {
            coded::<SigningKeyError>(
                "bad_key_length",
                format!("key is {} bytes, expected 32", b.len()),
            )
        });
    }
    if let Ok(s) = seed.cast::<PyString>() {
        // A lone surrogate is no base64 character.
        let s = s
            .to_cow()
            .map_err(|_| coded::<SigningKeyError>("bad_base64", "key is not valid base64"))?;
        return base64::decode_array::<32>(&s).map_err(|e| match e {
            base64::Base64Error::WrongLength { expected, found } => coded::<SigningKeyError>(
                "bad_key_length",
                format!("key is {found} bytes, expected {expected}"),
            ),
            _ => coded::<SigningKeyError>("bad_base64", "key is not valid base64"),
        });
    }
    Err(PyTypeError::new_err(
        "a seed is 32 bytes or their unpadded base64",
    ))
}

fn validate_server_name(name: &str) -> PyResult<()> {
    identifiers::validate_server_name(name).or_raise()
}

fn now_ms(py: Python<'_>, now: Option<Num<u64>>) -> PyResult<Timestamp> {
    if let Some(Num(ms)) = now {
        return Ok(Timestamp(ms));
    }
    // A host reads the clock; the core never does. Python's clock, so tests can patch it.
    let secs: f64 = py.import("time")?.call_method0("time")?.extract()?;
    Ok(Timestamp((secs * 1000.0) as u64))
}

// ------------------------------------------------------------------------------------ keys

/// An ed25519 signing key with its key ID, as in Synapse's `signing.key`.
#[pyclass(module = "mxfed", name = "SigningKey", frozen)]
struct PySigningKey {
    key: SigningKey,
}

#[pymethods]
impl PySigningKey {
    /// A key from a 32-byte seed (raw bytes or unpadded base64) and a version.
    #[staticmethod]
    fn from_seed(version: Text, seed: &Bound<'_, PyAny>) -> PyResult<PySigningKey> {
        let key = SigningKey::from_seed(&version, &seed_arg(seed)?).or_raise()?;
        Ok(PySigningKey { key })
    }

    /// A new key from the OS random source; version `a_` + four letters or digits (as Synapse makes) unless given.
    #[staticmethod]
    #[pyo3(signature = (version=None))]
    fn generate(py: Python<'_>, version: Option<Text>) -> PyResult<PySigningKey> {
        let entropy = py.import("os")?.call_method1("urandom", (36,))?;
        let entropy: [u8; 36] = entropy
            .cast::<PyBytes>()?
            .as_bytes()
            .try_into()
            .map_err(|_| PyOSError::new_err("os.urandom returned the wrong length"))?;
        let key = match version {
            None => SigningKey::generate(&entropy),
            Some(v) => {
                let mut seed = [0u8; 32];
                seed.copy_from_slice(&entropy[..32]);
                SigningKey::from_seed(&v, &seed).or_raise()?
            }
        };
        Ok(PySigningKey { key })
    }

    /// Every key in the text of a Synapse `signing.key` file.
    #[staticmethod]
    fn parse_synapse(text: Text) -> PyResult<Vec<PySigningKey>> {
        Ok(SigningKey::parse_synapse(&text)
            .or_raise()?
            .into_iter()
            .map(|key| PySigningKey { key })
            .collect())
    }

    /// Every key in a Synapse `signing.key` file.
    #[staticmethod]
    fn load(path: PathBuf) -> PyResult<Vec<PySigningKey>> {
        let bytes = std::fs::read(&path)
            .map_err(|e| PyOSError::new_err(format!("reading {}: {e}", path.display())))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            coded::<SigningKeyError>("bad_key_file", "signing key file is not UTF-8")
        })?;
        PySigningKey::parse_synapse(Text(text))
    }

    /// Writes this key as a `signing.key` file. Never replaces an existing file unless
    /// `overwrite` is true (losing a server's key is not recoverable).
    #[pyo3(signature = (path, *, overwrite=false))]
    fn save(&self, path: PathBuf, overwrite: bool) -> PyResult<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true);
        if overwrite {
            opts.create(true).truncate(true);
        } else {
            opts.create_new(true);
        }
        let mut f = opts.open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                pyo3::exceptions::PyFileExistsError::new_err(format!(
                    "{} exists; not overwriting a signing key",
                    path.display()
                ))
            } else {
                PyOSError::new_err(format!("creating {}: {e}", path.display()))
            }
        })?;
        f.write_all(self.key.to_synapse_line().as_bytes())
            .map_err(|e| PyOSError::new_err(format!("writing {}: {e}", path.display())))
    }

    /// The key as one `signing.key` line, `ed25519 <version> <base64 seed>\n`.
    fn to_synapse_line(&self) -> String {
        self.key.to_synapse_line()
    }

    /// `ed25519:<version>`.
    #[getter]
    fn key_id(&self) -> &str {
        self.key.key_id().as_str()
    }

    /// The version part of the key ID.
    #[getter]
    fn version(&self) -> &str {
        self.key.key_id().version()
    }

    /// The public key, unpadded base64.
    #[getter]
    fn verify_key(&self) -> String {
        self.key.verify_key().to_base64()
    }

    /// The public key, 32 raw bytes.
    #[getter]
    fn verify_key_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.key.verify_key().as_bytes())
    }

    /// The 64-byte ed25519 signature of `message`.
    fn sign<'py>(&self, py: Python<'py>, message: &[u8]) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.key.sign(message))
    }

    /// Compat fast path: the signature of the canonical JSON of `obj`, or None when Python's
    /// `json` must encode it (floats, big integers, other types).
    fn _sign_compat<'py>(
        &self,
        py: Python<'py>,
        obj: &Bound<'py, PyAny>,
    ) -> Option<Bound<'py, PyBytes>> {
        let v = to_value_compat(obj, 0)?;
        Some(PyBytes::new(py, &self.key.sign(&canonical::to_vec(&v))))
    }

    fn __repr__(&self) -> String {
        format!(
            "<mxfed.SigningKey {} {}>",
            self.key.key_id(),
            self.key.verify_key().to_base64()
        )
    }
}

/// An ed25519 public key (the compat layer's fast verifier).
#[pyclass(module = "mxfed._core", name = "_VerifyKey", frozen)]
struct PyVerifyKey {
    key: VerifyKey,
}

#[pymethods]
impl PyVerifyKey {
    #[new]
    fn new(key: &[u8]) -> PyResult<PyVerifyKey> {
        let bytes: [u8; 32] = key.try_into().map_err(|_| {
            coded::<SigningKeyError>(
                "bad_key_length",
                format!("key is {} bytes, expected 32", key.len()),
            )
        })?;
        Ok(PyVerifyKey {
            key: VerifyKey::from_bytes(&bytes).or_raise()?,
        })
    }

    /// Whether `signature` (64 bytes) verifies over `message`.
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        <[u8; 64]>::try_from(signature).is_ok_and(|sig| self.key.verify(message, &sig))
    }

    /// Whether `signature` verifies over the signed bytes of `obj` (canonical JSON without the
    /// top-level `signatures` and `unsigned`); None when Python's `json` must encode `obj`.
    fn _verify_compat(&self, obj: &Bound<'_, PyAny>, signature: &[u8]) -> Option<bool> {
        let Value::Object(o) = to_value_compat(obj, 0)? else {
            return None;
        };
        let sig = <[u8; 64]>::try_from(signature).ok()?;
        Some(self.key.verify(&signing::signing_bytes(&o), &sig))
    }
}

/// What is known of other servers' keys: verified `/_matrix/key/v2/server` responses. Frozen,
/// with its state behind a lock, so threads can share one (see [`with_read`]).
#[pyclass(module = "mxfed", name = "KeyRing", frozen)]
struct PyKeyRing {
    inner: RwLock<Ring>,
}

/// A key ring and the order its servers were added in.
#[derive(Default)]
struct Ring {
    ring: KeyRing,
    /// `servers()` lists servers in the order they were added; the core's ring is sorted.
    servers: Vec<String>,
}

impl Ring {
    fn add(&mut self, keys: &ServerKeys) {
        self.ring.add(keys);
        if !self.servers.contains(&keys.server_name) {
            self.servers.push(keys.server_name.clone());
        }
    }
}

#[pymethods]
impl PyKeyRing {
    #[new]
    #[pyo3(signature = (responses=None))]
    fn new(responses: Option<&Bound<'_, PyAny>>) -> PyResult<PyKeyRing> {
        let mut r = Ring::default();
        if let Some(responses) = responses {
            for keys in key_responses(responses)? {
                r.add(&keys);
            }
        }
        Ok(PyKeyRing {
            inner: RwLock::new(r),
        })
    }

    /// Adds a key response (dict or JSON text) after checking it is self-signed; returns the
    /// server name.
    fn add(&self, py: Python<'_>, response: &Bound<'_, PyAny>) -> PyResult<String> {
        // Read (Python code may run) before locking.
        let keys = key_response(response)?;
        with_write(py, &self.inner, |r| r.add(&keys));
        Ok(keys.server_name)
    }

    /// The servers with known keys, in the order they were added.
    fn servers(&self, py: Python<'_>) -> Vec<String> {
        with_read(py, &self.inner, |r| r.servers.clone())
    }

    /// A server's keys: key ID → unpadded base64 public key.
    fn keys(&self, py: Python<'_>, server_name: Text) -> BTreeMap<String, String> {
        with_read(py, &self.inner, |r| {
            r.ring
                .server(&server_name)
                .map(|m| {
                    m.iter()
                        .map(|(id, e)| (id.as_str().to_owned(), e.key.to_base64()))
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let servers = self.servers(py);
        format!("<mxfed.KeyRing {servers:?}>")
    }
}

// ------------------------------------------------------------------------------------ functions

/// Canonical JSON bytes. `bytes` are JSON text (numbers normalised as `mxfed canonical` does);
/// anything else is a Python value (a `str` is a JSON string). With `room_version`, numbers follow
/// that version's event rules (v1–5: floats and big integers as Synapse writes them).
#[pyfunction]
#[pyo3(signature = (value, *, room_version=None))]
fn canonical_json<'py>(
    py: Python<'py>,
    value: &Bound<'py, PyAny>,
    room_version: Option<Text>,
) -> PyResult<Bound<'py, PyBytes>> {
    let v = room_version
        .as_deref()
        .map(self::room_version)
        .transpose()?;
    let out = match (as_bytes(value)?, v) {
        (Some(b), None) => canonical::canonicalize(&b).or_raise()?,
        (Some(b), Some(v)) => {
            canonical::to_vec(&canonical::parse(&b, &pdu::parse_options(v)).or_raise()?)
        }
        (None, v) => canonical::to_vec(&to_value(value, v.map_or(Numbers::Strict, numbers_for))?),
    };
    Ok(PyBytes::new(py, &out))
}

/// The body of a request (`method`, `uri`) for `content` given as a value: its canonical JSON,
/// numbers as Python writes them, nested as deeply as the endpoint's body may be (a
/// transaction's to-device messages deeper than other JSON), as `sign_request` reads it. For
/// `mxfed.client`.
#[pyfunction]
fn _request_body<'py>(
    py: Python<'py>,
    method: Text,
    uri: Text,
    content: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let value = request_value(content, &method, &uri)?;
    Ok(PyBytes::new(py, &canonical::to_vec(&value)))
}

/// Request content given as a value: numbers as Python writes them, as deeply nested as the
/// endpoint's body may be (as when given as text).
fn request_value(content: &Bound<'_, PyAny>, method: &str, uri: &str) -> PyResult<Value> {
    to_value_nested(
        content,
        Numbers::Legacy,
        xmatrix::body_max_depth(method, uri),
    )
}

/// Whether `data` (bytes-like) is canonical JSON already: exactly the bytes `canonical_json`
/// writes for the value it parses to. Floats and integers outside ±(2^53 − 1) never are; bytes
/// that are not JSON are not either (no exception).
#[pyfunction]
fn is_canonical_json(data: &Bound<'_, PyAny>) -> PyResult<bool> {
    if let Ok(b) = data.cast::<PyBytes>() {
        return Ok(canonical::is_canonical(b.as_bytes()));
    }
    match as_bytes(data)? {
        Some(b) => Ok(canonical::is_canonical(&b)),
        None => Err(PyTypeError::new_err(
            "expected bytes, bytearray or memoryview",
        )),
    }
}

/// A signed copy of `obj` (the input is not changed): signed as `server_name` by every key.
#[pyfunction]
fn sign_json<'py>(
    py: Python<'py>,
    obj: &Bound<'py, PyAny>,
    server_name: Text,
    key: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let keys = signing_keys(key)?;
    validate_server_name(&server_name)?;
    let mut o = object_arg(obj)?;
    for k in &keys {
        signing::sign_json(&mut o, &server_name, k).or_raise()?;
    }
    object_to_py(py, &o)
}

/// Public keys already decompressed (a curve point decompression costs about as much as a
/// quarter of a signature check); bounded, emptied when full.
static VERIFY_KEYS: std::sync::Mutex<BTreeMap<[u8; 32], VerifyKey>> =
    std::sync::Mutex::new(BTreeMap::new());
const VERIFY_KEYS_MAX: usize = 4096;

fn cached_verify_key(bytes: &[u8; 32]) -> PyResult<VerifyKey> {
    let mut cache = VERIFY_KEYS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(k) = cache.get(bytes) {
        return Ok(*k);
    }
    let k = VerifyKey::from_bytes(bytes).or_raise()?;
    if cache.len() >= VERIFY_KEYS_MAX {
        cache.clear();
    }
    cache.insert(*bytes, k);
    Ok(k)
}

/// Verifies `server_name`'s signatures on `obj` with `keys` (key ID → public key, base64 or 32
/// bytes); returns the key IDs that verified, or raises `SignatureError`.
#[pyfunction]
fn verify_json(
    obj: &Bound<'_, PyAny>,
    server_name: Text,
    keys: &Bound<'_, PyAny>,
) -> PyResult<Vec<String>> {
    let mut map = BTreeMap::new();
    if !convert::is_mapping(keys)? {
        return Err(PyTypeError::new_err(
            "keys: expected a mapping of key ID to public key",
        ));
    }
    // A snapshot of the pairs: `__bytes__` of a key may run Python code that changes the dict.
    for item in convert::mapping_items(keys)?.iter() {
        let (id, key): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
        let id = KeyId::parse(&id.extract::<Text>()?).or_raise()?;
        let bytes: [u8; 32] = match as_bytes(&key)? {
            Some(b) => b.as_slice().try_into().map_err(|_| {
                coded::<SigningKeyError>(
                    "bad_key_length",
                    format!("key is {} bytes, expected 32", b.len()),
                )
            })?,
            None => {
                let b64 = key.extract::<Text>()?;
                // Decoding is cheap; decompressing the point is not, and is cached below.
                match base64::decode_array::<32>(&b64) {
                    Ok(b) => b,
                    // Let the core say what is wrong with it.
                    Err(_) => VerifyKey::from_base64(&b64)
                        .or_raise()?
                        .as_bytes()
                        .to_owned(),
                }
            }
        };
        map.insert(id, cached_verify_key(&bytes)?);
    }
    let o = object_arg(obj)?;
    Ok(signing::verify_json(&o, &server_name, &map)
        .or_raise()?
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect())
}

/// The content hash (unpadded base64 SHA-256) of an event.
#[pyfunction]
fn content_hash(event: &Bound<'_, PyAny>, room_version: Text) -> PyResult<String> {
    let v = self::room_version(&room_version)?;
    Ok(base64::encode(event::content_hash(&event_arg(event, v)?)))
}

/// The reference hash (unpadded base64 SHA-256 of the redacted event) of an event.
#[pyfunction]
fn reference_hash(event: &Bound<'_, PyAny>, room_version: Text) -> PyResult<String> {
    let v = self::room_version(&room_version)?;
    Ok(base64::encode(event::reference_hash(
        &event_arg(event, v)?,
        v,
    )))
}

/// The event ID: carried in the event in room versions 1–2, its reference hash from v3 on.
#[pyfunction]
fn event_id(event: &Bound<'_, PyAny>, room_version: Text) -> PyResult<String> {
    let v = self::room_version(&room_version)?;
    event::event_id(&event_arg(event, v)?, v).or_raise()
}

/// The room ID a room version 12+ `m.room.create` event defines.
#[pyfunction]
fn room_id(event: &Bound<'_, PyAny>, room_version: Text) -> PyResult<String> {
    let v = self::room_version(&room_version)?;
    event::room_id_from_create(&event_arg(event, v)?, v).or_raise()
}

/// The redacted form of an event under its room version's rules.
#[pyfunction]
fn redact<'py>(
    py: Python<'py>,
    event: &Bound<'py, PyAny>,
    room_version: Text,
) -> PyResult<Bound<'py, PyDict>> {
    let v = self::room_version(&room_version)?;
    object_to_py(py, &event::redact(&event_arg(event, v)?, v))
}

/// A copy of the event with its content hash and `server_name`'s signature by every key.
#[pyfunction]
fn hash_and_sign_event<'py>(
    py: Python<'py>,
    event: &Bound<'py, PyAny>,
    room_version: Text,
    server_name: Text,
    key: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let keys = signing_keys(key)?;
    validate_server_name(&server_name)?;
    let v = self::room_version(&room_version)?;
    let mut ev = event_arg(event, v)?;
    for k in &keys {
        event::hash_and_sign_event(&mut ev, v, &server_name, k).or_raise()?;
    }
    object_to_py(py, &ev)
}

/// Our signed membership event from a resident server's `make_join`, `make_leave` or
/// `make_knock` answer (`{"room_version", "event"}`), once its template is checked to be the
/// event asked for: `{"event_id", "room_version", "event"}`. Signed with the first key; `now_ms`
/// defaults to the clock, and room versions 1–2 draw their event ID's local part from
/// `os.urandom` unless given.
#[pyfunction]
#[pyo3(signature = (answer, room_id, user_id, membership, server_name, key, *, now_ms=None, content=None, event_id_localpart=None))]
#[allow(clippy::too_many_arguments)]
fn membership_from_template<'py>(
    py: Python<'py>,
    answer: &Bound<'py, PyAny>,
    room_id: Text,
    user_id: Text,
    membership: Text,
    server_name: Text,
    key: &Bound<'py, PyAny>,
    now_ms: Option<Num<u64>>,
    content: Option<&Bound<'py, PyAny>>,
    event_id_localpart: Option<Text>,
) -> PyResult<Bound<'py, PyDict>> {
    // Never empty: `signing_keys` refuses an empty list.
    let keys = signing_keys(key)?;
    let key = &keys[0];
    validate_server_name(&server_name)?;
    let answer = match as_text(answer)? {
        Some(bytes) => canonical::parse_object(&bytes, &ParseOptions::LEGACY).or_raise()?,
        None => to_object(answer, Numbers::Legacy)?,
    };
    let content = content
        .filter(|c| !c.is_none())
        .map(object_arg)
        .transpose()?;
    let local = match event_id_localpart {
        Some(Text(l)) => l,
        None => {
            const ALPHABET: &[u8] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            let entropy: Vec<u8> = py.import("os")?.call_method1("urandom", (18,))?.extract()?;
            entropy
                .iter()
                .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
                .collect()
        }
    };
    let req = event::MembershipRequest {
        room_id: &room_id,
        user_id: &user_id,
        membership: &membership,
        origin: &server_name,
        content: content.as_ref(),
        now: self::now_ms(py, now_ms)?,
        event_id_localpart: Some(&local),
    };
    let (built, v) = event::membership_from_template(&answer, &req, key).or_raise()?;
    let out = event::membership_json(built, v);
    object_to_py(py, &out)
}

/// Batches smaller than this per thread are not worth a thread (the core batch-verifies
/// signatures in groups of up to 256).
const MIN_PDUS_PER_THREAD: usize = 256;

/// The CPUs available, asked once: `available_parallelism` reads cgroup files on Linux, which
/// costs more than checking a small batch.
fn cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The core's batch check over the PDUs that could be read; `None` stays `None` (its
/// conversion failed and its verdict is made from the exception).
fn check_chunk(chunk: &[Option<Vec<u8>>], v: &RoomVersion, ring: &KeyRing) -> Vec<Option<Object>> {
    let bytes: Vec<&[u8]> = chunk.iter().flatten().map(Vec::as_slice).collect();
    let mut checks = pdu::check_pdus(&bytes, v, ring).into_iter();
    chunk
        .iter()
        .map(|p| p.as_ref().and_then(|_| checks.next()).map(|c| c.to_json()))
        .collect()
}

/// Checks every PDU, on up to `threads` threads (the host schedules; the checks are the core's).
fn check_all(
    pending: &[Option<Vec<u8>>],
    v: &RoomVersion,
    ring: &KeyRing,
    threads: usize,
) -> Option<Vec<Option<Object>>> {
    let threads = threads.min(pending.len() / MIN_PDUS_PER_THREAD).max(1);
    if threads == 1 {
        return Some(check_chunk(pending, v, ring));
    }
    let size = pending.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = pending
            .chunks(size)
            .map(|c| s.spawn(move || check_chunk(c, v, ring)))
            .collect();
        let mut out = Vec::with_capacity(pending.len());
        for h in handles {
            out.extend(h.join().ok()?);
        }
        Some(out)
    })
}

/// Checks PDUs (format, signatures of every required server, content hash) against `keys` (a
/// `KeyRing` or key responses). One verdict dict per PDU, as `mxfed event check` prints: the
/// core's batch check (`pdu::check_pdus`, batch signature verification with the verdicts of
/// one-by-one checks, except for a key holder's own signatures whose `R` has a small-order
/// component, which can pass a batch; see the core's docs). The GIL is released while checking, and batches of 512+ are spread over
/// `threads` threads (default: one per CPU).
#[pyfunction]
#[pyo3(signature = (pdus, room_version, keys, *, threads=None))]
fn check_pdus<'py>(
    py: Python<'py>,
    pdus: &Bound<'py, PyAny>,
    room_version: Text,
    keys: &Bound<'py, PyAny>,
    threads: Option<Num<usize>>,
) -> PyResult<Bound<'py, PyList>> {
    let v = self::room_version(&room_version)?;
    if is_one_object(pdus)? {
        return Err(PyTypeError::new_err(
            "check_pdus takes a list of PDUs (dicts or JSON text)",
        ));
    }
    let threads = threads.map_or_else(cpus, |Num(t)| t).max(1);
    // Dicts are converted and encoded ([`one_pdu`]): the core's batch check reads bytes, and
    // re-reading canonical bytes gives back the same event.
    let mut pending: Vec<Option<Vec<u8>>> = Vec::new();
    let mut failures = Vec::new();
    for item in pdus.try_iter()? {
        pending.push(match one_pdu(&item?) {
            Ok(b) => Some(b),
            Err(e) => {
                failures.push(e);
                None
            }
        });
    }
    let results = with_key_ring(py, keys, |ring| check_all(&pending, v, ring, threads))?
        .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("a check thread failed"))?;
    let out = PyList::empty(py);
    let mut failures = failures.into_iter();
    for r in results {
        let o = match r {
            Some(o) => object_to_py(py, &o)?,
            None => match failures.next() {
                Some(e) => rejected_verdict(py, &e)?,
                None => continue,
            },
        };
        out.append(o)?;
    }
    Ok(out)
}

/// The verdict for a PDU dict that could not even be converted (what `check_pdu` says of bytes
/// that do not parse).
fn rejected_verdict<'py>(py: Python<'py>, e: &PyErr) -> PyResult<Bound<'py, PyDict>> {
    let value = e.value(py);
    let code: String = value.getattr("code")?.extract()?;
    let mut o = Object::new();
    o.insert("content_hash", Value::Null);
    o.insert("error", value.str()?.to_string());
    o.insert("event_id", Value::Null);
    o.insert("reason", code);
    o.insert("signatures", Object::new());
    o.insert("verdict", "rejected");
    object_to_py(py, &o)
}

/// Request content: JSON text (kept as bytes: canonical text is signed and verified as it is,
/// other text parsed as Synapse parses request bodies), or a Python value.
fn content_arg(
    content: Option<&Bound<'_, PyAny>>,
    method: &str,
    uri: &str,
) -> PyResult<(Option<Vec<u8>>, Option<Value>)> {
    match content {
        None => Ok((None, None)),
        Some(c) if c.is_none() => Ok((None, None)),
        Some(c) => match as_text(c)? {
            Some(text) => Ok((Some(text), None)),
            None => Ok((None, Some(request_value(c, method, uri)?))),
        },
    }
}

/// The `Authorization` header values (`X-Matrix …`, one per key) for a request.
#[pyfunction]
#[pyo3(signature = (key, origin, destination, method, uri, content=None))]
fn sign_request(
    key: &Bound<'_, PyAny>,
    origin: Text,
    destination: Text,
    method: Text,
    uri: Text,
    content: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<String>> {
    let keys = signing_keys(key)?;
    validate_server_name(&origin)?;
    validate_server_name(&destination)?;
    let (text, value) = content_arg(content, &method, &uri)?;
    let req = xmatrix::Request {
        method: &method,
        uri: &uri,
        origin: &origin,
        destination: &destination,
        content: value.as_ref(),
    };
    let headers = match &value {
        Some(_) => req.sign(&keys),
        None => req.sign_body(text.as_deref(), &keys).or_raise()?,
    };
    Ok(headers.iter().map(|h| h.to_header_value()).collect())
}

/// Verifies a request's X-Matrix header values as `destination` at `now_ms` (default: now).
/// Returns `{"origin": …, "verified": [key IDs]}` or raises `XMatrixError`.
#[pyfunction]
#[pyo3(signature = (destination, keys, method, uri, headers, content=None, now_ms=None))]
#[allow(clippy::too_many_arguments)]
fn verify_request<'py>(
    py: Python<'py>,
    destination: Text,
    keys: &Bound<'py, PyAny>,
    method: Text,
    uri: Text,
    headers: &Bound<'py, PyAny>,
    content: Option<&Bound<'py, PyAny>>,
    now_ms: Option<Num<u64>>,
) -> PyResult<Bound<'py, PyDict>> {
    let headers: Vec<Text> = if headers.is_instance_of::<PyString>() {
        vec![headers.extract()?]
    } else {
        headers.extract()?
    };
    let parsed = headers
        .iter()
        .map(|h| xmatrix::XMatrix::parse(h))
        .collect::<Result<Vec<_>, _>>()
        .or_raise()?;
    let (text, value) = content_arg(content, &method, &uri)?;
    let body = text
        .as_deref()
        .map(|b| xmatrix::RequestBody::parse_request(&method, &uri, b))
        .transpose()
        .or_raise()?;
    let now = self::now_ms(py, now_ms)?;
    let auth = with_key_ring(py, keys, |ring| match &body {
        Some(body) => xmatrix::verify_request_body(
            &parsed,
            &destination,
            &method,
            &uri,
            Some(body),
            ring,
            now,
        ),
        None => xmatrix::verify_request(
            &parsed,
            &destination,
            &method,
            &uri,
            value.as_ref(),
            ring,
            now,
        ),
    })?
    .or_raise()?;
    let d = PyDict::new(py);
    d.set_item("origin", auth.origin)?;
    let ids: Vec<&str> = auth.key_ids.iter().map(KeyId::as_str).collect();
    d.set_item("verified", ids)?;
    Ok(d)
}

/// Our signed `/_matrix/key/v2/server` response. `old_keys`: key ID → `{"key": base64,
/// "expired_ts": ms}`, published in `old_verify_keys`.
#[pyfunction]
#[pyo3(signature = (server_name, key, valid_until_ts, old_keys=None))]
fn server_keys<'py>(
    py: Python<'py>,
    server_name: Text,
    key: &Bound<'py, PyAny>,
    valid_until_ts: &Bound<'py, PyAny>,
    old_keys: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let keys = signing_keys(key)?;
    validate_server_name(&server_name)?;
    let until = canonical_int(valid_until_ts, "valid_until_ts")?;
    let mut old = Vec::new();
    if let Some(old_keys) = old_keys.filter(|o| !o.is_none()) {
        let not_mapping = || {
            PyTypeError::new_err(
                "old_keys: expected a mapping of key ID to {\"key\": ..., \"expired_ts\": ...}",
            )
        };
        if !convert::is_mapping(old_keys)? {
            return Err(not_mapping());
        }
        // A snapshot of the pairs: `__index__` of a timestamp may run Python code that changes
        // the mapping.
        for item in convert::mapping_items(old_keys)?.iter() {
            let (id, entry): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
            let id = KeyId::parse(&id.extract::<Text>()?).or_raise()?;
            if !convert::is_mapping(&entry)? {
                return Err(not_mapping());
            }
            let get = |k: &str| match entry.get_item(k) {
                Ok(v) => Ok(v),
                Err(e) if e.is_instance_of::<PyKeyError>(py) => {
                    Err(coded::<error::ServerKeysError>(
                        "keys_bad_field",
                        format!("old key {id}: no `{k}`"),
                    ))
                }
                Err(e) => Err(e),
            };
            let vk = VerifyKey::from_base64(&get("key")?.extract::<Text>()?).or_raise()?;
            let expired = canonical_int(&get("expired_ts")?, "expired_ts")?;
            old.push((id, vk, expired));
        }
    }
    let o = build_server_keys(&server_name, &keys, &old, until).or_raise()?;
    object_to_py(py, &o)
}

/// Parses a transaction body (`PUT /_matrix/federation/v1/send/{txnId}`): `{"origin",
/// "origin_server_ts", "pdus", "edus", "rejected": [{"item", "code", "error"}]}`. Raises
/// `TransactionError` when the whole request must be refused.
#[pyfunction]
fn parse_transaction<'py>(
    py: Python<'py>,
    body: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let tx = match as_text(body)? {
        Some(b) => transaction::parse_transaction(&b).or_raise()?,
        None => transaction::transaction_from_object(to_object_nested(
            body,
            Numbers::Legacy,
            transaction::MAX_DEPTH,
        )?)
        .or_raise()?,
    };
    let d = PyDict::new(py);
    d.set_item("origin", tx.origin())?;
    d.set_item("origin_server_ts", tx.origin_server_ts().as_millis())?;
    let pdus = PyList::empty(py);
    for p in tx.pdus() {
        pdus.append(object_to_py(py, p)?)?;
    }
    d.set_item("pdus", pdus)?;
    let edus = PyList::empty(py);
    for e in tx.edus() {
        edus.append(object_to_py(py, &e.to_object())?)?;
    }
    d.set_item("edus", edus)?;
    let rejected = PyList::empty(py);
    for r in tx.rejected() {
        let item = PyDict::new(py);
        item.set_item("item", r.item.to_string())?;
        item.set_item("code", r.code())?;
        item.set_item("error", r.error.to_string())?;
        rejected.append(item)?;
    }
    d.set_item("rejected", rejected)?;
    Ok(d)
}

/// Whether a server ACL (the content of an `m.room.server_acl` event: a dict, or JSON text) lets
/// `server_name` (with or without a port) take part. Raises `CanonicalJsonError` for content
/// that is not a JSON object, `IdentifierError` for a malformed server name.
#[pyfunction]
fn server_acl_allows(content: &Bound<'_, PyAny>, server_name: Text) -> PyResult<bool> {
    // Room versions 1-5 allow floats and big integers in content: legacy number rules.
    let content = match as_text(content)? {
        Some(bytes) => canonical::parse_object(&bytes, &ParseOptions::LEGACY).or_raise()?,
        None => to_object(content, Numbers::Legacy)?,
    };
    ServerAcl::from_content(&content)
        .check(&server_name)
        .or_raise()
}

/// The discovery plan for `server_name`. Without `well_known`, the first step:
/// `{"action": "connect", "host", "port"}` or `{"action": "well_known", "url"}`. With the
/// well-known answer's body (bytes, str or dict; `b""` when the fetch failed or was not 200),
/// the next: `{"action": "connect", "host", "port"}` or `{"action": "srv", "host",
/// "srv_names"}`. Raises `IdentifierError` for a malformed server name.
#[pyfunction]
#[pyo3(signature = (server_name, well_known=None))]
fn discovery_plan<'py>(
    py: Python<'py>,
    server_name: Text,
    well_known: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let body = match well_known {
        None => None,
        Some(w) => Some(match as_text(w)? {
            Some(bytes) => bytes,
            None => to_object(w, Numbers::Legacy)?
                .to_canonical_string()
                .into_bytes(),
        }),
    };
    let plan = discovery::plan_json(&server_name, body.as_deref()).or_raise()?;
    object_to_py(py, &plan)
}

/// The SRV record to connect to, from records `[{"priority", "weight", "port", "target"}]` (a
/// list of dicts, or JSON text): `{"host", "port"}`, or `None` when no record is usable.
/// Raises `DiscoveryError` for malformed records.
#[pyfunction]
fn pick_srv<'py>(
    py: Python<'py>,
    records: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    let target = match as_text(records)? {
        Some(bytes) => discovery::pick_srv_json(&bytes).or_raise()?,
        None => {
            let records = discovery::srv_records_from_json(&to_value(records, Numbers::Strict)?)
                .or_raise()?;
            discovery::pick_srv(&records).map_or(Value::Null, |t| Value::Object(t.to_json()))
        }
    };
    match target {
        Value::Object(o) => Ok(Some(object_to_py(py, &o)?)),
        _ => Ok(None),
    }
}

/// Every target of an SRV answer, from records `[{"priority", "weight", "port", "target"}]` (a
/// list of dicts, or JSON text), in the order to try them: `{"action": "connect", "targets":
/// [...]}`; `{"action": "unavailable"}` when the only target is `.` (the service is not
/// offered: fail); `{"action": "next"}` with no record. Raises `DiscoveryError` for malformed
/// records.
#[pyfunction]
fn srv_targets<'py>(py: Python<'py>, records: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
    let answer = match as_text(records)? {
        Some(bytes) => discovery::srv_targets_json(&bytes).or_raise()?,
        None => {
            let records = discovery::srv_records_from_json(&to_value(records, Numbers::Strict)?)
                .or_raise()?;
            discovery::srv_targets(&records).to_json()
        }
    };
    object_to_py(py, &answer)
}

/// How long to use a valid well-known answer, in milliseconds, from its `Cache-Control` and
/// `Expires` header values (`None` when absent), received at `now_ms` (default: `time.time()`):
/// `no-store` gives 5 minutes, else `max-age`, else `Expires` minus now (not a date: past), else
/// 24 hours; at least 5 minutes, at most 48 hours.
#[pyfunction]
#[pyo3(signature = (cache_control=None, expires=None, *, now_ms=None))]
fn well_known_lifetime(
    py: Python<'_>,
    cache_control: Option<Text>,
    expires: Option<Text>,
    now_ms: Option<Num<u64>>,
) -> PyResult<u64> {
    let now = self::now_ms(py, now_ms)?;
    Ok(discovery::well_known_lifetime(cache_control.as_deref(), expires.as_deref(), now).0)
}

/// Whether a server may see an event, given the `history_visibility` value in force after it
/// (`None`: the room has no `m.room.history_visibility` event; unknown values count as `shared`,
/// as Synapse) and the memberships after it of that server's users (an iterable of str). Raises
/// `TypeError` for memberships that are not an iterable of str.
#[pyfunction]
fn server_may_see(
    history_visibility: Option<Text>,
    memberships: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    let not_strings = || PyTypeError::new_err("memberships: expected an iterable of str");
    if memberships.is_instance_of::<PyString>() || as_bytes(memberships)?.is_some() {
        return Err(not_strings());
    }
    let mut list = Vec::new();
    for item in memberships.try_iter().map_err(|_| not_strings())? {
        let item = item?;
        let m = item.cast::<PyString>().map_err(|_| not_strings())?;
        list.push(m.extract::<Text>()?.0);
    }
    let visibility = room::HistoryVisibility::parse(history_visibility.as_deref());
    Ok(room::server_may_see(
        visibility,
        list.iter().map(String::as_str),
    ))
}

// ------------------------------------------------------------------------------------ rooms

/// PDUs as the core reads them: JSON text as is, dicts converted and encoded ([`one_pdu`]). A
/// dict that cannot be converted is its error (made a rejected verdict).
fn pdu_bytes(pdus: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<PyResult<Vec<u8>>>> {
    if is_one_object(pdus)? {
        return Err(PyTypeError::new_err(format!(
            "{what} takes a list of PDUs (dicts or JSON text)"
        )));
    }
    let mut out = Vec::new();
    for item in pdus.try_iter()? {
        out.push(one_pdu(&item?));
    }
    Ok(out)
}

/// One PDU's bytes: JSON text as is, or a dict converted and encoded. A dict's numbers are
/// taken as they are (the legacy rules) and judged by the core's checks on the bytes, as text
/// is: a float or a big integer under `unsigned`, which the checks leave out (as Synapse does),
/// must not refuse the PDU here.
fn one_pdu(item: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    match as_text(item)? {
        Some(b) => Ok(b),
        None => to_object(item, Numbers::Legacy).map(|o| {
            let mut b = Vec::with_capacity(2048);
            canonical::encode_object_into(&o, &mut b);
            b
        }),
    }
}

/// Receives PDUs with `receive` (the core's `Room::receive_pdus`), the GIL released; PDUs that
/// could not be converted come first, as rejected verdicts.
fn receive_into<'py>(
    py: Python<'py>,
    pdus: Vec<PyResult<Vec<u8>>>,
    keys: &Bound<'py, PyAny>,
    receive: impl FnOnce(&[&[u8]], &KeyRing) -> Vec<Object> + Send,
) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    let mut good = Vec::with_capacity(pdus.len());
    for p in pdus {
        match p {
            Ok(b) => good.push(b),
            Err(e) => out.append(rejected_verdict(py, &e)?)?,
        }
    }
    let verdicts = with_key_ring(py, keys, |ring| {
        let lines: Vec<&[u8]> = good.iter().map(Vec::as_slice).collect();
        receive(&lines, ring)
    })?;
    for v in &verdicts {
        out.append(object_to_py(py, v)?)?;
    }
    Ok(out)
}

/// A state map's rows (`room::state_rows`: `{"event_id", "state_key", "type"}`, sorted by type
/// and state key) as a list of dicts.
fn state_list<'py>(py: Python<'py>, rows: &[Value]) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for row in rows {
        out.append(convert::to_py(py, row)?)?;
    }
    Ok(out)
}

/// One room's events in memory with the state after each, its forward extremities and its
/// current state: the core's receipt pipeline (spec checks 1–6: format, signatures, hashes,
/// auth against the auth events, the state before the event, and soft failure against the
/// current state), as `mxfed room replay` and the server run it. Frozen, with the room behind a
/// lock, so threads can share one (see [`with_read`]).
#[pyclass(module = "mxfed", name = "Room", frozen)]
struct PyRoom {
    /// Fixed for the room's life, so read without the lock.
    version: &'static RoomVersion,
    room: RwLock<room::Room>,
}

/// One PDU checked against `keys` (without the GIL), then `decide`d by a room: the verdict
/// dict. A PDU that cannot be read is a rejected verdict, not an exception.
fn room_verdict<'py>(
    py: Python<'py>,
    v: &'static RoomVersion,
    pdu: &Bound<'py, PyAny>,
    keys: &Bound<'py, PyAny>,
    decide: impl FnOnce(&pdu::PduCheck) -> room::RoomVerdict + Send,
) -> PyResult<Bound<'py, PyDict>> {
    let bytes = match one_pdu(pdu) {
        Ok(b) => b,
        Err(e) => return rejected_verdict(py, &e),
    };
    let verdict = with_key_ring(py, keys, |ring| {
        let check = pdu::check_pdu(&bytes, v, ring);
        let verdict = decide(&check);
        room::verdict_json(&check, &verdict)
    })?;
    object_to_py(py, &verdict)
}

#[pymethods]
impl PyRoom {
    /// An empty room of a version. Raises `RoomVersionError` for an unknown version.
    #[new]
    fn new(room_version: Text) -> PyResult<PyRoom> {
        let version = self::room_version(&room_version)?;
        Ok(PyRoom {
            version,
            room: RwLock::new(room::Room::new(version)),
        })
    }

    /// The room version.
    #[getter]
    fn room_version(&self) -> &'static str {
        self.version.id
    }

    /// Checks one PDU (a dict or JSON text) against `keys` (a `KeyRing` or key responses) and
    /// runs it through the room pipeline against the state before it. Returns the verdict dict
    /// (`check_pdus`'s, with `verdict` one of `accepted`, `redacted`, `rejected`, `soft_failed`
    /// and a `reason` code when not accepted). A PDU that cannot be read is a rejected verdict,
    /// not an exception. Its prev and auth events must have been received first (see
    /// `receive_all` for a batch in any order).
    fn receive<'py>(
        &self,
        py: Python<'py>,
        pdu: &Bound<'py, PyAny>,
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        // Locked for the decision only: the PDU's own checks need the keys, not the room.
        room_verdict(py, self.version, pdu, keys, |check| {
            write(&self.room).receive(check)
        })
    }

    /// The verdict `receive` would give the PDU, without taking it in (the room is unchanged):
    /// whether an event would pass before it is signed or sent.
    fn check<'py>(
        &self,
        py: Python<'py>,
        pdu: &Bound<'py, PyAny>,
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        room_verdict(py, self.version, pdu, keys, |check| {
            read(&self.room).check(check)
        })
    }

    /// Checks a batch of PDUs (any order), orders them causally and receives each, as `replay`
    /// does: one verdict dict per PDU, in processing order.
    fn receive_all<'py>(
        &self,
        py: Python<'py>,
        pdus: &Bound<'py, PyAny>,
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let pdus = pdu_bytes(pdus, "receive_all")?;
        receive_into(py, pdus, keys, |lines, ring| {
            write(&self.room).receive_pdus(lines, ring)
        })
    }

    /// The current state (the resolution of the forward extremities' states): a list of
    /// `{"event_id", "state_key", "type"}` dicts sorted by type and state key.
    fn current_state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let rows = with_read(py, &self.room, |room| {
            room::state_rows(&room.current_state())
        });
        state_list(py, &rows)
    }

    /// The forward extremities (accepted events no accepted event cites yet), sorted.
    fn forward_extremities(&self, py: Python<'_>) -> Vec<String> {
        with_read(py, &self.room, |room| {
            room.forward_extremities().iter().cloned().collect()
        })
    }

    /// The state after a known event (before it, plus the event unless it was rejected), as
    /// `current_state`; `None` for an event the room does not have.
    fn state_after<'py>(
        &self,
        py: Python<'py>,
        event_id: Text,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        let rows = with_read(py, &self.room, |room| {
            room.state_after(&event_id).map(room::state_rows)
        });
        rows.map(|rows| state_list(py, &rows)).transpose()
    }

    /// Whether the room has an event (accepted, soft-failed or rejected).
    fn __contains__(&self, py: Python<'_>, event_id: Text) -> bool {
        with_read(py, &self.room, |room| room.contains(&event_id))
    }

    /// The decision of `server_name`, resident in this room, on a `make_join` of `user_id` when
    /// the join rule is `restricted` or `knock_restricted`: the local user to name in
    /// `join_authorised_via_users_server` (the most powerful of our joined users who may
    /// invite), or `None` when no authorisation is needed (another join rule, or the user is
    /// already joined or invited). Our users are those whose ID ends in `:server_name`;
    /// `joined_to` maps the allowed rooms we know to whether `user_id` is joined to each (rooms
    /// not in it are unknown to us). Raises `RestrictedJoinError` (`.code`
    /// `restricted_not_allowed`, `restricted_unable_to_authorise`,
    /// `restricted_unable_to_grant`) when we cannot authorise the join, `IdentifierError` for a
    /// malformed user ID or server name, `TypeError` when `joined_to` is not a mapping of str to
    /// bool.
    #[pyo3(signature = (user_id, server_name, joined_to=None))]
    fn restricted_join(
        &self,
        py: Python<'_>,
        user_id: Text,
        server_name: Text,
        joined_to: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<String>> {
        identifiers::user_server_name(&user_id).or_raise()?;
        validate_server_name(&server_name)?;
        let mut known = BTreeMap::new();
        if let Some(j) = joined_to.filter(|j| !j.is_none()) {
            let not_mapping =
                || PyTypeError::new_err("joined_to: expected a mapping of room ID (str) to bool");
            let j = j
                .cast::<pyo3::types::PyMapping>()
                .map_err(|_| not_mapping())?;
            for item in j.items()?.try_iter()? {
                let (Text(room), joined): (Text, Bound<'_, PyAny>) = item?.extract()?;
                let joined = joined
                    .cast::<pyo3::types::PyBool>()
                    .map_err(|_| not_mapping())?
                    .is_true();
                known.insert(room, joined);
            }
        }
        let decision = with_read(py, &self.room, |room| {
            room.restricted_join_for(&user_id, &server_name, &known)
        });
        match decision.or_raise()? {
            room::RestrictedJoin::Via(u) => Ok(Some(u)),
            _ => Ok(None),
        }
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let extremities = with_read(py, &self.room, |room| room.forward_extremities().len());
        format!(
            "mxfed.Room(room_version={:?}, forward_extremities={extremities})",
            self.version.id
        )
    }
}

/// Replays a whole room, as `mxfed room replay`: checks every PDU (dicts or JSON text, any
/// order) against `keys`, orders them causally and runs each through the room pipeline.
/// Returns `(verdicts, state)`: one verdict dict per PDU in processing order, and the final
/// current state as `Room.current_state` gives it. Raises `RoomVersionError`, or
/// `ServerKeysError` for a key response that is malformed or not self-signed.
#[pyfunction]
fn replay<'py>(
    py: Python<'py>,
    pdus: &Bound<'py, PyAny>,
    room_version: Text,
    keys: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
    let mut room = room::Room::new(self::room_version(&room_version)?);
    let pdus = pdu_bytes(pdus, "replay")?;
    let verdicts = receive_into(py, pdus, keys, |lines, ring| room.receive_pdus(lines, ring))?;
    let state = room::state_rows(&room.current_state());
    Ok((verdicts, state_list(py, &state)?))
}

/// Compat fast path of `canonicaljson.encode_canonical_json`: the bytes, or None when Python's
/// `json` must encode the value (floats, big integers, subclasses, unknown types).
#[pyfunction]
fn _compat_encode<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> Option<Bound<'py, PyBytes>> {
    to_value_compat(value, 0).map(|v| PyBytes::new(py, &canonical::to_vec(&v)))
}

/// Unpadded standard base64 of bytes.
#[pyfunction]
fn encode_base64(data: &[u8]) -> String {
    base64::encode(data)
}

/// Decodes unpadded (or padded) standard or URL-safe base64, as the core reads keys and hashes.
#[pyfunction]
fn decode_base64<'py>(py: Python<'py>, data: Text) -> PyResult<Bound<'py, PyBytes>> {
    let b = base64::decode(&data)
        .map_err(|e| coded::<error::CanonicalJsonError>(e.code(), e.to_string()))?;
    Ok(PyBytes::new(py, &b))
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    error::register(m)?;
    m.add_class::<PySigningKey>()?;
    m.add_class::<PyVerifyKey>()?;
    m.add_class::<PyKeyRing>()?;
    m.add_class::<PyRoom>()?;
    m.add_function(wrap_pyfunction!(canonical_json, m)?)?;
    m.add_function(wrap_pyfunction!(_request_body, m)?)?;
    m.add_function(wrap_pyfunction!(sign_json, m)?)?;
    m.add_function(wrap_pyfunction!(verify_json, m)?)?;
    m.add_function(wrap_pyfunction!(content_hash, m)?)?;
    m.add_function(wrap_pyfunction!(reference_hash, m)?)?;
    m.add_function(wrap_pyfunction!(event_id, m)?)?;
    m.add_function(wrap_pyfunction!(room_id, m)?)?;
    m.add_function(wrap_pyfunction!(redact, m)?)?;
    m.add_function(wrap_pyfunction!(hash_and_sign_event, m)?)?;
    m.add_function(wrap_pyfunction!(membership_from_template, m)?)?;
    m.add_function(wrap_pyfunction!(check_pdus, m)?)?;
    m.add_function(wrap_pyfunction!(sign_request, m)?)?;
    m.add_function(wrap_pyfunction!(verify_request, m)?)?;
    m.add_function(wrap_pyfunction!(is_canonical_json, m)?)?;
    m.add_function(wrap_pyfunction!(server_keys, m)?)?;
    m.add_function(wrap_pyfunction!(parse_transaction, m)?)?;
    m.add_function(wrap_pyfunction!(_compat_encode, m)?)?;
    m.add_function(wrap_pyfunction!(encode_base64, m)?)?;
    m.add_function(wrap_pyfunction!(decode_base64, m)?)?;
    m.add_function(wrap_pyfunction!(server_acl_allows, m)?)?;
    m.add_function(wrap_pyfunction!(discovery_plan, m)?)?;
    m.add_function(wrap_pyfunction!(pick_srv, m)?)?;
    m.add_function(wrap_pyfunction!(srv_targets, m)?)?;
    m.add_function(wrap_pyfunction!(well_known_lifetime, m)?)?;
    m.add_function(wrap_pyfunction!(server_may_see, m)?)?;
    m.add_function(wrap_pyfunction!(replay, m)?)?;
    let versions: Vec<&str> = RoomVersion::ALL.iter().map(|v| v.id).collect();
    m.add(
        "ROOM_VERSIONS",
        pyo3::types::PyTuple::new(m.py(), versions)?,
    )?;
    Ok(())
}
