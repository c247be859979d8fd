//! What a check reports: [`Diagnostic`]s at `file:line:column` with the source line and a caret,
//! and the [`TopologyError`] that carries them.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::Error;

/// One problem in a topology file, with where it is and how to fix it.
///
/// Its `Display` is `file:line:column: error: message`, then the line with the spot marked, then the
/// help: the first line alone is a complete, greppable error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// An error (the file is invalid) or a warning.
    pub severity: Severity,
    /// The file, as it was given.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when there is more to say than the message.
    pub help: Option<String>,
    pub(super) text: String,
    pub(super) width: usize,
}

impl Diagnostic {
    pub(super) fn at(
        source: &Source<'_>,
        span: Range<usize>,
        message: String,
        help: Option<String>,
    ) -> Self {
        let start = span.start.min(source.text.len());
        let line_start = source.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source.text[start..]
            .find('\n')
            .map_or(source.text.len(), |i| start + i);
        let text = source.text[line_start..line_end].trim_end_matches('\r');
        let line = source.text[..start].matches('\n').count() + 1;
        let column = source.text[line_start..start].chars().count() + 1;
        let end = span.end.clamp(start, line_end);
        Diagnostic {
            severity: Severity::Error,
            path: source.path.to_path_buf(),
            line,
            column,
            message,
            help,
            text: text.to_string(),
            width: source.text[start..end].chars().count().max(1),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.severity,
            self.message
        )?;
        let gutter = self.line.to_string().len();
        write!(f, "\n {:>gutter$} | {}", self.line, self.text)?;
        let pad: String = self
            .text
            .chars()
            .take(self.column - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        write!(f, "\n {:>gutter$} | {pad}{}", "", "^".repeat(self.width))?;
        if let Some(help) = &self.help {
            write!(f, "\n {:>gutter$} = help: {help}", "")?;
        }
        Ok(())
    }
}

/// How bad a [`Diagnostic`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The file is invalid.
    Error,
    /// Valid, but worth a word.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// Why a topology could not be read, checked or started.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TopologyError {
    /// The file could not be read.
    #[error("cannot read topology {}: {reason}", path.display())]
    Read {
        /// The file, as given.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The file is not a valid topology: every error found, in file order, then every warning
    /// (see [`Diagnostic::severity`]).
    #[error("{}", display_all(.0))]
    Invalid(Vec<Diagnostic>),
    /// No node of that name in the file.
    #[error("no node named {name:?} in {}; its nodes are: {known}", path.display())]
    UnknownNode {
        /// The name asked for.
        name: String,
        /// The file.
        path: PathBuf,
        /// The names it has, comma-separated.
        known: String,
    },
    /// A node of a valid file failed to start (a port taken, a socket path not writable...).
    #[error("node {name:?}: {source}")]
    Start {
        /// The node's name.
        name: String,
        /// Why.
        source: Error,
    },
}

impl TopologyError {
    /// The diagnostics of an [`Invalid`](Self::Invalid) file, errors first, then warnings;
    /// empty for other errors.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            TopologyError::Invalid(d) => d,
            _ => &[],
        }
    }
}

pub(super) fn display_all(diagnostics: &[Diagnostic]) -> String {
    let all: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    all.join("\n")
}

pub(super) struct Source<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}
