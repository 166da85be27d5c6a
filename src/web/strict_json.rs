//! Strict JSON: a body with a key twice (`{"amount": 1, "amount": 9}`) is
//! ambiguous, and parsers disagree on which value wins, so it is refused;
//! so are NUL and the other C0 control characters in strings (tab,
//! newline and carriage return aside), which no field of paylink's needs
//! and which break logs, CSV exports and other systems downstream. Both
//! are reported with the offending field's path as `param`.

use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a body is refused, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub param: String,
    pub message: String,
}

/// Parses `bytes` as JSON, refusing duplicate keys and control characters.
/// `Err(Err(_))` is malformed JSON (the caller words that error).
pub fn parse(bytes: &[u8]) -> Result<Value, Result<Refusal, serde_json::Error>> {
    let refusal = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict {
        path: String::new(),
        refusal: &refusal,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    match (parsed, refusal.into_inner()) {
        (_, Some(refusal)) => Err(Ok(refusal)),
        (Ok(value), None) => Ok(value),
        (Err(error), None) => Err(Err(error)),
    }
}

struct Strict<'a> {
    path: String,
    refusal: &'a RefCell<Option<Refusal>>,
}

impl Strict<'_> {
    fn child(&self, segment: &str) -> String {
        if self.path.is_empty() {
            segment.to_owned()
        } else {
            format!("{}.{segment}", self.path)
        }
    }

    fn refuse<E: serde::de::Error>(&self, param: String, message: String) -> E {
        *self.refusal.borrow_mut() = Some(Refusal { param, message });
        E::custom("refused")
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        let forbidden = |c: &char| c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r');
        if let Some(c) = v.chars().find(forbidden) {
            let param = if self.path.is_empty() {
                "body".to_owned()
            } else {
                self.path.clone()
            };
            return Err(self.refuse(
                param.clone(),
                format!("`{param}` contains a control character (U+{:04X}); only tab and newline are allowed.", u32::from(c)),
            ));
        }
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        self.visit_str(&v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict {
            path: format!("{}[{}]", self.path, items.len()),
            refusal: self.refusal,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = self.child(&key);
            if key.chars().any(|c| c.is_control()) {
                return Err(self.refuse(path, "A field name contains a control character.".into()));
            }
            if object.contains_key(&key) {
                return Err(self.refuse(
                    path.clone(),
                    format!("`{path}` appears more than once in the body; send each field once."),
                ));
            }
            let value = map.next_value_seed(Strict {
                path,
                refusal: self.refusal,
            })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: &str) -> Refusal {
        match parse(body.as_bytes()) {
            Err(Ok(refusal)) => refusal,
            other => panic!("{body} was not refused: {other:?}"),
        }
    }

    #[test]
    fn duplicate_keys_and_control_characters_are_refused_where_they_are() {
        assert_eq!(refused(r#"{"amount": 1, "amount": 9}"#).param, "amount");
        assert_eq!(
            refused(r#"{"metadata": {"a": "1", "a": "2"}}"#).param,
            "metadata.a"
        );
        assert_eq!(
            refused(r#"{"description": "a\u0000b"}"#).param,
            "description"
        );
        assert_eq!(
            refused(r#"{"customer": {"first_name": "J\u001bane"}}"#).param,
            "customer.first_name"
        );
        assert_eq!(
            refused(r#"{"line_items": [{"name": "x\u0007"}]}"#).param,
            "line_items[0].name"
        );
        assert!(parse(br#"{"description": "tab\there\nnewline"}"#).is_ok());
        assert!(matches!(parse(b"{\"a\": 1,"), Err(Err(_))));
    }
}
