//! Colour themes. Panes ask the theme for meanings (`theme.border(focused)`, `theme.error()`),
//! never for raw colours, so a theme file can restyle everything and `mono` can drop colour.
//!
//! A theme file is TOML: a `[palette]` of named colours and a `[roles]` table giving every role
//! a style (see `themes/default.toml`, whose comments are the manual). The built-in themes are
//! embedded; `--theme PATH` reads a file. Every problem in a file is reported at once.

pub use crate::config_file::ConfigError;
use crate::config_file::{Problems, did_you_mean, parse_doc, read_source};
use ratatui::style::{Color, Modifier, Style};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::sync::OnceLock;

/// Built-in themes, in the order `t` cycles through them.
const BUILTIN: &[(&str, &str)] = &[
    ("default", include_str!("../themes/default.toml")),
    ("light", include_str!("../themes/light.toml")),
    ("mono", include_str!("../themes/mono.toml")),
];
const BUILTIN_NAMES: &[&str] = &["default", "light", "mono"];

/// Every role a theme must style, as written in `[roles]`.
pub const ROLES: [&str; 9] = [
    "border",
    "border_focused",
    "text",
    "muted",
    "ok",
    "warn",
    "error",
    "accent",
    "gauge",
];

const STYLE_KEYS: [&str; 7] = [
    "fg",
    "bg",
    "bold",
    "dim",
    "italic",
    "reversed",
    "underlined",
];

/// The colour names a theme may use (besides `#rrggbb` and 0-255).
const COLOUR_NAMES: &str = "black, red, green, yellow, blue, magenta, cyan, gray, darkgray, \
    lightred, lightgreen, lightyellow, lightblue, lightmagenta, lightcyan, white, reset";

#[derive(Clone, Debug, PartialEq)]
pub struct Theme {
    pub name: String,
    pub border: Style,
    pub border_focused: Style,
    pub text: Style,
    pub muted: Style,
    pub ok: Style,
    pub warn: Style,
    pub error: Style,
    pub accent: Style,
    pub gauge: Style,
}

impl Theme {
    /// The built-in dark theme (`themes/default.toml`), also what tests render with.
    pub fn fallback() -> Theme {
        builtin("default")
    }

    /// The built-in themes' names, in the order `t` cycles through them.
    pub fn builtin_names() -> &'static [&'static str] {
        BUILTIN_NAMES
    }

    /// Loads a built-in theme by name or a theme file by path.
    pub fn load(name_or_path: &str) -> Result<Theme, ConfigError> {
        let (name, file, text) = read_source("theme", name_or_path, BUILTIN)?;
        Theme::parse(&name, &file, &text)
    }

    /// `--theme`, honouring NO_COLOR (<https://no-color.org>): when it is set to anything
    /// non-empty the result is `mono`, whatever was asked for.
    pub fn from_env_or(name_or_path: &str) -> Result<Theme, ConfigError> {
        Theme::select(name_or_path, std::env::var_os("NO_COLOR").as_deref())
    }

    /// [`Theme::from_env_or`] with NO_COLOR's value passed in.
    pub fn select(name_or_path: &str, no_color: Option<&OsStr>) -> Result<Theme, ConfigError> {
        if no_color.is_some_and(|v| !v.is_empty()) {
            Ok(builtin("mono"))
        } else {
            Theme::load(name_or_path)
        }
    }

    /// The built-in theme after this one (default → light → mono → default), for the `t` key.
    /// A theme loaded from a file is followed by `default`.
    pub fn next_builtin(&self) -> Theme {
        let next = match BUILTIN_NAMES.iter().position(|n| *n == self.name) {
            Some(i) => BUILTIN_NAMES[(i + 1) % BUILTIN_NAMES.len()],
            None => BUILTIN_NAMES[0],
        };
        builtin(next)
    }

    /// Parses and checks theme text; `file` is what messages call it.
    pub fn parse(name: &str, file: &str, text: &str) -> Result<Theme, ConfigError> {
        let doc = parse_doc("theme", file, text)?;
        let mut problems = Problems::new(doc.lines);
        // The palette first: roles refer to it.
        let palette = palette(doc.table.get("palette"), &mut problems);
        let mut roles: BTreeMap<&'static str, Style> = BTreeMap::new();
        let mut saw_roles = false;
        for (k, v) in &doc.table {
            match k.as_str() {
                "palette" => {}
                "description" if v.is_str() => {}
                "description" => problems.add(k, Some(v), "expected a string in quotes"),
                "roles" => {
                    saw_roles = true;
                    match v {
                        toml::Value::Table(t) => {
                            roles = role_styles(t, &palette, &mut problems);
                        }
                        _ => problems.add(k, Some(v), "expected a section: [roles]"),
                    }
                }
                other => problems.add(
                    other,
                    if v.is_table() { None } else { Some(v) },
                    format!(
                        "unknown {}; a theme has `description`, [palette] and [roles]{}",
                        if v.is_table() { "section" } else { "key" },
                        did_you_mean(other, ["description", "palette", "roles"])
                    ),
                ),
            }
        }
        if !saw_roles {
            problems.add(
                "roles",
                None,
                format!(
                    "missing: a theme needs a [roles] section setting {}",
                    ROLES.join(", ")
                ),
            );
        }
        problems.into_result("theme", file)?;
        let r = |name: &str| roles[name];
        Ok(Theme {
            name: name.to_string(),
            border: r("border"),
            border_focused: r("border_focused"),
            text: r("text"),
            muted: r("muted"),
            ok: r("ok"),
            warn: r("warn"),
            error: r("error"),
            accent: r("accent"),
            gauge: r("gauge"),
        })
    }

    pub fn border(&self, focused: bool) -> Style {
        if focused {
            self.border_focused
        } else {
            self.border
        }
    }

    pub fn title(&self, focused: bool) -> Style {
        if focused {
            self.accent
        } else {
            self.text.add_modifier(Modifier::BOLD)
        }
    }

    pub fn text(&self) -> Style {
        self.text
    }
    pub fn muted(&self) -> Style {
        self.muted
    }
    pub fn ok(&self) -> Style {
        self.ok
    }
    pub fn warn(&self) -> Style {
        self.warn
    }
    pub fn error(&self) -> Style {
        self.error
    }
    pub fn accent(&self) -> Style {
        self.accent
    }
    pub fn gauge(&self) -> Style {
        self.gauge
    }

    pub fn status(&self, s: crate::doctor::checks::Status) -> Style {
        use crate::doctor::checks::Status;
        match s {
            Status::Ok => self.ok,
            Status::Warn => self.warn,
            Status::Fail => self.error,
        }
    }
}

