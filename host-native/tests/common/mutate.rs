//! Mutations of JSON a peer could send: values of another type, keys removed, entries
//! repeated, long strings, deep nesting (the tests of bad requests and of hostile answers).

use mxfed_core::canonical::{Int, Object, Value};

/// A deterministic generator (xorshift): the same mutations every run.
pub struct Rng(pub u64);

impl Rng {
    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// A value a peer could put anywhere: each type, edges of the integer range, IDs, a long
/// string, deep nesting.
fn odd_value(rng: &mut Rng) -> Value {
    match rng.below(12) {
        0 => Value::Null,
        1 => Value::Bool(true),
        2 => Value::Int(Int::new(0).unwrap()),
        3 => Value::Int(Int::new(-1).unwrap()),
        4 => Value::Int(Int::new(mxfed_core::canonical::MAX_SAFE_INT).unwrap()),
        5 => Value::from(""),
        6 => Value::from("@eve:remote.test"),
        7 => Value::from("$nope"),
        8 => Value::Array(Vec::new()),
        9 => Value::Object(Object::new()),
        10 => Value::from("a".repeat(5000)),
        _ => (0..40).fold(Value::Null, |v, _| Value::Array(vec![v])),
    }
}

fn nodes(v: &Value) -> usize {
    1 + match v {
        Value::Object(o) => o.values().map(nodes).sum(),
        Value::Array(a) => a.iter().map(nodes).sum(),
        _ => 0,
    }
}

/// Changes node `target` (in pre-order) of `v`: another value, a key removed, an array entry
/// repeated or wrapped in an array. Returns whether `target` was in `v`.
fn mutate_at(v: &mut Value, target: usize, seen: &mut usize, rng: &mut Rng) -> bool {
    if *seen == target {
        match (rng.below(4), &mut *v) {
            (2, Value::Object(o)) if !o.is_empty() => {
                let key = o.keys().nth(rng.below(o.len())).unwrap().to_owned();
                o.remove(&key);
            }
            (3, Value::Array(a)) if !a.is_empty() => a.push(a[0].clone()),
            (3, _) => *v = Value::Array(vec![v.clone()]),
            _ => *v = odd_value(rng),
        }
        return true;
    }
    *seen += 1;
    match v {
        Value::Object(o) => {
            let keys: Vec<String> = o.keys().map(str::to_owned).collect();
            keys.iter()
                .any(|k| mutate_at(o.get_mut(k).unwrap(), target, seen, rng))
        }
        Value::Array(a) => a.iter_mut().any(|x| mutate_at(x, target, seen, rng)),
        _ => false,
    }
}

/// `body` with one to three mutations.
pub fn mutated(body: &Object, rng: &mut Rng) -> Object {
    let mut v = Value::Object(body.clone());
    for _ in 0..=rng.below(3) {
        let target = rng.below(nodes(&v));
        mutate_at(&mut v, target, &mut 0, rng);
    }
    match v {
        Value::Object(o) => o,
        other => {
            let mut o = Object::new();
            o.insert("x", other);
            o
        }
    }
}
