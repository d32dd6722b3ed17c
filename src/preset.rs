//! Scenario files. A preset is a complete test whose keys are `c1m`'s own long flags, so clap
//! stays the one source of truth for names, defaults and value syntax:
//!
//! ```toml
//! description = "The 2015 test's client side"
//! [client]            # flags of `c1m client`
//! conns = 600000
//! [server]            # flags of `c1m server` (and of `c1m tui --mode local|server`)
//! every = "60s"
//! [tui]               # flags of `c1m tui` only
//! mode = "local"
//! ```
//!
//! [`splice`] turns `--preset NAME|PATH` into flags placed before the user's own, so that the
//! order of precedence is: clap defaults < preset file < flags on the command line.

pub use crate::config_file::ConfigError;
use crate::config_file::{Doc, Problems, did_you_mean, parse_doc, read_source};
use clap::Command;
use clap::parser::ValueSource;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::Path;

/// The subcommands a preset has a section for, in the order their flags are expanded.
const SECTIONS: [&str; 3] = ["server", "client", "tui"];

/// Built-in presets, embedded so the binary works from any directory; `presets/*.toml` holds
/// the same files.
const BUILTIN: &[(&str, &str)] = &[
    ("local-demo", include_str!("../presets/local-demo.toml")),
    ("c10k", include_str!("../presets/c10k.toml")),
    ("loopback-19k", include_str!("../presets/loopback-19k.toml")),
    ("loopback-c1m", include_str!("../presets/loopback-c1m.toml")),
    (
        "seed-c1000k-server",
        include_str!("../presets/seed-c1000k-server.toml"),
    ),
    (
        "seed-c1000k-client",
        include_str!("../presets/seed-c1000k-client.toml"),
    ),
    ("socketio", include_str!("../presets/socketio.toml")),
    ("graphql-ws", include_str!("../presets/graphql-ws.toml")),
    ("phoenix", include_str!("../presets/phoenix.toml")),
    ("centrifugo", include_str!("../presets/centrifugo.toml")),
    ("actioncable", include_str!("../presets/actioncable.toml")),
    ("pusher", include_str!("../presets/pusher.toml")),
];

const BUILTIN_NAMES: &[&str] = &[
    "local-demo",
    "c10k",
    "loopback-19k",
    "loopback-c1m",
    "seed-c1000k-server",
    "seed-c1000k-client",
    "socketio",
    "graphql-ws",
    "phoenix",
    "centrifugo",
    "actioncable",
    "pusher",
];

/// The preset `c1m tui --mode local` runs when no `--preset` is given.
pub const DEFAULT_LOCAL: &str = "local-demo";

// ---------------------------------------------------------------------------------------------
// Preset

/// A loaded and checked scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Preset {
    /// The built-in name, or the file's stem.
    pub name: String,
    /// The path as given, or `built-in NAME`.
    pub file: String,
    pub description: String,
    /// Flags of `c1m server`, by long name.
    pub server: toml::Table,
    /// Flags of `c1m client`, by long name.
    pub client: toml::Table,
    /// Flags of `c1m tui`, by long name.
    pub tui: toml::Table,
    lines: HashMap<String, usize>,
}

/// The built-in presets' names, in the order `c1m presets` lists them.
pub fn builtin_names() -> &'static [&'static str] {
    BUILTIN_NAMES
}

/// Each built-in preset's name and description.
pub fn builtin_descriptions() -> Vec<(&'static str, String)> {
    BUILTIN_NAMES
        .iter()
        .map(|&n| (n, builtin(n).description))
        .collect()
}

/// A built-in preset; panics on an unknown name (the names are [`builtin_names`]).
pub fn builtin(name: &str) -> Preset {
    load(name).unwrap_or_else(|e| panic!("built-in preset {name}: {e}"))
}

