//! What the line-oriented parsers ([`crate::mountinfo`], [`crate::zfs`]) share: all lines or
//! nothing, and an error that says which input and which line.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The input being read, as a person would name it (`mountinfo`, `zfs list`).
    pub input: &'static str,
    /// 1-based.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}: {}", self.input, self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parses every non-blank line with `parse_line`. One malformed line fails the whole parse: a
/// check that skipped a line it could not read would be a check that can pass by accident.
///
/// # Errors
/// The first malformed line, with its number.
pub fn parse_all<T>(
    input: &'static str,
    text: &str,
    parse_line: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, ParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            parse_line(line).map_err(|message| ParseError {
                input,
                line: index + 1,
                message,
            })
        })
        .collect()
}
