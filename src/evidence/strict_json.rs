//! The manifest's JSON, read strictly: a key given twice is refused (plain JSON parsers keep the
//! last one silently, so two programs could read two different manifests from one file),
//! nesting is bounded, and every key and string is checked for length and control characters.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::Violation;

/// Objects and arrays may nest this deep (the manifest itself needs three levels).
pub const MAX_DEPTH: usize = 10;
/// Longest string value, in characters (an acceptance text fits comfortably).
pub const MAX_STRING_CHARS: usize = 4096;
/// Longest object key, in characters.
pub const MAX_KEY_CHARS: usize = 64;

/// Parses `bytes` as JSON, refusing duplicate keys and nesting deeper than [`MAX_DEPTH`].
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Node { path: String::new(), depth: 0 }.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// Every string and key in `value` that is too long or holds a control or bidirectional-override
/// character, as violations naming their field.
pub fn check_strings(value: &Value, path: &str, out: &mut Vec<Violation>) {
    match value {
        Value::String(s) => check_text(s, MAX_STRING_CHARS, path, out),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_strings(item, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let field = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                check_text(key, MAX_KEY_CHARS, &format!("{field} (the key)"), out);
                check_strings(item, &field, out);
            }
        }
        _ => {}
    }
}

fn check_text(s: &str, max: usize, field: &str, out: &mut Vec<Violation>) {
    let chars = s.chars().count();
    if chars > max {
        out.push(Violation {
            field: field.to_owned(),
            rule: format!("is {chars} characters, over the limit of {max}"),
        });
    }
    if let Some(c) = s.chars().find(|&c| is_forbidden(c)) {
        out.push(Violation {
            field: field.to_owned(),
            rule: format!("must not contain control characters (found U+{:04X})", c as u32),
        });
    }
}

/// Control characters (NUL, newlines, escapes) and the invisible characters that reorder or
/// hide text (bidirectional overrides, zero-width marks), which could make a name display as
/// another.
fn is_forbidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// A JSON value at `path`, `depth` levels down.
struct Node {
    path: String,
    depth: usize,
}

impl Node {
    fn child(&self, key: &str) -> Node {
        let path = if self.path.is_empty() { key.to_owned() } else { format!("{}.{key}", self.path) };
        Node { path, depth: self.depth + 1 }
    }

    fn name(&self) -> &str {
        if self.path.is_empty() {
            "manifest"
        } else {
            &self.path
        }
    }

    fn enter<E: de::Error>(&self) -> Result<(), E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format!("{}: nested deeper than {MAX_DEPTH} levels", self.name())));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Node {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.child(&format!("[{}]", items.len())))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("{}: key {key:?} is given twice", self.child(&key).path)));
            }
            let value = map.next_value_seed(self.child(&key))?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}