/// Loads a built-in preset by name or a preset file by path, and checks every key and value
/// against `c1m`'s command line. All problems are reported together.
pub fn load(name_or_path: &str) -> Result<Preset, ConfigError> {
    use clap::CommandFactory;
    load_with(name_or_path, &crate::cli::Cli::command())
}

/// [`load`] against a given command line (tests pass a modified one).
pub fn load_with(name_or_path: &str, cli: &Command) -> Result<Preset, ConfigError> {
    let (name, file, text) = read_source("preset", name_or_path, BUILTIN)?;
    Preset::parse(&name, &file, &text, cli)
}

/// `c1m presets`: every built-in preset with its description and flags.
pub fn list() -> String {
    let mut out = String::new();
    for &name in BUILTIN_NAMES {
        let p = builtin(name);
        out.push_str(&format!("{name}\n    {}\n", p.description));
        for (section, table) in p.sections() {
            if table.is_empty() {
                continue;
            }
            let flags: Vec<String> = table
                .iter()
                .flat_map(|(k, v)| to_args(k, v))
                .map(|a| shell_word(&a.to_string_lossy()))
                .collect();
            out.push_str(&format!("    {section:<7}{}\n", flags.join(" ")));
        }
    }
    out.push_str(
        "\nUse one with `--preset NAME`, or copy presets/NAME.toml and pass `--preset PATH`;\n\
         flags on the command line override the preset's values.\n",
    );
    out
}

impl Preset {
    /// Parses and checks preset text; `file` is what messages call it.
    pub fn parse(name: &str, file: &str, text: &str, cli: &Command) -> Result<Preset, ConfigError> {
        let Doc { mut table, lines } = parse_doc("preset", file, text)?;
        let mut problems = Problems::new(lines.clone());
        let mut preset = Preset {
            name: name.to_string(),
            file: file.to_string(),
            description: String::new(),
            server: toml::Table::new(),
            client: toml::Table::new(),
            tui: toml::Table::new(),
            lines,
        };
        let all_flags = flag_names(cli);
        for (key, value) in std::mem::take(&mut table) {
            match (key.as_str(), value) {
                ("description", toml::Value::String(s)) => preset.description = s,
                ("description", v) => {
                    problems.add("description", Some(&v), "expected a string in quotes")
                }
                (s @ ("server" | "client" | "tui"), toml::Value::Table(t)) => match s {
                    "server" => preset.server = t,
                    "client" => preset.client = t,
                    _ => preset.tui = t,
                },
                (s @ ("server" | "client" | "tui"), v) => problems.add(
                    s,
                    Some(&v),
                    format!("expected a section: write [{s}] and its flags on the lines below"),
                ),
                (other, toml::Value::Table(_)) => problems.add(
                    other,
                    None,
                    format!(
                        "unknown section [{other}]; a preset has [server], [client] and [tui]{}",
                        did_you_mean(other, SECTIONS)
                    ),
                ),
                (other, v) => {
                    let owners: Vec<&str> = SECTIONS
                        .iter()
                        .copied()
                        .filter(|s| all_flags.iter().any(|(sub, f)| sub == s && f == other))
                        .collect();
                    let hint = if owners.is_empty() {
                        did_you_mean(other, ["description"])
                    } else {
                        format!(
                            "; flags go in a section: put it under [{}]",
                            owners.join("] or [")
                        )
                    };
                    problems.add(
                        other,
                        Some(&v),
                        format!("unknown key; a preset has `description`, [server], [client] and [tui]{hint}"),
                    )
                }
            }
        }
        preset.check(cli, &mut problems);
        problems.into_result("preset", file)?;
        Ok(preset)
    }

    /// Checks every key against the subcommand's long flags and every value with clap's own
    /// parser; reports all problems at once.
    pub fn validate(&self, cli: &Command) -> Result<(), ConfigError> {
        let mut problems = Problems::new(self.lines.clone());
        self.check(cli, &mut problems);
        problems.into_result("preset", &self.file)
    }

