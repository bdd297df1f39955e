//! Reporting problems: each [`Problem`] with its line and key, the [`ConfigError`] that lists
//! them all, the [`Check`] collector that validation reports into, and [`type_errors`], which
//! turns TOML's own errors (a wrong type, an unknown key or table) into problems, every one of
//! them rather than the first.

use std::fmt;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::raw::RawFile;
use super::validate::Memo;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based; 0 when the problem has no single place.
    pub line: usize,
    pub key: String,
    pub message: String,
}

impl Problem {
    /// `file:line: key: message`, as `check` prints problems and warnings.
    pub fn display<'a>(&'a self, path: &'a Path) -> impl fmt::Display + 'a {
        struct Shown<'a>(&'a Problem, &'a Path);
        impl fmt::Display for Shown<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let Shown(p, path) = self;
                write!(f, "{}:", path.display())?;
                if p.line > 0 {
                    write!(f, "{}:", p.line)?;
                }
                if p.key.is_empty() {
                    write!(f, " {}", p.message)
                } else {
                    write!(f, " {}: {}", p.key, p.message)
                }
            }
        }
        Shown(self, path)
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{}: {n} problem{}",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {}", p.display(&self.path))?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Collects problems and warnings while validating.
pub(super) struct Check {
    /// The byte offset where each line starts, to turn spans into line numbers in O(log n).
    line_starts: Vec<usize>,
    pub(super) problems: Vec<Problem>,
    pub(super) warnings: Vec<Problem>,
    /// What validation works out once and shares between the keys that need it.
    pub(super) memo: Memo,
}

impl Check {
    pub(super) fn new(src: &str) -> Check {
        let line_starts = std::iter::once(0)
            .chain(src.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Check {
            line_starts,
            problems: Vec::new(),
            warnings: Vec::new(),
            memo: Memo::new(),
        }
    }

    pub(super) fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset)
    }

    pub(super) fn at<T>(
        &mut self,
        value: &Spanned<T>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let line = self.line(value.span().start);
        self.push(line, key, message);
    }

    pub(super) fn push(&mut self, line: usize, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            line,
            key: key.into(),
            message: message.into(),
        });
    }

    pub(super) fn warn(&mut self, line: usize, key: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Problem {
            line,
            key: key.into(),
            message: message.into(),
        });
    }
}

/// Reports a TOML error, then every further one: serde stops at the first wrong type or unknown
/// key, so the offending line is blanked (offsets and line numbers kept) and the text parsed
/// again, up to a bound. A syntax error ends the search, as it may hide what follows.
///
/// An error on a table header (an unknown table, or a table of the wrong type) blanks the whole
/// table, its body and its sub-tables, not just the header: otherwise its keys would fall into
/// the table above it and each be reported as that table's unknown key. An unknown table's every
/// occurrence goes at once, so that `[[bogus]]` given twice is one problem.
pub(super) fn type_errors(check: &mut Check, src: &str, first: toml::de::Error) {
    const MAX: usize = 20;
    let mut text = src.to_owned();
    let mut error = first;
    for _ in 0..MAX {
        let Some(span) = error.span() else {
            check.push(0, "", error.message().trim().to_owned());
            return;
        };
        let message = error.message().trim().to_owned();
        check.push(check.line(span.start), key_at(&text, span.start), &*message);
        let (start, end) = line_around(&text, span.start);
        let blank: Vec<std::ops::Range<usize>> = match table_header(&text[start..end]) {
            Some(name) => {
                let every = message.starts_with("unknown field");
                table_blocks(&text, &name, start, every)
            }
            None => std::iter::once(start..end).collect(),
        };
        // Stop if blanking changes nothing.
        if blank.iter().all(|r| text[r.clone()].trim().is_empty()) {
            return;
        }
        // Byte for byte, newlines kept: offsets and lines stay those of the file.
        for r in blank {
            let spaces: String = text[r.clone()]
                .bytes()
                .map(|b| if b == b'\n' { '\n' } else { ' ' })
                .collect();
            text.replace_range(r, &spaces);
        }
        match toml::from_str::<RawFile>(&text) {
            Ok(_) => return,
            Err(next) => {
                let syntax = toml::from_str::<toml::Table>(&text).is_err();
                if syntax {
                    return;
                }
                error = next;
            }
        }
    }
}

/// The byte range of the line holding `offset`, without its newline.
fn line_around(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    (start, end)
}

/// The dotted name of a `[table]` or `[[array.of.tables]]` header line, or `None` for any
/// other line (a key, or a line of a multi-line array that happens to start with `[`).
fn table_header(line: &str) -> Option<String> {
    let line = line.trim();
    let line = match line.find(" #").or_else(|| line.find("\t#")) {
        Some(i) => line[..i].trim_end(),
        None => line,
    };
    let inner = if let Some(rest) = line.strip_prefix("[[") {
        rest.strip_suffix("]]")?
    } else {
        line.strip_prefix('[')?.strip_suffix(']')?
    };
    let parts: Vec<&str> = inner
        .split('.')
        .map(|p| p.trim().trim_matches(|c| c == '"' || c == '\''))
        .collect();
    let bare = |p: &&str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b' '))
    };
    parts.iter().all(bare).then(|| parts.join("."))
}

/// The byte ranges of the tables named `name` or below it, each from its header to the next
/// header: only the one whose header starts at `at` with its sub-tables, or with `every`, each
/// occurrence.
fn table_blocks(text: &str, name: &str, at: usize, every: bool) -> Vec<std::ops::Range<usize>> {
    let below = format!("{name}.");
    let mut headers = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if let Some(header) = table_header(line) {
            headers.push((offset, header));
        }
        offset += line.len();
    }
    let mut blocks = Vec::new();
    let mut inside = false;
    for (i, (start, header)) in headers.iter().enumerate() {
        let end = headers.get(i + 1).map_or(text.len(), |(next, _)| *next);
        let ours = header == name || header.starts_with(&below);
        // Without `every`, the block at `at` and the sub-tables right after it.
        inside = if every {
            ours
        } else if *start == at {
            true
        } else {
            inside && header.starts_with(&below)
        };
        if inside && ours {
            blocks.push(*start..end);
        }
    }
    blocks
}

/// The dotted key at `offset`: the `key =` on that line, inside the last `[table]` above it, or
/// the table itself when the line is its header.
/// TOML's own errors give a position; this names what stands there.
pub(super) fn key_at(src: &str, offset: usize) -> String {
    let (start, end) = line_around(src, offset);
    let line = &src[start..end];
    if let Some(table) = table_header(line) {
        return table;
    }
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_owned())
        .filter(|k| !k.is_empty() && !k.starts_with('['))
        .unwrap_or_default();
    let table = src[..start]
        .lines()
        .rev()
        .find_map(table_header)
        .unwrap_or_default();
    match (table.is_empty(), key.is_empty()) {
        (_, true) => table,
        (true, false) => key,
        (false, false) => format!("{table}.{key}"),
    }
}