/// A built-in theme, parsed once; panics on an unknown name (see [`Theme::builtin_names`]).
/// The `[palette]` section: named colours.
fn palette(section: Option<&toml::Value>, problems: &mut Problems) -> BTreeMap<String, Color> {
    let mut palette = BTreeMap::new();
    match section {
        Some(toml::Value::Table(t)) => {
            for (k, v) in t {
                match colour_literal(v) {
                    Ok(c) => {
                        palette.insert(k.clone(), c);
                    }
                    Err(why) => problems.add(&format!("palette.{k}"), Some(v), why),
                }
            }
        }
        Some(v) => problems.add("palette", Some(v), "expected a section: [palette]"),
        None => {}
    }
    palette
}

/// The `[roles]` section: a style for every role, each problem reported.
fn role_styles(
    t: &toml::Table,
    palette: &BTreeMap<String, Color>,
    problems: &mut Problems,
) -> BTreeMap<&'static str, Style> {
    let mut roles = BTreeMap::new();
    for (role, style) in t {
        let key = format!("roles.{role}");
        match ROLES.iter().find(|r| **r == role) {
            Some(r) => {
                if let Some(s) = style_of(&key, style, palette, problems) {
                    roles.insert(*r, s);
                }
            }
            None => problems.add(
                &key,
                Some(style),
                format!(
                    "unknown role; the roles are {}{}",
                    ROLES.join(", "),
                    did_you_mean(role, ROLES)
                ),
            ),
        }
    }
    // A misspelt role is reported once, as unknown with its suggestion.
    let meant: Vec<String> = t
        .keys()
        .filter(|k| !ROLES.contains(&k.as_str()))
        .map(|k| did_you_mean(k, ROLES))
        .collect();
    for r in ROLES {
        if !t.contains_key(r) && !meant.contains(&format!("; did you mean `{r}`?")) {
            problems.add(
                &format!("roles.{r}"),
                None,
                "missing: every role needs a style",
            );
        }
    }
    roles
}

fn builtin(name: &str) -> Theme {
    static PARSED: OnceLock<Vec<Theme>> = OnceLock::new();
    let all = PARSED.get_or_init(|| {
        BUILTIN
            .iter()
            .map(|(n, text)| {
                Theme::parse(n, &format!("built-in {n}"), text).unwrap_or_else(|e| panic!("{e}"))
            })
            .collect()
    });
    all.iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no built-in theme {name}"))
        .clone()
}

/// `c1m themes`: each built-in theme's name and a sample of its roles.
pub fn list() -> String {
    let mut out = String::new();
    for &name in BUILTIN_NAMES {
        let t = builtin(name);
        let sample: Vec<String> = [
            ("text", t.text),
            ("muted", t.muted),
            ("ok", t.ok),
            ("warn", t.warn),
            ("error", t.error),
            ("accent", t.accent),
        ]
        .iter()
        .map(|(role, style)| format!("{role}={}", describe(*style)))
        .collect();
        out.push_str(&format!("{name:<8} {}\n", sample.join("  ")));
    }
    out.push_str(
        "\nUse one with `--theme NAME`, or copy themes/NAME.toml and pass `--theme PATH`;\n\
         NO_COLOR=1 selects mono. In the console, `t` switches theme.\n",
    );
    out
}

