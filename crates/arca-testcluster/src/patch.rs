//! The ways a client changes an object: JSON merge patch (RFC 7386), JSON
//! patch (RFC 6902), server-side apply, and what the server does to custom
//! objects by their structural schema (defaulting and pruning).

use serde_json::{Map, Value};

use crate::{Error, Result};

/// RFC 7386: objects merge recursively, `null` removes, anything else
/// replaces.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// RFC 6902, every operation including `test` (which kube-rs's finalizer
/// helper relies on to avoid lost updates).
pub(crate) fn json_patch(target: &mut Value, operations: &Value) -> Result<()> {
    let operations = operations
        .as_array()
        .ok_or_else(|| Error::BadRequest("a JSON patch is an array of operations".into()))?;
    for operation in operations {
        let op = operation["op"].as_str().unwrap_or_default();
        let path = operation["path"]
            .as_str()
            .ok_or_else(|| Error::BadRequest("a JSON patch operation needs a path".into()))?;
        match op {
            "add" => add(target, path, operation["value"].clone())?,
            "remove" => {
                remove(target, path)?;
            }
            "replace" => {
                remove(target, path)?;
                add(target, path, operation["value"].clone())?;
            }
            "test" => {
                if target.pointer(path) != Some(&operation["value"]) {
                    return Err(Error::Invalid(format!(
                        "the server rejected our request due to an error in our request: test of {path} failed"
                    )));
                }
            }
            "move" | "copy" => {
                let from = operation["from"]
                    .as_str()
                    .ok_or_else(|| Error::BadRequest(format!("{op} needs from")))?;
                let value = if op == "move" {
                    remove(target, from)?
                } else {
                    target
                        .pointer(from)
                        .cloned()
                        .ok_or_else(|| Error::Invalid(format!("no value at {from}")))?
                };
                add(target, path, value)?;
            }
            other => {
                return Err(Error::BadRequest(format!(
                    "unknown JSON patch operation {other:?}"
                )));
            }
        }
    }
    Ok(())
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// The parent of a JSON pointer and the last token.
fn split_pointer(path: &str) -> Result<(&str, String)> {
    let index = path
        .rfind('/')
        .ok_or_else(|| Error::BadRequest(format!("invalid JSON pointer {path:?}")))?;
    Ok((&path[..index], unescape(&path[index + 1..])))
}

fn add(target: &mut Value, path: &str, value: Value) -> Result<()> {
    if path.is_empty() {
        *target = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    let missing = || Error::Invalid(format!("no parent for {path}"));
    match target.pointer_mut(parent).ok_or_else(missing)? {
        Value::Object(map) => {
            map.insert(last, value);
        }
        Value::Array(items) => {
            let index = if last == "-" {
                items.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|&i| i <= items.len())
                    .ok_or_else(|| Error::Invalid(format!("bad array index in {path}")))?
            };
            items.insert(index, value);
        }
        _ => return Err(missing()),
    }
    Ok(())
}

fn remove(target: &mut Value, path: &str) -> Result<Value> {
    let (parent, last) = split_pointer(path)?;
    let missing = || Error::Invalid(format!("nothing at {path}"));
    match target.pointer_mut(parent).ok_or_else(missing)? {
        Value::Object(map) => map.remove(&last).ok_or_else(missing),
        Value::Array(items) => {
            let index = last
                .parse::<usize>()
                .ok()
                .filter(|&i| i < items.len())
                .ok_or_else(missing)?;
            Ok(items.remove(index))
        }
        _ => Err(missing()),
    }
}

/// Server-side apply by one field manager: the fields it applied last time
/// and no longer applies are removed, then the new configuration is merged
/// in (maps recursively; lists and scalars are replaced whole, as for
/// atomic lists). Other managers' fields stay. Every apply is treated as
/// forced: conflicts between managers are not detected.
pub(crate) fn apply(target: &mut Value, previous: Option<&Value>, applied: &Value) {
    if let Some(previous) = previous {
        remove_unapplied(target, previous, applied);
    }
    deep_merge(target, applied);
}

fn remove_unapplied(target: &mut Value, previous: &Value, applied: &Value) {
    let (Value::Object(target), Value::Object(previous)) = (target, previous) else {
        return;
    };
    for (key, old) in previous {
        match applied.get(key) {
            None => {
                target.remove(key);
            }
            Some(new) if old.is_object() && new.is_object() => {
                if let Some(child) = target.get_mut(key) {
                    remove_unapplied(child, old, new);
                }
            }
            Some(_) => {}
        }
    }
}

fn deep_merge(target: &mut Value, applied: &Value) {
    match (target, applied) {
        (Value::Object(target), Value::Object(applied)) => {
            for (key, value) in applied {
                match target.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        deep_merge(existing, value);
                    }
                    _ => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (target, applied) => *target = applied.clone(),
    }
}

/// What the API server does to a custom object with a structural schema:
/// fields the schema does not declare are dropped (unless it says
/// `x-kubernetes-preserve-unknown-fields`), and absent fields with a
/// `default` get it.
pub(crate) fn default_and_prune(value: &mut Value, schema: &Value, is_root: bool) {
    if schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true)
        && schema.get("properties").is_none()
    {
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema["properties"].as_object() {
                let keep_unknown =
                    schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true);
                map.retain(|key, _| {
                    keep_unknown
                        || properties.contains_key(key)
                        || (is_root && matches!(key.as_str(), "apiVersion" | "kind" | "metadata"))
                });
                for (key, property) in properties {
                    if !map.contains_key(key)
                        && let Some(default) = property.get("default")
                    {
                        map.insert(key.clone(), default.clone());
                    }
                    if let Some(child) = map.get_mut(key)
                        && !(is_root && key == "metadata")
                    {
                        default_and_prune(child, property, false);
                    }
                }
            } else if let Some(additional) =
                schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for child in map.values_mut() {
                    default_and_prune(child, additional, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    default_and_prune(item, item_schema, false);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
        merge_patch(&mut doc, &json!({"list": [1, 2]}));
        merge_patch(&mut doc, &json!({"list": [3]}));
        assert_eq!(doc["list"], json!([3]));
    }

    #[test]
    fn json_patch_applies_every_operation_and_a_failed_test_stops_it() {
        let mut doc = json!({"metadata": {"finalizers": ["a"], "resourceVersion": "5"}});
        json_patch(
            &mut doc,
            &json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "5"},
                {"op": "add", "path": "/metadata/finalizers/-", "value": "b"},
                {"op": "replace", "path": "/metadata/resourceVersion", "value": "6"},
                {"op": "copy", "from": "/metadata/resourceVersion", "path": "/copied"},
                {"op": "move", "from": "/copied", "path": "/moved"},
                {"op": "remove", "path": "/metadata/finalizers/0"}
            ]),
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({"metadata": {"finalizers": ["b"], "resourceVersion": "6"}, "moved": "6"})
        );
        let failed = json_patch(
            &mut doc,
            &json!([{"op": "test", "path": "/metadata/resourceVersion", "value": "5"}]),
        );
        assert!(matches!(failed, Err(Error::Invalid(_))), "{failed:?}");
    }

    #[test]
    fn apply_removes_only_what_the_manager_stopped_applying() {
        let mut doc = json!({"spec": {"a": 1, "b": 2}, "other": {"x": 1}});
        let previous = json!({"spec": {"a": 1, "b": 2}});
        apply(&mut doc, Some(&previous), &json!({"spec": {"a": 3}}));
        assert_eq!(doc, json!({"spec": {"a": 3}, "other": {"x": 1}}));
    }

    #[test]
    fn schemas_default_absent_fields_and_prune_unknown_ones() {
        let schema = json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {
                    "paused": {"type": "boolean", "default": false},
                    "items": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "string"}}}},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                }}
            }
        });
        let mut object = json!({
            "apiVersion": "g/v1", "kind": "K", "metadata": {"name": "x", "labels": {"a": "b"}},
            "spec": {"unknown": 1, "items": [{"n": "a", "junk": 2}], "free": {"anything": [1]}},
            "extra": true
        });
        default_and_prune(&mut object, &schema, true);
        assert_eq!(
            object,
            json!({
                "apiVersion": "g/v1", "kind": "K", "metadata": {"name": "x", "labels": {"a": "b"}},
                "spec": {"paused": false, "items": [{"n": "a"}], "free": {"anything": [1]}}
            })
        );
    }
}
