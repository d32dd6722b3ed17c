//! The kit presets and themes share for their TOML files: parsing with line numbers, every
//! problem in a file collected at once ([`ConfigError`], naming file, line, key and value), the
//! nearest known name for a typo, and built-ins embedded in the binary or files on disk.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// Everything wrong with one theme or preset file.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigError {
    /// "preset" or "theme".
    pub kind: &'static str,
    /// The path as given, or `built-in NAME`.
    pub file: String,
    /// In file order; problems without a line (a missing key) come last.
    pub problems: Vec<Problem>,
}

/// One thing wrong, e.g. `client.conns = "lots": invalid digit found in string`.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// 1-based line of the key, when the key is in the file.
    pub line: Option<usize>,
    /// Dotted key path (`client.conns`, `roles.error.fg`); empty for the file as a whole.
    pub key: String,
    /// The value as written in TOML (`"lots"`, `5`), when there is one.
    pub value: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn one(kind: &'static str, file: &str, message: String) -> ConfigError {
        ConfigError {
            kind,
            file: file.to_string(),
            problems: vec![Problem {
                line: None,
                key: String::new(),
                value: None,
                message,
            }],
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.key.is_empty() {
            f.write_str(&self.key)?;
            if let Some(v) = &self.value {
                write!(f, " = {v}")?;
            }
            f.write_str(": ")?;
        }
        f.write_str(&self.message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid {} {} ({n} problem{}):",
            self.kind,
            self.file,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            match p.line {
                Some(line) => write!(f, "\n{}:{line}: {p}", self.file)?,
                None => write!(f, "\n{}: {p}", self.file)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Collects problems while a file is checked, attaching the line of each key.
pub(crate) struct Problems {
    lines: HashMap<String, usize>,
    list: Vec<Problem>,
}

impl Problems {
    /// Problems found so far.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }
}

impl Problems {
    pub(crate) fn new(lines: HashMap<String, usize>) -> Problems {
        Problems {
            lines,
            list: Vec::new(),
        }
    }

    pub(crate) fn add(
        &mut self,
        key: &str,
        value: Option<&toml::Value>,
        message: impl Into<String>,
    ) {
        self.list.push(Problem {
            line: self.lines.get(key).copied(),
            key: key.to_string(),
            value: value.map(show_value),
            message: message.into(),
        });
    }

    pub(crate) fn into_result(mut self, kind: &'static str, file: &str) -> Result<(), ConfigError> {
        if self.list.is_empty() {
            return Ok(());
        }
        // Stable: problems on one line, and those without a line, keep the order found.
        self.list.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        Err(ConfigError {
            kind,
            file: file.to_string(),
            problems: self.list,
        })
    }
}

/// A value as the user wrote it in TOML.
pub(crate) fn show_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// A parsed file: its tables, and the line each dotted key path is on.
pub(crate) struct Doc {
    pub table: toml::Table,
    pub lines: HashMap<String, usize>,
}

/// Parses TOML; a syntax error is reported with its line and column.
pub(crate) fn parse_doc(kind: &'static str, file: &str, text: &str) -> Result<Doc, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|s| {
                let (line, col) = line_col(text, s.start);
                format!("line {line}, column {col}: ")
            })
            .unwrap_or_default();
        ConfigError::one(
            kind,
            file,
            format!("not valid TOML: {at}{}", e.message().trim()),
        )
    })?;
    let mut lines = HashMap::new();
    if let Ok(doc) = toml::de::DeTable::parse(text) {
        walk_lines(doc.get_ref(), "", text, &mut lines);
    }
    Ok(Doc { table, lines })
}

fn walk_lines(
    t: &toml::de::DeTable<'_>,
    prefix: &str,
    text: &str,
    out: &mut HashMap<String, usize>,
) {
    for (k, v) in t {
        let path = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        out.entry(path.clone())
            .or_insert_with(|| line_col(text, k.span().start).0);
        if let toml::de::DeValue::Table(inner) = v.get_ref() {
            walk_lines(inner, &path, text, out);
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.chars().rev().take_while(|&c| c != '\n').count() + 1;
    (line, col)
}

/// `; did you mean `x`?` for the candidate within edit distance 2 of `word`, closest first.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    // Nearest first; at equal distance, a name the word begins (a flag cut short: `con` is
    // `conns`, not `ca`).
    let mut best: Option<((usize, bool), &str)> = None;
    for c in candidates {
        let rank = (edit_distance(word, c), !c.starts_with(word));
        if rank.0 <= 2 && best.is_none_or(|(b, _)| rank < b) {
            best = Some((rank, c));
        }
    }
    match best {
        Some((_, c)) => format!("; did you mean `{c}`?"),
        None => String::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Reads a built-in by name, else a file by path.
pub(crate) fn read_source(
    kind: &'static str,
    name_or_path: &str,
    builtin: &[(&str, &'static str)],
) -> Result<(String, String, String), ConfigError> {
    if let Some((name, text)) = builtin.iter().find(|(n, _)| *n == name_or_path) {
        return Ok((
            name.to_string(),
            format!("built-in {name}"),
            text.to_string(),
        ));
    }
    let names: Vec<&str> = builtin.iter().map(|(n, _)| *n).collect();
    match std::fs::read_to_string(name_or_path) {
        Ok(text) => {
            let stem = Path::new(name_or_path)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| name_or_path.to_string());
            Ok((stem, name_or_path.to_string(), text))
        }
        Err(e) => Err(ConfigError::one(
            kind,
            name_or_path,
            format!(
                "not a built-in {kind} ({}){} and not a readable file ({e})",
                names.join(", "),
                did_you_mean(name_or_path, names.iter().copied()),
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_suggestions() {
        assert_eq!(edit_distance("con", "conns"), 2);
        assert_eq!(
            did_you_mean("con", ["conns", "control"]),
            "; did you mean `conns`?"
        );
        assert_eq!(did_you_mean("zzz", ["conns"]), "");
    }
}