/// `cyan+bold`, `reversed`, `plain`: a style in a few characters.
fn describe(s: Style) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(fg) = s.fg {
        parts.push(colour_name(fg));
    }
    if let Some(bg) = s.bg {
        parts.push(format!("on {}", colour_name(bg)));
    }
    for (m, n) in [
        (Modifier::BOLD, "bold"),
        (Modifier::DIM, "dim"),
        (Modifier::ITALIC, "italic"),
        (Modifier::REVERSED, "reversed"),
        (Modifier::UNDERLINED, "underlined"),
    ] {
        if s.add_modifier.contains(m) {
            parts.push(n.into());
        }
    }
    if parts.is_empty() {
        "plain".into()
    } else {
        parts.join("+")
    }
}

/// A role's foreground as CSS `#rrggbb`, for the HTML report; `None` when the role has none or
/// names one of the terminal's own sixteen colours, whose shade only the terminal knows.
pub fn css_colour(style: Style) -> Option<String> {
    match style.fg? {
        Color::Rgb(r, g, b) => Some(format!("#{r:02x}{g:02x}{b:02x}")),
        _ => None,
    }
}

fn colour_name(c: Color) -> String {
    match c {
        Color::Rgb(r, g, b) => format!("#{r:02x}{g:02x}{b:02x}"),
        Color::Indexed(i) => i.to_string(),
        other => other.to_string().to_lowercase(),
    }
}

/// A colour written directly: a name, `#rrggbb`, or 0-255 (as a number or a string).
fn colour_literal(v: &toml::Value) -> Result<Color, String> {
    colour_or(v, &BTreeMap::new())
}

/// The names ratatui knows, for suggestions.
fn colour_names() -> impl Iterator<Item = &'static str> {
    COLOUR_NAMES.split(',').map(str::trim)
}

/// A colour in a role: a palette name first, else a colour literal.
fn colour_or(v: &toml::Value, palette: &BTreeMap<String, Color>) -> Result<Color, String> {
    let s = match v {
        toml::Value::String(s) => s,
        toml::Value::Integer(i) => {
            return u8::try_from(*i)
                .map(Color::Indexed)
                .map_err(|_| "an indexed colour is 0 to 255".to_string());
        }
        _ => return Err(format!("not a colour: {HOW_TO_WRITE_A_COLOUR}")),
    };
    if let Some(c) = palette.get(s) {
        return Ok(*c);
    }
    if let Ok(c) = s.parse::<Color>() {
        return Ok(c);
    }
    let what = if palette.is_empty() {
        "not a colour".to_string()
    } else {
        let names: Vec<&str> = palette.keys().map(String::as_str).collect();
        format!(
            "neither a [palette] name ({}) nor a colour",
            names.join(", ")
        )
    };
    let mut candidates: Vec<&str> = palette.keys().map(String::as_str).collect();
    for n in colour_names() {
        candidates.push(n);
    }
    let hint = did_you_mean(s, candidates);
    if hint.is_empty() {
        Err(format!("{what}: {HOW_TO_WRITE_A_COLOUR}"))
    } else {
        Err(format!("{what}{hint}"))
    }
}

const HOW_TO_WRITE_A_COLOUR: &str = "use a name (black, red, green, yellow, blue, magenta, cyan, gray, darkgray, lightred, \
     lightgreen, lightyellow, lightblue, lightmagenta, lightcyan, white, reset), \"#rrggbb\", \
     or 0 to 255";

