//! `${env:NAME}` and `${file:PATH}` references.
//!
//! Ordinary settings (addresses, tenant ids) are interpolated when the file is loaded, so the
//! meta-store holds plain values. Secret settings keep the reference itself: it is stored as is
//! and resolved only when a connection is opened, so the secret never touches the meta-store.
//! A secret written literally in the file is stored encrypted instead.

use std::path::Path;

use crate::load::Problem;

/// Keys whose values are secrets: references are kept, not resolved, at load time.
pub const SECRET_FIELDS: &[&str] = &["password", "client_secret"];

/// A parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(String),
}

impl SecretRef {
    /// Parses a whole value of the form `${env:NAME}` or `${file:PATH}`.
    pub fn parse(value: &str) -> Option<Self> {
        let inner = value.strip_prefix("${")?.strip_suffix('}')?;
        if let Some(name) = inner.strip_prefix("env:") {
            return Some(Self::Env(name.to_owned()));
        }
        inner
            .strip_prefix("file:")
            .map(|path| Self::File(path.to_owned()))
    }

    /// Reads the referenced value now.
    pub fn resolve(&self) -> Result<String, String> {
        match self {
            Self::Env(name) => std::env::var(name).map_err(|_| {
                format!("environment variable `{name}` is not set (export it, or write the value)")
            }),
            Self::File(path) => std::fs::read_to_string(Path::new(path))
                .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|error| format!("cannot read `{path}`: {error}")),
        }
    }
}

/// Replaces references inside every string of `tree`, except under keys named in `keep`.
/// References may be embedded (`postgres://${env:PGHOST}:5432/db`).
pub fn interpolate(
    tree: &mut serde_json::Value,
    path: &str,
    keep: &[&str],
    problems: &mut Vec<Problem>,
) {
    match tree {
        serde_json::Value::String(text) if text.contains("${") => match interpolate_str(text) {
            Ok(resolved) => *text = resolved,
            Err(message) => problems.push(
                Problem::new(path, message)
                    .fix("set the variable or file, or write the value itself"),
            ),
        },
        serde_json::Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                interpolate(item, &format!("{path}[{index}]"), keep, problems);
            }
        }
        serde_json::Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if keep.contains(&key.as_str()) {
                    if let serde_json::Value::String(text) = value
                        && text.contains("${")
                        && SecretRef::parse(text).is_none()
                    {
                        problems.push(
                            Problem::new(child, "a secret reference must be the whole value")
                                .fix("write `${env:NAME}` or `${file:PATH}` alone"),
                        );
                    }
                    continue;
                }
                interpolate(value, &child, keep, problems);
            }
        }
        _ => {}
    }
}

fn interpolate_str(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("`{text}` has an unclosed `${{`"))?;
        let reference = SecretRef::parse(&after[..=end]).ok_or_else(|| {
            format!(
                "`{}` is not a reference; use `${{env:NAME}}` or `${{file:PATH}}`",
                &after[..=end]
            )
        })?;
        out.push_str(&reference.resolve()?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whole_references_only() {
        assert_eq!(
            SecretRef::parse("${env:A}"),
            Some(SecretRef::Env("A".into()))
        );
        assert_eq!(
            SecretRef::parse("${file:/x/y}"),
            Some(SecretRef::File("/x/y".into()))
        );
        assert_eq!(SecretRef::parse("x${env:A}"), None);
        assert_eq!(SecretRef::parse("${vault:A}"), None);
    }

    #[test]
    fn interpolates_plain_fields_and_keeps_secret_references() {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), "tenant-from-file\n").expect("write");
        let mut tree = serde_json::json!({
            "url": format!("x-${{file:{}}}-y", file.path().display()),
            "password": "${env:SYNCBRIDGE_TEST_UNSET_VARIABLE}",
        });
        let mut problems = Vec::new();
        interpolate(&mut tree, "", SECRET_FIELDS, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(tree["url"], "x-tenant-from-file-y");
        assert_eq!(tree["password"], "${env:SYNCBRIDGE_TEST_UNSET_VARIABLE}");
    }

    #[test]
    fn missing_variables_are_reported_with_their_path() {
        let mut tree = serde_json::json!({"a": [{"b": "${env:SYNCBRIDGE_TEST_UNSET_VARIABLE}"}]});
        let mut problems = Vec::new();
        interpolate(&mut tree, "", SECRET_FIELDS, &mut problems);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "a[0].b");
        assert!(
            problems[0]
                .message
                .contains("SYNCBRIDGE_TEST_UNSET_VARIABLE")
        );
    }
}