    /// The sections in expansion order: server, client, tui.
    pub fn sections(&self) -> [(&'static str, &toml::Table); 3] {
        [
            ("server", &self.server),
            ("client", &self.client),
            ("tui", &self.tui),
        ]
    }

    /// `[tui] mode`, if the preset sets it.
    pub fn tui_mode(&self) -> Option<&str> {
        self.tui.get("mode").and_then(|v| v.as_str())
    }

    /// The preset as command-line arguments for `subcommand`, one `--flag=value` (or bare
    /// `--flag` for `true`) per key: `server` ← [server]; `client` ← [client]; `tui` ← [server]
    /// and/or [client] per the mode, then [tui]. `mode` is the user's `--mode` if given; else
    /// the preset's `[tui] mode`; else local. Put these before the user's own arguments.
    pub fn expand(&self, subcommand: &str, mode: Option<&str>) -> Vec<OsString> {
        self.expand_keys(subcommand, mode)
            .into_iter()
            .flat_map(|(_, key, value)| to_args(key, value))
            .collect()
    }

    fn expand_keys<'a>(
        &'a self,
        subcommand: &str,
        mode: Option<&str>,
    ) -> Vec<(&'static str, &'a str, &'a toml::Value)> {
        let sections: &[&str] = match subcommand {
            "server" => &["server"],
            "client" => &["client"],
            "tui" => match mode.or(self.tui_mode()).unwrap_or("local") {
                "server" => &["server", "tui"],
                "client" => &["client", "tui"],
                _ => &["server", "client", "tui"],
            },
            _ => &[],
        };
        self.sections()
            .into_iter()
            .filter(|(s, _)| sections.contains(s))
            .flat_map(|(s, t)| t.iter().map(move |(k, v)| (s, k.as_str(), v)))
            .collect()
    }

    fn check(&self, cli: &Command, problems: &mut Problems) {
        let mut cli = cli.clone();
        cli.build();
        let all_flags = flag_names(&cli);
        for (section, table) in self.sections() {
            let Some(sub) = cli.find_subcommand(section) else {
                continue;
            };
            let before = problems.len();
            for (key, value) in table {
                check_key(sub, section, key, value, &all_flags, problems);
            }
            // Each value is fine on its own; now the section as a whole (conflicting flags).
            if problems.len() == before && !table.is_empty() {
                let mut argv: Vec<OsString> = vec!["c1m".into(), section.into()];
                argv.extend(table.iter().flat_map(|(k, v)| to_args(k, v)));
                if let Err(e) = cli.clone().try_get_matches_from(argv) {
                    problems.add(section, None, clap_reason(&e));
                }
            }
        }
    }
}

/// Rewrites a command line so that its `--preset` takes effect: the preset's flags are inserted
/// right after the subcommand, skipping any flag the user gave (or one that conflicts with a
/// flag the user gave), so the user's flags always win. A command line without `--preset`, or
/// one clap rejects, is returned unchanged (clap then reports it as usual).
///
/// `c1m tui --mode local` without `--preset` runs [`DEFAULT_LOCAL`].
pub fn splice(argv: Vec<OsString>) -> Result<Vec<OsString>, ConfigError> {
    use clap::CommandFactory;
    splice_with(argv, &crate::cli::Cli::command())
}

