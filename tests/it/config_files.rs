//! Files users write: every shipped theme and preset loads, the embedded copies match the
//! folders on disk, every invalid fixture produces exactly the text the user must see, and a
//! preset's flags give way to the user's.
//!
//! Each fixture `tests/fixtures/{themes,presets}/NAME.toml` has `NAME.expected` beside it: the
//! whole error message. After changing a message on purpose, run with `C1M_BLESS=1` to rewrite
//! the `.expected` files, then read the diff.

use c1m::cli::{Cli, Command, Every, TuiMode};
use c1m::preset::{self, Preset};
use c1m::theme::Theme;
use clap::{CommandFactory, FromArgMatches};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

fn toml_stems(dir: &str) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_shipped_theme_loads_from_the_binary_and_from_disk() {
    assert_eq!(toml_stems("themes"), names(Theme::builtin_names()));
    for name in Theme::builtin_names() {
        let embedded = Theme::load(name).unwrap_or_else(|e| panic!("{e}"));
        let path = format!("themes/{name}.toml");
        let on_disk = Theme::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(embedded, on_disk, "{path} and the embedded copy differ");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.trim_start().starts_with('#'),
            "{path} opens with comments"
        );
    }
    assert_eq!(Theme::fallback(), Theme::load("default").unwrap());
    let listing = c1m::theme::list();
    for name in Theme::builtin_names() {
        assert!(listing.contains(name), "{listing}");
    }
}

#[test]
fn every_shipped_preset_loads_from_the_binary_and_from_disk() {
    assert_eq!(toml_stems("presets"), names(preset::builtin_names()));
    let cli = Cli::command();
    for name in preset::builtin_names() {
        let embedded = preset::load(name).unwrap_or_else(|e| panic!("{e}"));
        embedded.validate(&cli).unwrap_or_else(|e| panic!("{e}"));
        let path = format!("presets/{name}.toml");
        let on_disk = preset::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (
                &embedded.description,
                &embedded.server,
                &embedded.client,
                &embedded.tui
            ),
            (
                &on_disk.description,
                &on_disk.server,
                &on_disk.client,
                &on_disk.tui
            ),
            "{path} and the embedded copy differ"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.trim_start().starts_with('#'),
            "{path} opens with comments"
        );
        // Each subcommand accepts the preset's flags as they are expanded.
        for (sub, mode) in [
            ("server", None),
            ("client", None),
            ("tui", Some("local")),
            ("tui", Some("server")),
            ("tui", Some("client")),
        ] {
            let mut argv: Vec<OsString> = vec!["c1m".into(), sub.into()];
            argv.extend(embedded.expand(sub, mode));
            Cli::try_parse_from_argv(&argv);
        }
    }
    let descriptions = preset::builtin_descriptions();
    assert_eq!(descriptions.len(), preset::builtin_names().len());
    let listing = preset::list();
    for (name, description) in descriptions {
        assert!(
            listing.contains(name) && listing.contains(&description),
            "{listing}"
        );
    }
    assert!(listing.contains("--conns 600000"), "{listing}");
}

trait ParseArgv {
    fn try_parse_from_argv(argv: &[OsString]) -> Cli;
}

impl ParseArgv for Cli {
    /// Parses as main must: with `args_override_self` on the root command.
    fn try_parse_from_argv(argv: &[OsString]) -> Cli {
        let m = Cli::command()
            .args_override_self(true)
            .try_get_matches_from(argv)
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        Cli::from_arg_matches(&m).unwrap()
    }
}

