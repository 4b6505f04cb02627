//! `TopologyError`: what is wrong and where (file, line, column, key).

use std::fmt;

/// Why a topology was refused.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A `variables.json` that cannot be converted.
    #[error("{file}: {message}")]
    Import {
        /// The file.
        file: String,
        /// What is missing or wrong.
        message: String,
    },
    /// Syntax, shape or value problems; all of them, in file order.
    #[error("{}", render(file, problems))]
    Invalid {
        /// The file.
        file: String,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

/// One problem, located where possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line of the offending key, when known.
    pub line: Option<usize>,
    /// 1-based column.
    pub column: Option<usize>,
    /// Dotted key, e.g. `region[1].weight`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (Some(line), Some(col)) = (self.line, self.column) {
            write!(f, "{line}:{col}: ")?;
        }
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

fn render(file: &str, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|p| match (p.line, p.column) {
            (Some(_), Some(_)) => format!("{file}:{p}"),
            _ => format!("{file}: {p}"),
        })
        .collect();
    lines.join("\n")
}

/// Turns toml's error (syntax, unknown key, wrong type) into a located problem.
pub(crate) fn from_toml_error(err: &toml::de::Error, text: &str) -> Problem {
    let (line, column, key) = match err.span() {
        Some(span) => {
            let (line, column) = line_col(text, span.start);
            let snippet = text.get(span.clone()).unwrap_or("").trim();
            // An unknown or misspelt key is spanned by the key itself.
            let is_key = !snippet.is_empty()
                && snippet
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            (
                Some(line),
                Some(column),
                if is_key {
                    snippet.to_string()
                } else {
                    String::new()
                },
            )
        }
        None => (None, None, String::new()),
    };
    Problem {
        line,
        column,
        key,
        message: err.message().trim().to_string(),
    }
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
        + 1;
    (line, column)
}
