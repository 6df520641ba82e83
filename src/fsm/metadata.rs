//! Checkpoint metadata filters: exact string pairs on the `metadata` map, and JSON
//! values on `metadata_json` (LangGraph's metadata, whose filters compare JSON values:
//! `{"step": 1}` matches a step stored as `1` or `1.0`).
//!
//! A checkpoint written before `metadata_json` existed (or by a client that fills only
//! the map) is matched on its map, each value read as JSON text, or as a JSON string
//! when it is not JSON: the earlier Python saver stored canonical JSON text there.

use crate::error::{Error, Result};
use crate::proto::Checkpoint;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// What a listing keeps: every exact pair and every JSON pair must match.
#[derive(Debug, Default)]
pub(crate) struct MetadataFilter {
    exact: BTreeMap<String, String>,
    json: Map<String, Value>,
}

impl MetadataFilter {
    /// The filter of a list request; `filter_json` must be "" or a JSON object.
    pub(crate) fn new(exact: BTreeMap<String, String>, filter_json: &str) -> Result<Self> {
        let json = if filter_json.is_empty() {
            Map::new()
        } else {
            json_object("filter_json", filter_json)?
        };
        Ok(Self { exact, json })
    }

    /// Whether the checkpoint's metadata `run_id` is a JSON string in `run_ids`
    /// (what `DeleteForRuns` removes).
    pub(crate) fn run_id_in(cp: &Checkpoint, run_ids: &[String]) -> bool {
        match field(cp, "run_id") {
            Some(Value::String(s)) => run_ids.contains(&s),
            _ => false,
        }
    }

    pub(crate) fn matches(&self, cp: &Checkpoint) -> bool {
        self.exact
            .iter()
            .all(|(k, v)| cp.metadata.get(k) == Some(v))
            && self
                .json
                .iter()
                .all(|(k, want)| field(cp, k).is_some_and(|have| json_eq(&have, want)))
    }
}

/// Checks a checkpoint's `metadata_json` ("" or a JSON object).
pub(crate) fn validate_metadata_json(text: &str) -> Result<()> {
    if !text.is_empty() {
        json_object("checkpoint.metadata_json", text)?;
    }
    Ok(())
}

fn json_object(field: &str, text: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::invalid(field, "must be a JSON object")),
        Err(e) => Err(Error::invalid(field, format!("not JSON: {e}"))),
    }
}

/// The JSON value of metadata key `key`: from `metadata_json` when the checkpoint has
/// one, else from the map. A stored `metadata_json` was checked when it was written;
/// one that does not parse (it cannot, short of a corrupt record) matches nothing.
fn field(cp: &Checkpoint, key: &str) -> Option<Value> {
    if !cp.metadata_json.is_empty() {
        return match serde_json::from_str::<Value>(&cp.metadata_json) {
            Ok(Value::Object(mut m)) => m.remove(key),
            _ => None,
        };
    }
    let text = cp.metadata.get(key)?;
    Some(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone())))
}

/// JSON equality: numbers by value, objects by key set and values, arrays in order.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(x), Some(y)) => x == y,
                _ => x.as_f64().zip(y.as_f64()).is_some_and(|(x, y)| x == y),
            },
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cp(json: &str, map: &[(&str, &str)]) -> Checkpoint {
        Checkpoint {
            metadata_json: json.into(),
            metadata: map
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn filter(j: &str) -> MetadataFilter {
        MetadataFilter::new(BTreeMap::new(), j).expect("a valid filter")
    }

    #[test]
    fn json_values_compare_as_json() {
        assert!(json_eq(&json!(1), &json!(1.0)));
        assert!(!json_eq(&json!(1), &json!(2)));
        assert!(!json_eq(&json!(1), &json!("1")));
        assert!(json_eq(
            &json!({"a": [1, {"b": null}]}),
            &json!({"a": [1.0, {"b": null}]})
        ));
        assert!(!json_eq(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(!json_eq(&json!([1, 2]), &json!([2, 1])));
        assert!(json_eq(&json!(u64::MAX), &json!(u64::MAX)));
        assert!(!json_eq(&json!(-1), &json!(u64::MAX)));
    }

    #[test]
    fn filters_match_json_metadata_and_the_older_text_map() {
        let c = cp(
            r#"{"step": 3, "source": "loop", "writes": {"n": [1]}}"#,
            &[],
        );
        assert!(filter(r#"{"step": 3.0}"#).matches(&c));
        assert!(filter(r#"{"step": 3, "source": "loop"}"#).matches(&c));
        assert!(filter(r#"{"writes": {"n": [1]}}"#).matches(&c));
        assert!(!filter(r#"{"step": "3"}"#).matches(&c));
        assert!(!filter(r#"{"missing": null}"#).matches(&c));
        assert!(filter("").matches(&c));
        // The map as the earlier saver wrote it: canonical JSON text, or plain text.
        let old = cp(
            "",
            &[("step", "3"), ("source", "\"loop\""), ("note", "plain")],
        );
        assert!(filter(r#"{"step": 3, "source": "loop", "note": "plain"}"#).matches(&old));
        assert!(!filter(r#"{"step": 4}"#).matches(&old));
        // Exact pairs still compare text.
        let exact = MetadataFilter::new([("step".into(), "3".into())].into(), "").expect("valid");
        assert!(exact.matches(&old));
        assert!(!exact.matches(&c));
        assert!(MetadataFilter::run_id_in(
            &cp(r#"{"run_id": "r1"}"#, &[]),
            &["r0".into(), "r1".into()]
        ));
        assert!(MetadataFilter::run_id_in(
            &cp("", &[("run_id", "\"r1\"")]),
            &["r1".into()]
        ));
        assert!(!MetadataFilter::run_id_in(
            &cp(r#"{"run_id": 1}"#, &[]),
            &["1".into()]
        ));
    }

    #[test]
    fn bad_json_is_a_specific_error() {
        for bad in ["{", "[1]", "3", "\"x\"", "{\"a\":}"] {
            match MetadataFilter::new(BTreeMap::new(), bad) {
                Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "filter_json"),
                other => panic!("{bad}: {other:?}"),
            }
            assert!(validate_metadata_json(bad).is_err());
        }
        assert!(validate_metadata_json("").is_ok());
        assert!(validate_metadata_json("{}").is_ok());
    }
}
