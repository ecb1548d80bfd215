//! Where keys are in the config text: byte spans to lines, and dotted keys to
//! spans and back, from `toml_edit`'s spanned document.
//!
//! Keys are written as dotted paths with array indices in brackets:
//! `detect.threshold`, `http.auth.users[0].password_hash`. Key names are
//! used as they are (no TOML quoting), so `detect.label_thresholds.traffic
//! light` names the `"traffic light"` entry.

use std::ops::Range;

use toml_edit::{ImDocument, Item, TableLike, Value};

/// 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// One key (or array element) of the document.
#[derive(Debug, Clone)]
struct Entry {
    /// Dotted path, e.g. `http.auth.users[0].name`.
    path: String,
    /// Path of the enclosing table or array (empty at the top level).
    parent: String,
    /// Nesting depth; deeper entries are more specific.
    depth: usize,
    /// Where the key itself is written (none for array elements).
    key_span: Option<Range<usize>>,
    /// The value; for a `[table]` or `[[array]]` entry, its header.
    span: Option<Range<usize>>,
}

/// Every key of a parsed document with its spans.
pub(crate) struct KeyMap {
    entries: Vec<Entry>,
}

impl KeyMap {
    /// Parses `text`; `None` when it is not valid TOML.
    pub(crate) fn new(text: &str) -> Option<KeyMap> {
        let doc = ImDocument::parse(text).ok()?;
        let mut entries = Vec::new();
        flatten_table(doc.as_table(), "", 0, &mut entries);
        Some(KeyMap { entries })
    }

    /// The most specific key whose name or value covers `offset`, as
    /// (dotted path, path of its table).
    pub(crate) fn key_at(&self, offset: usize) -> Option<(&str, &str)> {
        let covers = |r: &Option<Range<usize>>| r.as_ref().is_some_and(|r| r.contains(&offset));
        self.entries
            .iter()
            .filter(|e| covers(&e.key_span) || covers(&e.span))
            .max_by_key(|e| e.depth)
            .map(|e| (e.path.as_str(), e.parent.as_str()))
    }

    /// Where a dotted key is written: its key, else its value, else the
    /// header of the nearest enclosing table that has one. `None` when the
    /// key is not in the document (it holds its default).
    pub(crate) fn span_of(&self, key: &str) -> Option<Range<usize>> {
        let mut entry = self.entries.iter().find(|e| e.path == key)?;
        loop {
            if let Some(span) = entry.key_span.clone().or_else(|| entry.span.clone()) {
                return Some(span);
            }
            entry = self.entries.iter().find(|e| e.path == entry.parent)?;
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn flatten_table(t: &dyn TableLike, prefix: &str, depth: usize, out: &mut Vec<Entry>) {
    for (name, item) in t.iter() {
        let key_span = t.get_key_value(name).and_then(|(k, _)| k.span());
        let path = join(prefix, name);
        out.push(Entry {
            path: path.clone(),
            parent: prefix.to_string(),
            depth: depth + 1,
            key_span,
            span: item.span(),
        });
        flatten_item(item, &path, depth + 1, out);
    }
}

fn flatten_item(item: &Item, path: &str, depth: usize, out: &mut Vec<Entry>) {
    match item {
        Item::None => {}
        Item::Table(t) => flatten_table(t, path, depth, out),
        Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                out.push(Entry {
                    path: p.clone(),
                    parent: path.to_string(),
                    depth: depth + 1,
                    key_span: None,
                    span: t.span(),
                });
                flatten_table(t, &p, depth + 1, out);
            }
        }
        Item::Value(v) => flatten_value(v, path, depth, out),
    }
}

fn flatten_value(v: &Value, path: &str, depth: usize, out: &mut Vec<Entry>) {
    match v {
        Value::InlineTable(t) => flatten_table(t, path, depth, out),
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                out.push(Entry {
                    path: p.clone(),
                    parent: path.to_string(),
                    depth: depth + 1,
                    key_span: None,
                    span: v.span(),
                });
                flatten_value(v, &p, depth + 1, out);
            }
        }
        _ => {}
    }
}
