//! Python objects ↔ the core's canonical [`Value`], written directly (no JSON text in between).
//!
//! Python → core, strict (the main API): `dict` with `str` keys → object, `bool` (checked before
//! `int`, its base class) → boolean, `int` within ±(2^53−1) → integer, `str` → string,
//! `list`/`tuple` → array, `None` → null. Everything else is a [`CanonicalJsonError`] with a code:
//! floats `json_float` (`json_non_finite` for NaN/±inf), big integers `json_integer_out_of_range`,
//! lone surrogates `json_lone_surrogate`, nesting past 128 levels (1,024 for a transaction body,
//! as the core's parser allows; and so cycles) `json_too_deep`; two codes exist only here
//! because JSON text cannot express the mistake: `json_non_string_key` and
//! `json_unsupported_type`.
//!
//! Events of room versions 1–5 may hold floats and big integers (Synapse accepts them there): in
//! [`Numbers::Legacy`] a float is written with `float.__repr__` and an integer with all its
//! digits (`int.__repr__`), from the value and never by a subclass's own `str`/`repr`, as
//! Python's `json` does; that text goes through the core's own legacy number parser, exactly as
//! if the event had arrived as bytes.
//!
//! The compat fast path ([`to_value_compat`]) takes only exact `dict`/`list`/`tuple`/`str`/
//! `bool`/in-range `int`/`None` and gives up (returns `None`) on anything else, so the caller can
//! fall back to Python's own `json` for exactly canonicaljson's behaviour.
//!
//! Core → Python: objects → `dict`, arrays → `list`, integers → `int`; legacy numbers → `int`
//! (all digits) or `float` (the nearest double, as Python's `json` reads it).

use pyo3::exceptions::PyOverflowError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyType};

use mxfed_core::canonical::{
    self, Int, Object, ParseOptions, Value, DEFAULT_MAX_DEPTH, MAX_SAFE_INT,
};

use crate::error::{coded, CanonicalJsonError};

/// How numbers outside canonical JSON are treated when converting from Python.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Numbers {
    /// Floats and big integers are errors.
    Strict,
    /// Floats and big integers become legacy numbers (room versions 1–5 events).
    Legacy,
}

/// A conversion failure: a code, a message and where.
pub(crate) struct Failure {
    code: &'static str,
    message: String,
    /// JSON Pointer segments, innermost last once unwound.
    path: Vec<String>,
}