/// A role's style: a colour (the foreground) or an inline table of fg, bg and modifiers.
fn style_of(
    key: &str,
    v: &toml::Value,
    palette: &BTreeMap<String, Color>,
    problems: &mut Problems,
) -> Option<Style> {
    let toml::Value::Table(t) = v else {
        return match colour_or(v, palette) {
            Ok(c) => Some(Style::new().fg(c)),
            Err(why) => {
                problems.add(key, Some(v), why);
                None
            }
        };
    };
    let mut style = Style::new();
    let mut ok = true;
    for (k, v) in t {
        let sub = format!("{key}.{k}");
        match k.as_str() {
            "fg" | "bg" => match colour_or(v, palette) {
                Ok(c) if k == "fg" => style = style.fg(c),
                Ok(c) => style = style.bg(c),
                Err(why) => {
                    problems.add(&sub, Some(v), why);
                    ok = false;
                }
            },
            m @ ("bold" | "dim" | "italic" | "reversed" | "underlined") => {
                let modifier = match m {
                    "bold" => Modifier::BOLD,
                    "dim" => Modifier::DIM,
                    "italic" => Modifier::ITALIC,
                    "reversed" => Modifier::REVERSED,
                    _ => Modifier::UNDERLINED,
                };
                match v {
                    toml::Value::Boolean(true) => style = style.add_modifier(modifier),
                    toml::Value::Boolean(false) => {}
                    _ => {
                        problems.add(&sub, Some(v), "expected true or false");
                        ok = false;
                    }
                }
            }
            other => {
                problems.add(
                    &sub,
                    Some(v),
                    format!(
                        "unknown style key; a style has {}{}",
                        STYLE_KEYS.join(", "),
                        did_you_mean(other, STYLE_KEYS)
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(style)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_is_default_toml_and_keeps_its_colours() {
        let t = Theme::fallback();
        assert_eq!(t, Theme::load("default").unwrap());
        assert_eq!(t.name, "default");
        assert_eq!(t.border, Style::new().fg(Color::DarkGray));
        assert_eq!(t.border_focused, Style::new().fg(Color::Cyan));
        assert_eq!(t.text, Style::new().fg(Color::White));
        assert_eq!(t.muted, Style::new().fg(Color::Gray));
        assert_eq!(t.ok, Style::new().fg(Color::Green));
        assert_eq!(t.warn, Style::new().fg(Color::Yellow));
        assert_eq!(
            t.error,
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
        );
        assert_eq!(
            t.accent,
            Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
        );
        assert_eq!(t.gauge, Style::new().fg(Color::Blue));
    }

    #[test]
    fn t_cycles_the_builtins() {
        let names: Vec<String> =
            std::iter::successors(Some(Theme::fallback()), |t| Some(t.next_builtin()))
                .take(4)
                .map(|t| t.name)
                .collect();
        assert_eq!(names, ["default", "light", "mono", "default"]);
    }

    #[test]
    fn mono_has_no_colour() {
        let t = Theme::load("mono").unwrap();
        for s in [
            t.border,
            t.border_focused,
            t.text,
            t.muted,
            t.ok,
            t.warn,
            t.error,
            t.accent,
            t.gauge,
        ] {
            assert_eq!((s.fg, s.bg), (None, None), "{s:?}");
        }
        assert_ne!(t.error, t.text, "errors stand out without colour");
    }

    #[test]
    fn no_color_selects_mono() {
        assert_eq!(
            Theme::select("light", Some(OsStr::new("1"))).unwrap().name,
            "mono"
        );
        assert_eq!(
            Theme::select("light", Some(OsStr::new(""))).unwrap().name,
            "light"
        );
        assert_eq!(Theme::select("light", None).unwrap().name, "light");
    }

    #[test]
    fn palette_names_and_literals() {
        let t = Theme::parse(
            "x",
            "x.toml",
            "[palette]\nsea = \"#005f87\"\nn = 208\n[roles]\nborder = \"sea\"\nborder_focused = 12\n\
             text = \"white\"\nmuted = { fg = \"n\", dim = true }\nok = \"green\"\nwarn = \"yellow\"\n\
             error = { fg = \"red\", bg = \"sea\", bold = true }\naccent = \"cyan\"\ngauge = \"blue\"\n",
        )
        .unwrap();
        assert_eq!(t.border.fg, Some(Color::Rgb(0, 0x5f, 0x87)));
        assert_eq!(t.border_focused.fg, Some(Color::Indexed(12)));
        assert_eq!(
            t.muted,
            Style::new()
                .fg(Color::Indexed(208))
                .add_modifier(Modifier::DIM)
        );
        assert_eq!(t.error.bg, Some(Color::Rgb(0, 0x5f, 0x87)));
    }

    #[test]
    fn every_problem_at_once() {
        let e = Theme::parse(
            "x",
            "x.toml",
            "[palette]\nsea = \"#00zz00\"\n[roles]\nborder = \"se\"\nbroder = \"red\"\n\
             error = { fg = \"red\", blod = true }\n",
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("x.toml:2: palette.sea = \"#00zz00\": not a colour"),
            "{text}"
        );
        assert!(
            text.contains("x.toml:4: roles.border = \"se\": not a colour"),
            "{text}"
        );
        assert!(
            text.contains("roles.broder = \"red\": unknown role"),
            "{text}"
        );
        assert!(text.contains("did you mean `border`?"), "{text}");
        assert!(
            text.contains("roles.error.blod = true: unknown style key"),
            "{text}"
        );
        assert!(text.contains("x.toml: roles.gauge: missing"), "{text}");
    }

    #[test]
    fn list_shows_every_builtin() {
        let l = list();
        for n in BUILTIN_NAMES {
            assert!(l.contains(n), "{l}");
        }
        assert!(l.contains("error=red+bold"), "{l}");
    }
}
