//! Config errors: each names the file and, when they are known, the line and
//! the key.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a config file was rejected. The `Display` form starts with
/// `FILE:LINE:` (or `FILE:` when no line applies, e.g. a key left at its
/// default) and names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {}: {error}", path.display())]
    Read { path: PathBuf, error: std::io::Error },
    /// The text is not valid TOML.
    #[error("{}: {message}", Location(path, *line))]
    Syntax {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    /// A key no setting has (typo, or a key in the wrong table).
    #[error(
        "{}: unknown key `{name}` {} ({})",
        Location(path, *line),
        InTable(table),
        Expected(expected)
    )]
    UnknownKey {
        path: PathBuf,
        line: Option<usize>,
        /// Dotted path of the table holding the key; empty at the top level.
        table: String,
        /// The key as written.
        name: String,
        /// The keys that table accepts.
        expected: Vec<String>,
    },
    /// A value of the wrong type, or not one of an enum's values.
    #[error("{}: {key}: {message}", Location(path, *line))]
    WrongType {
        path: PathBuf,
        line: Option<usize>,
        key: String,
        message: String,
    },
    /// A well-typed value outside what the setting accepts (found after
    /// parsing, by [`Config::validate`](super::Config::validate) or the file
    /// checks). `line` is `None` when the key is not in the file.
    #[error("{}: {key}: {message}", Location(path, *line))]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        key: String,
        message: String,
    },
}

impl ConfigError {
    /// The config file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ConfigError::Read { path, .. }
            | ConfigError::Syntax { path, .. }
            | ConfigError::UnknownKey { path, .. }
            | ConfigError::WrongType { path, .. }
            | ConfigError::Invalid { path, .. } => path,
        }
    }

    /// The 1-based line, when the error has one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { line, .. }
            | ConfigError::UnknownKey { line, .. }
            | ConfigError::WrongType { line, .. }
            | ConfigError::Invalid { line, .. } => *line,
        }
    }

    /// The dotted key the error is about (`detect.threshold`), if any.
    pub fn key(&self) -> Option<String> {
        match self {
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
            ConfigError::UnknownKey { table, name, .. } if table.is_empty() => Some(name.clone()),
            ConfigError::UnknownKey { table, name, .. } => Some(format!("{table}.{name}")),
            ConfigError::WrongType { key, .. } | ConfigError::Invalid { key, .. } => Some(key.clone()),
        }
    }
}

/// `FILE:LINE` or `FILE`.
struct Location<'a>(&'a Path, Option<usize>);

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(line) => write!(f, "{}:{line}", self.0.display()),
            None => write!(f, "{}", self.0.display()),
        }
    }
}

/// `in [detect]`, or `at the top level`.
struct InTable<'a>(&'a str);

impl fmt::Display for InTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("at the top level")
        } else {
            write!(f, "in [{}]", self.0)
        }
    }
}

/// `expected one of: a, b, c`, or `no keys are accepted here`.
struct Expected<'a>(&'a [String]);

impl fmt::Display for Expected<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [] => f.write_str("no keys are accepted here"),
            [one] => write!(f, "expected: {one}"),
            many => write!(f, "expected one of: {}", many.join(", ")),
        }
    }
}