/// [`splice`] against a given command line.
pub fn splice_with(argv: Vec<OsString>, cli: &Command) -> Result<Vec<OsString>, ConfigError> {
    let mut cli = cli.clone().args_override_self(true);
    cli.build();
    let Ok(matches) = cli.clone().try_get_matches_from(&argv) else {
        return Ok(argv);
    };
    let Some((sub_name, m)) = matches.subcommand() else {
        return Ok(argv);
    };
    if !SECTIONS.contains(&sub_name) {
        return Ok(argv);
    }
    let sub = cli
        .find_subcommand(sub_name)
        .expect("matched subcommand exists");
    let user_mode = (sub_name == "tui" && m.value_source("mode") == Some(ValueSource::CommandLine))
        .then(|| {
            m.get_raw("mode")
                .and_then(|mut v| v.next())
                .and_then(OsStr::to_str)
        })
        .flatten();
    let name = match m.get_one::<String>("preset") {
        Some(p) => p.clone(),
        None if sub_name == "tui" && user_mode.is_none_or(|m| m == "local") => {
            DEFAULT_LOCAL.to_string()
        }
        None => return Ok(argv),
    };
    let preset = load_with(&name, &cli)?;

    let given: Vec<&clap::Arg> = sub
        .get_arguments()
        .filter(|a| m.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine))
        .collect();
    let user_wins = |arg: &clap::Arg| {
        given.iter().any(|g| {
            g.get_id() == arg.get_id()
                || sub
                    .get_arg_conflicts_with(g)
                    .iter()
                    .any(|c| c.get_id() == arg.get_id())
                || sub
                    .get_arg_conflicts_with(arg)
                    .iter()
                    .any(|c| c.get_id() == g.get_id())
        })
    };
    let inserted: Vec<OsString> = preset
        .expand_keys(sub_name, user_mode)
        .into_iter()
        .filter(|(_, key, _)| {
            sub.get_arguments()
                .find(|a| a.get_long() == Some(key))
                .is_some_and(|a| !user_wins(a))
        })
        .flat_map(|(_, key, value)| to_args(key, value))
        .collect();
    let at = argv
        .iter()
        .skip(1)
        .position(|a| a == sub_name)
        .map_or(argv.len(), |i| i + 2);
    let mut out = argv;
    out.splice(at..at, inserted);
    Ok(out)
}

/// (subcommand, long flag) for every flag a preset may set.
fn flag_names(cli: &Command) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in SECTIONS {
        if let Some(sub) = cli.find_subcommand(s) {
            for a in sub.get_arguments().filter(|a| settable(a)) {
                if let Some(l) = a.get_long() {
                    out.push((s.to_string(), l.to_string()));
                }
            }
        }
    }
    out
}

fn settable(a: &clap::Arg) -> bool {
    !matches!(a.get_id().as_str(), "help" | "version" | "preset")
        && !matches!(
            a.get_action(),
            clap::ArgAction::Help
                | clap::ArgAction::HelpShort
                | clap::ArgAction::HelpLong
                | clap::ArgAction::Version
        )
}

fn check_key(
    sub: &Command,
    section: &str,
    key: &str,
    value: &toml::Value,
    all_flags: &[(String, String)],
    problems: &mut Problems,
) {
    let path = format!("{section}.{key}");
    if key == "preset" {
        problems.add(&path, Some(value), "a preset cannot load another preset");
        return;
    }
    let Some(arg) = sub
        .get_arguments()
        .find(|a| settable(a) && a.get_long() == Some(key))
    else {
        let mine = all_flags
            .iter()
            .filter(|(s, _)| s == section)
            .map(|(_, f)| f.as_str());
        let mut hint = did_you_mean(key, mine);
        if hint.is_empty() {
            let others: Vec<&str> = all_flags
                .iter()
                .filter(|(s, f)| s != section && f == key)
                .map(|(s, _)| s.as_str())
                .collect();
            if !others.is_empty() {
                hint = format!("; it is a flag of [{}]", others.join("] and ["));
            }
        }
        problems.add(
            &path,
            Some(value),
            format!("`c1m {section}` has no flag --{key}{hint}"),
        );
        return;
    };
    let takes_value = arg.get_action().takes_values();
    if let toml::Value::Array(items) = value {
        match arg.get_action() {
            clap::ArgAction::Append => {
                for item in items {
                    check_key(sub, section, key, item, all_flags, problems);
                }
            }
            _ => problems.add(
                &path,
                Some(value),
                format!("--{key} takes one value, not a list"),
            ),
        }
        return;
    }
    let text = match value {
        toml::Value::Boolean(_) if !takes_value => return,
        _ if !takes_value => {
            problems.add(
                &path,
                Some(value),
                format!("--{key} is a switch: write `{key} = true`, or leave it out"),
            );
            return;
        }
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        _ => {
            let what = arg
                .get_value_names()
                .and_then(|v| v.first())
                .map(|n| n.to_string())
                .unwrap_or_else(|| "VALUE".into());
            problems.add(
                &path,
                Some(value),
                format!("--{key} takes one value ({what}): a string in quotes or a number"),
            );
            return;
        }
    };
    // clap's own parser decides: the flag alone, as the user would type it.
    if let Err(e) = sub
        .clone()
        .no_binary_name(true)
        .try_get_matches_from([format!("--{key}={text}")])
    {
        // The value parsers in cli.rs start with the value; the line already shows it.
        let reason = clap_reason(&e);
        let reason = [format!("{text:?}: "), format!("{text}: ")]
            .iter()
            .find_map(|p| reason.strip_prefix(p.as_str()))
            .map_or(reason.clone(), str::to_string);
        problems.add(&path, Some(value), reason);
        return;
    }
    if section == "tui" && key == "theme" {
        check_theme(&text, &path, value, problems);
    }
}

