//! Reading pages through `COPY (SELECT …) TO STDOUT` in text format.
//!
//! A keyset page read as a query costs the server a `DataRow` message per row (each value
//! framed and sent through its type's send function) and the driver a row object, a type check
//! and a decode per value; `COPY` renders each value with its type's output function into one
//! line per row, which is what a full read needs anyway (every value is converted from its
//! text). `COPY` takes no bind parameters, so keyset bounds are written as escaped literals
//! ([`literal`]).

use std::borrow::Cow;

use bytes::Bytes;
use sqlx::PgConnection;
use sqlx::pool::PoolConnection;

/// An SQL literal of `value` cast to `sql_type`: `E'…'` with backslashes and quotes escaped,
/// so its meaning does not depend on `standard_conforming_strings`; `NULL` for `None`.
pub fn literal(value: Option<&str>, sql_type: &str) -> String {
    let Some(value) = value else {
        return format!("NULL::{sql_type}");
    };
    let mut out = String::with_capacity(value.len() + sql_type.len() + 6);
    out.push_str("E'");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("''"),
            other => out.push(other),
        }
    }
    out.push_str("'::");
    out.push_str(sql_type);
    out
}

/// Splits `COPY` data into lines. The server sends a row per message, but the protocol does not
/// promise it, so a line split across messages is joined.
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Calls `line` for every complete line of `chunk` (without its newline).
    pub fn feed<E>(
        &mut self,
        chunk: &Bytes,
        mut line: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut rest: &[u8] = chunk;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            if self.partial.is_empty() {
                line(&rest[..end])?;
            } else {
                self.partial.extend_from_slice(&rest[..end]);
                let joined = std::mem::take(&mut self.partial);
                line(&joined)?;
            }
            rest = &rest[end + 1..];
        }
        self.partial.extend_from_slice(rest);
        Ok(())
    }

    /// Whether data after the last newline is waiting (a truncated stream).
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty()
    }
}

/// The fields of a text-format line: `None` for `\N` (NULL), escapes decoded (only a field with
/// a backslash is copied). `Err` names a field that is not UTF-8.
pub fn fields(line: &[u8]) -> impl Iterator<Item = Result<Option<Cow<'_, str>>, String>> {
    line.split(|b| *b == b'\t').map(|field| {
        if field == b"\\N" {
            return Ok(None);
        }
        let text = if field.contains(&b'\\') {
            Cow::Owned(unescape(field))
        } else {
            Cow::Borrowed(field)
        };
        match text {
            Cow::Borrowed(bytes) => std::str::from_utf8(bytes).map(Cow::Borrowed),
            Cow::Owned(bytes) => String::from_utf8(bytes)
                .map(Cow::Owned)
                .map_err(|e| e.utf8_error()),
        }
        .map(Some)
        .map_err(|e| format!("a value is not valid UTF-8 ({e})"))
    })
}

/// Decodes the backslash sequences of `COPY`'s text format: `\b \f \n \r \t \v`, octal `\ooo`,
/// hex `\xhh`, and any other character taken as itself (`\\`).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        i += 1;
        if b != b'\\' || i == field.len() {
            out.push(b);
            continue;
        }
        let c = field[i];
        i += 1;
        match c {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut value = u32::from(c - b'0');
                for _ in 0..2 {
                    match field.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(value as u8);
            }
            b'x' if field.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut value = 0u8;
                for _ in 0..2 {
                    match field.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            value = value * 16 + d as u8;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push(value);
            }
            other => out.push(other),
        }
    }
    out
}

/// A pooled connection that is closed rather than returned to the pool unless the `COPY` on it
/// ran to its end: a stream dropped mid-copy leaves the rest of the copy's messages on the
/// connection, which the next query would read.
pub struct CopyConnection(Option<PoolConnection<sqlx::Postgres>>);

impl CopyConnection {
    pub fn new(connection: PoolConnection<sqlx::Postgres>) -> Self {
        Self(Some(connection))
    }

    pub fn get(&mut self) -> &mut PgConnection {
        self.0.as_mut().expect("held until dropped or finished")
    }

    /// The copy ran to its end: the connection goes back to the pool.
    pub fn finished(mut self) {
        self.0.take();
    }
}

impl Drop for CopyConnection {
    fn drop(&mut self) {
        if let Some(connection) = self.0.take() {
            drop(connection.detach());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(line: &[u8]) -> Vec<Option<String>> {
        fields(line)
            .map(|f| f.expect("utf-8").map(Cow::into_owned))
            .collect()
    }

    #[test]
    fn fields_decode_nulls_and_escapes() {
        assert_eq!(
            decoded(b"1\t\\N\t\ta\\tb\\\\c\\nd\t\\x41\\101\\q"),
            vec![
                Some("1".into()),
                None,
                Some(String::new()),
                Some("a\tb\\c\nd".into()),
                Some("AAq".into()),
            ]
        );
        // `\N` inside a longer field is not NULL.
        assert_eq!(decoded(b"\\\\N"), vec![Some("\\N".into())]);
        assert!(fields(b"\xff").next().expect("a field").is_err());
    }

    #[test]
    fn lines_are_joined_across_chunks() {
        let mut lines = Lines::default();
        let mut seen = Vec::new();
        for chunk in [&b"a\tb\nc"[..], b"d\te", b"\n\nf\n"] {
            lines
                .feed::<()>(&Bytes::copy_from_slice(chunk), |line| {
                    seen.push(String::from_utf8(line.to_vec()).expect("utf-8"));
                    Ok(())
                })
                .expect("lines");
        }
        assert_eq!(seen, ["a\tb", "cd\te", "", "f"]);
        assert!(!lines.has_partial());
        lines
            .feed::<()>(&Bytes::from_static(b"g"), |_| Ok(()))
            .expect("lines");
        assert!(lines.has_partial());
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal(Some("it's"), "text"), "E'it''s'::text");
        assert_eq!(literal(Some("a\\b"), "text"), "E'a\\\\b'::text");
        assert_eq!(literal(None, "int4"), "NULL::int4");
    }
}