/// Loads every fixture in `dir`, which must fail, and compares the message with `.expected`.
fn check_fixtures(dir: &str, load: impl Fn(&str) -> Result<(), String>) {
    let bless = std::env::var_os("C1M_BLESS").is_some();
    let stems = toml_stems(dir);
    assert!(stems.len() >= 5, "{dir} has its fixtures");
    let mut failures = Vec::new();
    for stem in stems {
        let path = format!("{dir}/{stem}.toml");
        let expected_path = format!("{dir}/{stem}.expected");
        let got = match load(&path) {
            Ok(()) => {
                failures.push(format!("{path} loaded, but it is an invalid fixture"));
                continue;
            }
            Err(e) => e,
        };
        if bless {
            std::fs::write(&expected_path, format!("{got}\n")).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{expected_path}: {e} (run with C1M_BLESS=1)"));
        if got != expected.trim_end_matches('\n') {
            failures.push(format!(
                "{path}: the user sees\n{got}\n--- but {expected_path} says\n{expected}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // No stray expectations without a fixture.
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "expected") {
            assert!(
                p.with_extension("toml").exists(),
                "{} has no fixture",
                p.display()
            );
        }
    }
}

#[test]
fn invalid_themes_say_what_is_wrong() {
    check_fixtures("tests/fixtures/themes", |p| {
        Theme::load(p).map(drop).map_err(|e| e.to_string())
    });
}

#[test]
fn invalid_presets_say_what_is_wrong() {
    check_fixtures("tests/fixtures/presets", |p| {
        preset::load(p).map(drop).map_err(|e| e.to_string())
    });
}

#[test]
fn the_messages_name_file_key_value_and_remedy() {
    let e = preset::load("tests/fixtures/presets/typo-key.toml").unwrap_err();
    assert_eq!(e.problems.len(), 1);
    assert_eq!(e.problems[0].key, "client.con");
    assert_eq!(e.problems[0].value.as_deref(), Some("5"));
    assert_eq!(e.problems[0].line, Some(3));
    assert!(e.to_string().contains("did you mean `conns`?"));

    let e = preset::load("tests/fixtures/presets/several.toml").unwrap_err();
    let keys: Vec<&str> = e.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "description",
            "server.every",
            "client.con",
            "client.rate",
            "tui.step",
            "extras"
        ]
    );

    let e = Theme::load("tests/fixtures/themes/missing-role.toml").unwrap_err();
    let keys: Vec<&str> = e.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["roles.accent", "roles.gauge"]);

    let e = Theme::load("nosuch").unwrap_err();
    assert!(
        e.to_string()
            .contains("not a built-in theme (default, light, mono)"),
        "{e}"
    );
    let e = preset::load("c10").unwrap_err();
    assert!(e.to_string().contains("did you mean `c10k`?"), "{e}");
}