/// A theme must be a built-in one or a file.
fn check_theme(text: &str, path: &str, value: &toml::Value, problems: &mut Problems) {
    let known = crate::theme::Theme::builtin_names().contains(&text);
    if !known && !Path::new(text).is_file() {
        problems.add(
            path,
            Some(value),
            format!(
                "not a built-in theme ({}){} and no such file",
                crate::theme::Theme::builtin_names().join(", "),
                did_you_mean(text, crate::theme::Theme::builtin_names().iter().copied())
            ),
        );
    }
}

/// The reason clap gives, without its `error:` prefix and usage lines.
fn clap_reason(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if let Some(src) = std::error::Error::source(e) {
        return src.to_string();
    }
    if e.kind() == ErrorKind::InvalidValue
        && let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue)
    {
        return format!("expected one of: {}", valid.join(", "));
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("").trim();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// The flags a key stands for: none for `false`, one per element of an array (a flag given
/// more than once, like `header = ["A: 1", "B: 2"]`).
fn to_args(key: &str, value: &toml::Value) -> Vec<OsString> {
    match value {
        toml::Value::Boolean(true) => vec![format!("--{key}").into()],
        toml::Value::Boolean(false) => vec![],
        toml::Value::Array(items) => items.iter().flat_map(|v| to_args(key, v)).collect(),
        v => vec![format!("--{key}={}", plain(v)).into()],
    }
}

/// `--key=value` as a person would paste it into a shell: single-quoted when the value holds
/// anything a shell would read as its own (spaces, quotes, brackets, `&`, `?`, `\\`, …).
fn shell_word(arg: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:,=+@%".contains(c);
    match arg.split_once('=') {
        Some((flag, value)) if value.chars().all(safe) => format!("{flag} {value}"),
        Some((flag, value)) => format!("{flag} '{}'", value.replace('\'', r"'\''")),
        None => arg.to_string(),
    }
}

/// A value as it goes on the command line.
fn plain(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn cli() -> Command {
        crate::cli::Cli::command()
    }

    fn parse(text: &str) -> Result<Preset, ConfigError> {
        Preset::parse("t", "t.toml", text, &cli())
    }

    #[test]
    fn builtins_load_and_validate() {
        for &name in builtin_names() {
            let p = load(name).unwrap_or_else(|e| panic!("{e}"));
            assert!(!p.description.is_empty(), "{name} has a description");
            p.validate(&cli()).unwrap();
        }
        assert_eq!(BUILTIN.len(), BUILTIN_NAMES.len());
        assert!(builtin_names().contains(&DEFAULT_LOCAL));
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let e = parse(
            "description = \"x\"\n[client]\ncon = 5\nconns = \"lots\"\n[sevrer]\nevery = \"1s\"\n",
        )
        .unwrap_err();
        let text = e.to_string();
        assert_eq!(e.problems.len(), 3, "{text}");
        assert!(
            text.starts_with("invalid preset t.toml (3 problems):"),
            "{text}"
        );
        assert!(
            text.contains(
                "t.toml:3: client.con = 5: `c1m client` has no flag --con; did you mean `conns`?"
            ),
            "{text}"
        );
        assert!(
            text.contains("t.toml:4: client.conns = \"lots\": invalid digit found in string"),
            "{text}"
        );
        assert!(
            text.contains("t.toml:5: sevrer: unknown section [sevrer]"),
            "{text}"
        );
    }

    #[test]
    fn switches_and_enums() {
        let p =
            parse("[client]\nforce = true\nquiet = false\n[server]\npayload = \"seed\"\n").unwrap();
        assert_eq!(p.expand("client", None), vec![OsString::from("--force")]);
        assert_eq!(
            p.expand("server", None),
            vec![OsString::from("--payload=seed")]
        );
        let e = parse("[client]\nforce = 1\n[server]\npayload = \"xml\"\n").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("client.force = 1: --force is a switch"),
            "{text}"
        );
        assert!(
            text.contains("server.payload = \"xml\": expected one of: json, seed"),
            "{text}"
        );
    }

    #[test]
    fn lists_repeat_a_flag_that_may_repeat() {
        let p = parse("[client]\nheader = [\"A: 1\", \"B: 2\"]\nsubprotocol = [\"v1\"]\n").unwrap();
        assert_eq!(
            p.expand("client", None),
            ["--header=A: 1", "--header=B: 2", "--subprotocol=v1"].map(OsString::from)
        );
        assert_eq!(shell_word("--header=A: 1"), "--header 'A: 1'");
        assert_eq!(shell_word("--conns=5"), "--conns 5");
        assert_eq!(shell_word("--reply=2=3"), "--reply 2=3");
        assert_eq!(shell_word("--send={\"a\":1}"), "--send '{\"a\":1}'");
        assert_eq!(
            shell_word("--url=ws://h/?a=1&b=2"),
            "--url 'ws://h/?a=1&b=2'"
        );
        assert_eq!(shell_word("--send=it's"), r"--send 'it'\''s'");
        let e = parse("[client]\nheader = [\"Host: x\"]\nconns = [1, 2]\n").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("c1m writes this header itself"), "{text}");
        assert!(
            text.contains("--conns takes one value, not a list"),
            "{text}"
        );
    }

    #[test]
    fn conflicting_flags_in_one_section() {
        let e = parse("[client]\nips = 2\nsource-ips = \"10.0.0.2\"\n").unwrap_err();
        assert!(e.to_string().contains("cannot be used with"), "{e}");
    }

    #[test]
    fn flag_in_the_wrong_section_says_where_it_belongs() {
        let e = parse("[client]\nevery = \"10s\"\n").unwrap_err();
        assert!(e.to_string().contains("it is a flag of [server]"), "{e}");
        let e = parse("conns = 5\n").unwrap_err();
        assert!(
            e.to_string().contains("put it under [client] or [tui]"),
            "{e}"
        );
    }

    #[test]
    fn expand_picks_sections_by_mode() {
        let p =
            parse("[server]\nevery = \"10s\"\n[client]\nconns = 10\n[tui]\nmode = \"client\"\n")
                .unwrap();
        let s = |v: Vec<OsString>| {
            v.into_iter()
                .map(|a| a.into_string().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(s(p.expand("server", None)), ["--every=10s"]);
        assert_eq!(s(p.expand("client", None)), ["--conns=10"]);
        assert_eq!(s(p.expand("tui", None)), ["--conns=10", "--mode=client"]);
        assert_eq!(
            s(p.expand("tui", Some("local"))),
            ["--every=10s", "--conns=10", "--mode=client"]
        );
        assert_eq!(
            s(p.expand("tui", Some("server"))),
            ["--every=10s", "--mode=client"]
        );
    }
}