impl Failure {
    fn new(code: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            path: Vec::new(),
        }
    }

    fn at(mut self, seg: String) -> Failure {
        self.path.push(seg);
        self
    }

    /// Whether this is a number canonical JSON cannot hold (a float, an integer out of range)
    /// somewhere under the top-level field `field`.
    pub(crate) fn is_number_under(&self, field: &str) -> bool {
        matches!(self.code, "json_float" | "json_integer_out_of_range")
            && self.path.last().is_some_and(|top| top == field)
    }

    pub(crate) fn into_py_err(self) -> PyErr {
        let mut path = String::new();
        for seg in self.path.iter().rev() {
            path.push('/');
            for c in seg.chars() {
                match c {
                    '~' => path.push_str("~0"),
                    '/' => path.push_str("~1"),
                    c if c.is_control() => path.extend(c.escape_unicode()),
                    c => path.push(c),
                }
            }
        }
        if path.is_empty() {
            path.push('/');
        }
        coded::<CanonicalJsonError>(self.code, format!("{} at {path}", self.message))
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

fn py_str(s: &Bound<'_, PyString>) -> Result<String, Failure> {
    s.to_cow().map(|c| c.into_owned()).map_err(|_| {
        Failure::new(
            "json_lone_surrogate",
            "string holds a lone surrogate (not valid Unicode)",
        )
    })
}

/// Parses a number's text with the core's legacy parser: the canonical form is then exactly
/// what the core would have made of the same event received as bytes.
fn legacy_number(text: &str) -> Result<Value, Failure> {
    canonical::parse(text.as_bytes(), &ParseOptions::LEGACY)
        .map_err(|e| Failure::new(e.code(), e.to_string()))
}

/// `obj` as a value, `depth` containers deep in a document that may nest `max_depth`.
fn convert(
    obj: &Bound<'_, PyAny>,
    numbers: Numbers,
    depth: usize,
    max_depth: usize,
) -> Result<Value, Failure> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    // bool first: it is a subclass of int.
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        let int = obj.extract::<i64>().ok().and_then(Int::new);
        return match (int, numbers) {
            (Some(i), _) => Ok(Value::Int(i)),
            (None, Numbers::Legacy) => legacy_number(&int_digits(obj)?),
            (None, Numbers::Strict) => Err(Failure::new(
                "json_integer_out_of_range",
                format!("integer outside canonical range ±(2^53-1) ({MAX_SAFE_INT})"),
            )),
        };
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(py_str(s)?));
    }
    if depth >= max_depth
        && (obj.is_instance_of::<PyDict>()
            || obj.is_instance_of::<PyList>()
            || obj.is_instance_of::<PyTuple>())
    {
        return Err(too_deep(max_depth));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        return object(&d.items(), numbers, depth, max_depth);
    }
    if let Ok(l) = obj.cast::<PyList>() {
        let mut items = Vec::with_capacity(l.len());
        for (i, item) in l.iter().enumerate() {
            items.push(
                convert(&item, numbers, depth + 1, max_depth).map_err(|f| f.at(i.to_string()))?,
            );
        }
        return Ok(Value::Array(items));
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        let mut items = Vec::with_capacity(t.len());
        for (i, item) in t.iter().enumerate() {
            items.push(
                convert(&item, numbers, depth + 1, max_depth).map_err(|f| f.at(i.to_string()))?,
            );
        }
        return Ok(Value::Array(items));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let x = f.value();
        if !x.is_finite() {
            return Err(Failure::new(
                "json_non_finite",
                format!("non-finite number {x}"),
            ));
        }
        return match numbers {
            Numbers::Legacy => legacy_number(&float_repr(obj.py(), x)?),
            Numbers::Strict => Err(Failure::new(
                "json_float",
                format!("float {x:?} not allowed in canonical JSON"),
            )),
        };
    }
    // Any other mapping (`MappingProxyType`, `UserDict`, `immutabledict`...) is an object too,
    // read through its own `items()`: checked last, as the check runs Python code.
    let unreadable = |e: PyErr| {
        Failure::new(
            "json_unsupported_type",
            format!(
                "a {} could not be read as a mapping ({})",
                type_name(obj),
                e.value(obj.py())
            ),
        )
    };
    if is_mapping(obj).map_err(unreadable)? {
        if depth >= max_depth {
            return Err(too_deep(max_depth));
        }
        let items = mapping_items(obj).map_err(unreadable)?;
        return object(&items, numbers, depth, max_depth);
    }
    Err(Failure::new(
        "json_unsupported_type",
        format!("a {} is not a JSON value", type_name(obj)),
    ))
}

fn too_deep(max_depth: usize) -> Failure {
    Failure::new(
        "json_too_deep",
        format!("nested deeper than {max_depth} levels (or a cycle)"),
    )
}

/// An object from a snapshot of a mapping's `(key, value)` pairs ([`mapping_items`]).
fn object(
    items: &Bound<'_, PyList>,
    numbers: Numbers,
    depth: usize,
    max_depth: usize,
) -> Result<Value, Failure> {
    let mut entries: Vec<(String, Value)> = Vec::with_capacity(items.len());
    for item in items.iter() {
        let (k, v) = item
            .extract::<(Bound<'_, PyAny>, Bound<'_, PyAny>)>()
            .map_err(|_| {
                Failure::new(
                    "json_unsupported_type",
                    format!("a mapping item of type {} (not a pair)", type_name(&item)),
                )
            })?;
        let key = match k.cast::<PyString>() {
            Ok(k) => py_str(k)?,
            Err(_) => {
                return Err(Failure::new(
                    "json_non_string_key",
                    format!(
                        "object key of type {} (JSON keys are strings)",
                        type_name(&k)
                    ),
                ))
            }
        };
        let value = match convert(&v, numbers, depth + 1, max_depth) {
            Ok(v) => v,
            Err(f) => return Err(f.at(key)),
        };
        entries.push((key, value));
    }
    Ok(Value::Object(unique_object(entries)?))
}

