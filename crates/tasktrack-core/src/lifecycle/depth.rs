//! How deeply user JSON may nest: data, patches, outputs, job metadata.

use crate::error::{Error, Result};
use serde_json::Value;

/// The deepest nesting of arrays and objects accepted in user JSON (task data, a data patch, an
/// output, job metadata); a scalar is depth 0, `[1]` depth 1.
///
/// serde_json writes any depth but refuses to read one over 128, so a deeper value would be
/// stored and then never read back (a task gone from `list`, a job every command calls
/// `Corrupt`). Backends wrap user JSON in more levels (the task document, a history entry, an
/// index log line; MongoDB's BSON stops at 100), so the limit is half of serde_json's, a wide
/// margin that no real payload comes near.
pub const MAX_JSON_DEPTH: usize = 64;

/// How many levels of arrays and objects `value` nests. Iterative, so a value far deeper than
/// the thread's stack allows is measured (and refused) rather than crashing the process.
pub fn json_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut pending: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((v, depth)) = pending.pop() {
        match v {
            Value::Array(items) => {
                deepest = deepest.max(depth + 1);
                pending.extend(items.iter().map(|item| (item, depth + 1)));
            }
            Value::Object(map) => {
                deepest = deepest.max(depth + 1);
                pending.extend(map.values().map(|item| (item, depth + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// [`Error::InvalidInput`] when `value` nests deeper than [`MAX_JSON_DEPTH`]; `what` names it
/// in the message ("task j/t: data"). Every entry point of user JSON calls it before writing,
/// native paths included, through the lifecycle rules or directly.
pub fn check_json_depth(value: &Value, what: impl FnOnce() -> String) -> Result<()> {
    // Scalars and flat values, the usual case, need no walk.
    if !value.is_array() && !value.is_object() {
        return Ok(());
    }
    let depth = json_depth(value);
    if depth > MAX_JSON_DEPTH {
        return Err(Error::invalid(format!(
            "{} nests {depth} levels deep; the limit is {MAX_JSON_DEPTH}",
            what()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::nested_json as nested;
    use serde_json::json;

    /// Takes `v` apart one level at a time: serde_json drops a value recursively, which would
    /// overflow the stack on the very deep values these tests build.
    fn dismantle(mut v: Value) {
        loop {
            v = match v {
                Value::Array(mut items) => items.pop().unwrap_or(Value::Null),
                Value::Object(mut map) => map.remove("k").unwrap_or(Value::Null),
                _ => return,
            };
        }
    }

    #[test]
    fn depth_counts_arrays_and_objects() {
        assert_eq!(json_depth(&json!(1)), 0);
        assert_eq!(json_depth(&json!([])), 1);
        assert_eq!(json_depth(&json!({ "a": [1, { "b": [] }], "c": 2 })), 4);
        assert_eq!(json_depth(&nested(65)), 65);
    }

    #[test]
    fn the_limit_is_inclusive() {
        assert!(check_json_depth(&nested(MAX_JSON_DEPTH), || "x".into()).is_ok());
        let refused = check_json_depth(&nested(MAX_JSON_DEPTH + 1), || "task j/t: data".into());
        assert!(
            matches!(&refused, Err(Error::InvalidInput(m))
                if m == "task j/t: data nests 65 levels deep; the limit is 64"),
            "{refused:?}"
        );
    }

    /// Far deeper than any stack allows recursion to go: measured and refused, not a crash.
    #[test]
    fn a_very_deep_value_is_refused_without_overflowing() {
        let deep = nested(100_000);
        let refused = check_json_depth(&deep, || "output".into());
        assert!(
            matches!(&refused, Err(Error::InvalidInput(m)) if m.contains("100000 levels")),
            "{refused:?}"
        );
        dismantle(deep);
    }
}
