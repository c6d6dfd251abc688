//! `valueFrom.fieldRef`: a path into the Rollout (`metadata.labels['app']`,
//! `spec.template.spec.containers[0].image`), read as Argo Rollouts reads it.

/// The value at a field path of an object, as text: `metadata.name`,
/// `metadata.labels['app']`, `metadata.annotations["example.com/team"]`,
/// `spec.template.spec.containers[0].image`. Strings are taken as they are, numbers and
/// booleans as written; a path ending at an object, a list or null is an error, as in Argo.
pub fn field_value(object: &serde_json::Value, path: &str) -> Result<String, String> {
    let mut current = object;
    for segment in parse_field_path(path)? {
        current = match segment {
            Segment::Key(key) => current
                .get(&key)
                .ok_or_else(|| format!("no field {key:?}"))?,
            Segment::Index(i) => current.get(i).ok_or_else(|| format!("no element [{i}]"))?,
        };
    }
    match current {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Null => Err("the field is null".to_owned()),
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
            Err("the path must end at a single value, not a list or an object".to_owned())
        }
        other => Ok(other.to_string()),
    }
}

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    /// `.name` or `['name']`.
    Key(String),
    /// `[0]`.
    Index(usize),
}

/// Splits a field path into keys and indexes.
fn parse_field_path(path: &str) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut rest = path.trim().strip_prefix('.').unwrap_or(path.trim());
    if rest.is_empty() {
        return Err("the path is empty".to_owned());
    }
    let mut expect_key = true;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after
                .find(']')
                .ok_or_else(|| "'[' without ']'".to_owned())?;
            let inner = after[..end].trim();
            let quoted = inner
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
            segments.push(match quoted {
                Some(key) => Segment::Key(key.to_owned()),
                None => Segment::Index(
                    inner
                        .parse()
                        .map_err(|_| format!("[{inner}] is neither an index nor a quoted key"))?,
                ),
            });
            rest = &after[end + 1..];
            expect_key = false;
        } else if let Some(after) = rest.strip_prefix('.') {
            if expect_key {
                return Err("empty field name".to_owned());
            }
            rest = after;
            expect_key = true;
        } else {
            if !expect_key {
                return Err(format!("expected '.' or '[' before {rest:?}"));
            }
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            segments.push(Segment::Key(rest[..end].to_owned()));
            rest = &rest[end..];
            expect_key = false;
        }
    }
    if expect_key {
        return Err("the path ends with '.'".to_owned());
    }
    Ok(segments)
}