/// Whether `obj` is a `dict` or another `collections.abc.Mapping`.
pub(crate) fn is_mapping(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    static MAPPING: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    if obj.is_instance_of::<PyDict>() {
        return Ok(true);
    }
    obj.is_instance(MAPPING.import(obj.py(), "collections.abc", "Mapping")?)
}

/// A snapshot of a mapping's `(key, value)` pairs: a new list (`dict.items()`, or
/// `list(m.items())` for another mapping). Not the mapping itself: converting a value can run
/// Python code (a subclass's hook, a finalizer) that changes it, and walking a dict that changes
/// size is a panic in pyo3; a list nobody else holds cannot change.
pub(crate) fn mapping_items<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
    if let Ok(d) = obj.cast::<PyDict>() {
        return Ok(d.items());
    }
    let py = obj.py();
    let items = obj.call_method0(intern!(py, "items"))?;
    Ok(py
        .get_type::<PyList>()
        .call1((items,))?
        .cast_into::<PyList>()?)
}

/// The digits of a big integer, written by `int.__repr__` on its value, as Python's `json` writes
/// it: never by the object's own `str()`/`repr()`, which an `int` subclass may override to put
/// any text (even JSON structure) in place of the number.
fn int_digits(obj: &Bound<'_, PyAny>) -> Result<String, Failure> {
    let py = obj.py();
    py.get_type::<PyInt>()
        .getattr(intern!(py, "__repr__"))
        .and_then(|repr| repr.call1((obj,)))
        .and_then(|text| text.extract::<String>())
        .map_err(|e| {
            // Python writes at most `sys.get_int_max_str_digits()` digits (and its `json` reads
            // no longer number either).
            Failure::new(
                "json_integer_out_of_range",
                format!("integer too long to write in decimal ({})", e.value(py)),
            )
        })
}

/// A float written as `float.__repr__` writes its value (what Synapse's canonicaljson writes):
/// a `float` subclass's own `__repr__` does not decide its JSON.
fn float_repr(py: Python<'_>, x: f64) -> Result<String, Failure> {
    PyFloat::new(py, x)
        .repr()
        .and_then(|text| text.extract::<String>())
        .map_err(|e| Failure::new("json_syntax", e.to_string()))
}

/// Builds an object from entries, refusing a key given twice (what the same object as JSON text
/// gives): `str` subclasses with their own `__eq__`/`__hash__` can put one key in a dict twice.
/// Sorting first makes every insert an append.
fn unique_object(mut entries: Vec<(String, Value)>) -> Result<Object, Failure> {
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
        let key = w[0].0.clone();
        return Err(Failure::new("json_duplicate_key", format!("duplicate key {key:?}")).at(key));
    }
    Ok(entries.into_iter().collect())
}

/// Builds an object from entries with unique keys (exact `str` keys of an exact `dict`):
/// sorting first makes every insert an append.
fn sorted_object(mut entries: Vec<(String, Value)>) -> Object {
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    entries.into_iter().collect()
}

/// A Python value as a canonical [`Value`].
///
/// # Errors
/// `mxfed.CanonicalJsonError` with the code and the JSON Pointer of the offending value.
pub(crate) fn to_value(obj: &Bound<'_, PyAny>, numbers: Numbers) -> PyResult<Value> {
    to_value_nested(obj, numbers, DEFAULT_MAX_DEPTH)
}

/// [`to_value`] for a document that may nest `max_depth` levels rather than the default (a
/// transaction body: [`mxfed_core::transaction::MAX_DEPTH`]), as the core's parser of the same
/// document as text allows.
///
/// # Errors
/// As [`to_value`].
pub(crate) fn to_value_nested(
    obj: &Bound<'_, PyAny>,
    numbers: Numbers,
    max_depth: usize,
) -> PyResult<Value> {
    convert(obj, numbers, 0, max_depth).map_err(Failure::into_py_err)
}