fn argv(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// main's order: splice the preset in, then parse with `args_override_self`.
fn run_argv(args: &[&str]) -> Command {
    let spliced = preset::splice(argv(args)).unwrap_or_else(|e| panic!("{e}"));
    Cli::try_parse_from_argv(&spliced).command
}

#[test]
fn user_flags_beat_the_preset() {
    let Command::Client(c) = run_argv(&["c1m", "client", "--preset", "seed-c1000k-client"]) else {
        panic!()
    };
    assert_eq!(
        (c.opts.conns, c.opts.ips, c.opts.rate, c.duration),
        (600_000, Some(10), 20_000.0, Duration::from_secs(600))
    );

    let Command::Client(c) = run_argv(&[
        "c1m",
        "client",
        "--conns",
        "5",
        "--preset",
        "seed-c1000k-client",
        "--duration=3s",
    ]) else {
        panic!()
    };
    assert_eq!(
        (c.opts.conns, c.opts.ips, c.duration),
        (5, Some(10), Duration::from_secs(3))
    );

    // --source-ips conflicts with the preset's `ips`: the user's choice wins, without an error.
    let Command::Client(c) = run_argv(&[
        "c1m",
        "client",
        "--preset",
        "seed-c1000k-client",
        "--source-ips",
        "10.0.0.0/28",
    ]) else {
        panic!()
    };
    assert_eq!(
        (c.opts.ips, c.opts.source_ips.as_deref()),
        (None, Some("10.0.0.0/28"))
    );

    let Command::Server(s) = run_argv(&["c1m", "server", "--preset", "seed-c1000k-server"]) else {
        panic!()
    };
    assert_eq!(s.opts.every, Every::Interval(Duration::from_secs(60)));
    assert_eq!(s.opts.payload, c1m::proto::payload::Format::Seed);
    assert_eq!(s.opts.listen, Some("0.0.0.0:8080".parse().unwrap()));
}

#[test]
fn tui_takes_the_sections_its_mode_runs() {
    // No --preset: local mode runs local-demo.
    let Command::Tui(t) = run_argv(&["c1m", "tui"]) else {
        panic!()
    };
    assert_eq!(
        (t.mode, t.client.conns, t.step),
        (TuiMode::Local, 2000, Some(500))
    );
    assert_eq!(t.server.every, Every::Interval(Duration::from_secs(10)));

    // --mode server: the [client] section is not applied, the preset's [tui] mode is overridden.
    let Command::Tui(t) = run_argv(&[
        "c1m",
        "tui",
        "--preset",
        "seed-c1000k-client",
        "--mode",
        "server",
    ]) else {
        panic!()
    };
    assert_eq!(t.mode, TuiMode::Server);
    assert_eq!(
        t.client.conns, 1000,
        "clap's default, not the preset's [client]"
    );
    assert_eq!(t.server.every, Every::Interval(Duration::from_secs(60)));

    // The preset's own mode applies when the user gives none.
    let Command::Tui(t) = run_argv(&["c1m", "tui", "--preset", "seed-c1000k-client"]) else {
        panic!()
    };
    assert_eq!(
        (t.mode, t.client.conns, t.step),
        (TuiMode::Local, 600_000, Some(60_000))
    );
}

#[test]
fn args_override_self_on_the_root_reaches_the_subcommands() {
    // What a caller gets when it puts expand()'s output before the user's flags without
    // splice(): `Cli` sets args_override_self, a global setting clap 4 propagates to subcommands.
    let p = preset::load("seed-c1000k-client").unwrap();
    let mut args = argv(&["c1m", "client"]);
    args.extend(p.expand("client", None));
    args.extend(argv(&["--conns", "7", "--force", "--force"]));
    let Command::Client(c) = Cli::try_parse_from_argv(&args).command else {
        panic!()
    };
    assert_eq!((c.opts.conns, c.force), (7, true));
    // Without it, a repeated flag would be an error.
    let strict = Cli::command().args_override_self(false);
    assert!(strict.try_get_matches_from(&args).is_err());
}

#[test]
fn a_command_line_without_preset_is_untouched() {
    for args in [
        &["c1m", "server", "--every", "5s"][..],
        &["c1m", "tui", "--mode", "client"],
        &["c1m", "doctor"],
        &["c1m", "client", "--conns", "lots"],
    ] {
        assert_eq!(preset::splice(argv(args)).unwrap(), argv(args));
    }
    let e = preset::splice(argv(&[
        "c1m",
        "server",
        "--preset",
        "tests/fixtures/presets/bad-value.toml",
    ]))
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("invalid preset tests/fixtures/presets/bad-value.toml")
    );
}

#[test]
fn a_preset_file_from_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mine.toml");
    std::fs::write(
        &path,
        "description = \"mine\"\n[client]\nconns = 3\nforce = true\n",
    )
    .unwrap();
    let p: Preset = preset::load(path.to_str().unwrap()).unwrap();
    assert_eq!(p.name, "mine");
    assert_eq!(p.expand("client", None), argv(&["--conns=3", "--force"]));
    assert!(Path::new(&p.file).is_absolute());
}

#[test]
fn no_color_selects_mono() {
    // NO_COLOR is read from the environment, which a test must not change in its own process:
    // run this test binary again with NO_COLOR set, for the ignored test below.
    for (value, expected) in [("1", "mono"), ("", "light")] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "config_files::no_color_child",
                "--ignored",
                "--nocapture",
            ])
            .env("NO_COLOR", value)
            .env("EXPECTED_THEME", expected)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "NO_COLOR={value:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
#[ignore = "run by no_color_selects_mono with NO_COLOR set"]
fn no_color_child() {
    let expected = std::env::var("EXPECTED_THEME").unwrap();
    assert_eq!(Theme::from_env_or("light").unwrap().name, expected);
    // Even a theme that does not exist: NO_COLOR asks for no colour, whatever --theme says.
    if expected == "mono" {
        assert_eq!(Theme::from_env_or("nosuch").unwrap().name, "mono");
    }
}
