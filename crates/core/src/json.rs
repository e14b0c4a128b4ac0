//! JSON that means one thing. serde_json keeps the last of two equal keys
//! (`{"user":"a","user":"b"}` is `{"user":"b"}`), while another parser may read the
//! first: a token's header or claims (the service behind tokengate, RFC 8725), or an
//! admin request body (a proxy, a WAF or an audit tool in front of tokengate) would then
//! mean something else to it than to tokengate. A duplicate key anywhere is refused.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The dotted path of the first duplicated key (`user`, `a.b`, `list[2].x`).
    Duplicate(String),
    /// Not JSON at all.
    Invalid,
}

/// Parses `bytes` as JSON, refusing a duplicate key in any object at any depth.
/// serde_json's nesting limit still applies.
pub fn parse_unique(bytes: &[u8]) -> Result<Value, BodyError> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = Unique {
        duplicate: &duplicate,
        path: String::new(),
    };
    let parsed = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match (parsed, duplicate.into_inner()) {
        (_, Some(path)) => Err(BodyError::Duplicate(path)),
        (Ok(v), None) => Ok(v),
        (Err(_), None) => Err(BodyError::Invalid),
    }
}

/// A value at `path`; records the first duplicate key it meets.
struct Unique<'a> {
    duplicate: &'a RefCell<Option<String>>,
    path: String,
}

impl<'a> Unique<'a> {
    fn child(&self, step: &str) -> Unique<'a> {
        let path = if self.path.is_empty() || step.starts_with('[') {
            format!("{}{step}", self.path)
        } else {
            format!("{}.{step}", self.path)
        };
        Unique {
            duplicate: self.duplicate,
            path,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Unique<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique<'_> {
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
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(self.child(&format!("[{}]", items.len())))? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let child = self.child(&key);
            if out.contains_key(&key) {
                let mut duplicate = self.duplicate.borrow_mut();
                duplicate.get_or_insert(child.path);
                return Err(de::Error::custom("duplicate key"));
            }
            let value = map.next_value_seed(child)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_json_parses_as_serde_json_does() {
        let text = br#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}],"c":"d"}"#;
        let want: Value = serde_json::from_slice(text).unwrap();
        assert_eq!(parse_unique(text), Ok(want));
    }

    #[test]
    fn a_duplicate_key_at_any_depth_is_refused_by_its_path() {
        let cases: [(&[u8], &str); 4] = [
            (br#"{"user":"a","user":"b"}"#, "user"),
            (br#"{"x":{"y":1,"y":2}}"#, "x.y"),
            (br#"{"l":[{}, {"k":1,"k":1}]}"#, "l[1].k"),
            (br#"[{"a":1,"a":1}]"#, "[0].a"),
        ];
        // equal once unescaped: what any other parser would read as the same key
        assert_eq!(
            parse_unique(br#"{"user":"a","\u0075ser":"b"}"#),
            Err(BodyError::Duplicate("user".into()))
        );
        for (text, path) in cases {
            assert_eq!(parse_unique(text), Err(BodyError::Duplicate(path.into())));
        }
    }

    #[test]
    fn garbage_trailing_data_and_deep_nesting_are_invalid() {
        assert_eq!(parse_unique(b"{"), Err(BodyError::Invalid));
        assert_eq!(parse_unique(b"{} {}"), Err(BodyError::Invalid));
        let deep = "[".repeat(10_000);
        assert_eq!(parse_unique(deep.as_bytes()), Err(BodyError::Invalid));
    }
}