/// A Python `dict` as a canonical [`Object`]; other values are a `json_syntax` error ("expected an
/// object"), as the same value given as JSON text would be.
pub(crate) fn to_object(obj: &Bound<'_, PyAny>, numbers: Numbers) -> PyResult<Object> {
    try_object(obj, numbers, DEFAULT_MAX_DEPTH).map_err(Failure::into_py_err)
}

/// [`to_object`] for a document that may nest `max_depth` levels ([`to_value_nested`]).
pub(crate) fn to_object_nested(
    obj: &Bound<'_, PyAny>,
    numbers: Numbers,
    max_depth: usize,
) -> PyResult<Object> {
    try_object(obj, numbers, max_depth).map_err(Failure::into_py_err)
}

/// [`to_object`], with the failure still inspectable.
pub(crate) fn try_object(
    obj: &Bound<'_, PyAny>,
    numbers: Numbers,
    max_depth: usize,
) -> Result<Object, Failure> {
    match convert(obj, numbers, 0, max_depth)? {
        Value::Object(o) => Ok(o),
        other => Err(Failure::new(
            "json_syntax",
            format!("invalid JSON: expected an object, found {}", other.kind()),
        )),
    }
}

/// The compat fast path: exact built-in types and in-range integers only; `None` when Python's
/// `json` must decide (floats, big integers, subclasses, other types, lone surrogates, cycles).
pub(crate) fn to_value_compat(obj: &Bound<'_, PyAny>, depth: usize) -> Option<Value> {
    if obj.is_none() {
        return Some(Value::Null);
    }
    if obj.is_exact_instance_of::<PyBool>() {
        return Some(Value::Bool(obj.is_truthy().ok()?));
    }
    if obj.is_exact_instance_of::<PyInt>() {
        return obj.extract::<i64>().ok().and_then(Int::new).map(Value::Int);
    }
    if obj.is_exact_instance_of::<PyString>() {
        return obj
            .cast::<PyString>()
            .ok()?
            .to_cow()
            .ok()
            .map(|s| Value::String(s.into_owned()));
    }
    if depth >= DEFAULT_MAX_DEPTH {
        return None;
    }
    if obj.is_exact_instance_of::<PyDict>() {
        let d = obj.cast::<PyDict>().ok()?;
        let mut entries: Vec<(String, Value)> = Vec::with_capacity(d.len());
        for (k, v) in d.iter() {
            if !k.is_exact_instance_of::<PyString>() {
                return None;
            }
            let key = k.cast::<PyString>().ok()?.to_cow().ok()?.into_owned();
            entries.push((key, to_value_compat(&v, depth + 1)?));
        }
        return Some(Value::Object(sorted_object(entries)));
    }
    if obj.is_exact_instance_of::<PyList>() {
        let l = obj.cast::<PyList>().ok()?;
        let mut items = Vec::with_capacity(l.len());
        for item in l.iter() {
            items.push(to_value_compat(&item, depth + 1)?);
        }
        return Some(Value::Array(items));
    }
    if obj.is_exact_instance_of::<PyTuple>() {
        let t = obj.cast::<PyTuple>().ok()?;
        let mut items = Vec::with_capacity(t.len());
        for item in t.iter() {
            items.push(to_value_compat(&item, depth + 1)?);
        }
        return Some(Value::Array(items));
    }
    None
}

/// A core [`Value`] as Python objects.
pub(crate) fn to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Int(i) => i.get().into_pyobject(py)?.into_any(),
        Value::Legacy(n) => {
            let canonical = n.canonical();
            if canonical.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
                // All digits: a Python int of any size, parsed by Python itself.
                py.get_type::<PyInt>().call1((canonical,))?
            } else {
                let x: f64 = n
                    .raw()
                    .parse()
                    .map_err(|_| PyOverflowError::new_err("legacy number is not a float"))?;
                PyFloat::new(py, x).into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(a) => {
            let list = PyList::empty(py);
            for item in a {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(o) => object_to_py(py, o)?.into_any(),
    })
}

/// A core [`Object`] as a Python `dict` (keys in canonical order).
pub(crate) fn object_to_py<'py>(py: Python<'py>, o: &Object) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in o.iter() {
        d.set_item(PyString::new(py, k), to_py(py, v)?)?;
    }
    Ok(d)
}
