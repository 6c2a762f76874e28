//! The host configuration: one YAML file for the controller, read before the arguments are
//! parsed. It is `--config FILE`, else LABCTL_CONFIG (empty: no file), else
//! /etc/labctl/config.yaml when that exists.
//!
//! Its fields are the arguments of `labctl serve` that read a variable, each named as its
//! flag in camelCase (`--poll-seconds` → `pollSeconds`, the repository → `repo`), plus
//! `stateDir`. A field's value fills the argument's variable when that is not set, so a flag
//! wins over the variable, the variable over the file, and the file over the default — and a
//! new `serve` argument with a variable is a new field with no edit here. The file fills
//! `databaseUrl` and `stateDir` for every command (`labctl status` on the host reads the
//! daemon's store), the other fields for `serve` (and `config`) only.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;

use clap::error::{ContextKind, ContextValue};
use clap::{Args, CommandFactory, Parser};
use serde_json::json;

use super::{Cli, Format, EXIT_USAGE};

/// Where the SQLite store's default file lives (the field `stateDir`); read by `labctl db`'s
/// default database path.
pub const STATE_DIR_ENV: &str = "LABCTL_STATE_DIR";
const CONFIG_ENV: &str = "LABCTL_CONFIG";
const DEFAULT_PATH: &str = "/etc/labctl/config.yaml";
/// A host configuration is a screenful of settings; anything this large is a wrong file.
const MAX_BYTES: u64 = 1024 * 1024;
/// The fields every command takes from the file.
const SHARED: &[&str] = &["databaseUrl", "stateDir"];

#[derive(Args)]
pub struct ConfigArgs {
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

/// One field of the file.
#[derive(Clone, Debug)]
struct Field {
    key: String,
    /// The variable the argument reads, which the file fills.
    env: String,
    /// `--poll-seconds`, or the positional's name.
    flag: Option<String>,
    default: Option<String>,
    /// Shown masked (a database URL may hold a password, a notification URL a token).
    secret: bool,
}

/// The fields, from `labctl serve`'s arguments.
fn fields() -> Vec<Field> {
    let cli = Cli::command();
    let serve = cli
        .find_subcommand("serve")
        .expect("labctl has a serve command");
    let mut fields: Vec<Field> = serve
        .get_arguments()
        .filter_map(|arg| {
            let env = arg.get_env()?.to_string_lossy().into_owned();
            let name = arg
                .get_long()
                .map(str::to_string)
                .unwrap_or_else(|| arg.get_id().to_string());
            let default: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            Some(Field {
                key: camel(&name),
                env,
                flag: Some(match arg.get_long() {
                    Some(long) => format!("--{long}"),
                    None => name.to_ascii_uppercase(),
                }),
                default: (!default.is_empty()).then(|| default.join(",")),
                secret: arg.is_hide_env_values_set(),
            })
        })
        .collect();
    fields.push(Field {
        key: "stateDir".into(),
        env: STATE_DIR_ENV.into(),
        flag: None,
        default: None,
        secret: false,
    });
    fields
}

fn camel(flag: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in flag.chars() {
        match c {
            '-' | '_' => upper = true,
            c if upper => {
                out.push(c.to_ascii_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}

/// Where each value in force came from, for `labctl config` and for errors.
#[derive(Debug, Default)]
struct Applied {
    path: Option<PathBuf>,
    /// Field key → (value, line) for each field the file gave a value the process took.
    from_file: BTreeMap<String, (String, usize)>,
    /// Field key → the variable that held its value before the file was read.
    from_env: BTreeMap<String, String>,
}

static APPLIED: OnceLock<Applied> = OnceLock::new();

/// Reads the host configuration named by `args` (the process's arguments) and the
/// environment, and fills the variables of the fields it sets. Call before the arguments are
/// parsed and before any thread starts. An error says what is wrong, in which file and line.
pub fn apply(args: &[OsString]) -> Result<(), String> {
    let path = config_path(args);
    let command = subcommand(args);
    let fields = fields();
    let mut applied = Applied {
        path: path.clone(),
        ..Applied::default()
    };
    for field in &fields {
        if std::env::var_os(&field.env).is_some() {
            applied
                .from_env
                .insert(field.key.clone(), field.env.clone());
        } else if !field.env.starts_with("LABCTL_") {
            // Every field can be set by a LABCTL_ variable, also one whose argument reads
            // a conventional name (DATABASE_URL).
            let alias = format!("LABCTL_{}", field.env);
            if let Some(value) = std::env::var_os(&alias) {
                set_env(&field.env, &value);
                applied.from_env.insert(field.key.clone(), alias);
            }
        }
    }
    if let Some(path) = &path {
        let text = read(path)?;
        for (key, (value, line)) in parse(path, &text, &fields)? {
            let applies = matches!(command.as_deref(), Some("serve" | "config"))
                || SHARED.contains(&key.as_str());
            let field = fields
                .iter()
                .find(|f| f.key == key)
                .expect("parse checks keys");
            if applies && !applied.from_env.contains_key(&key) {
                set_env(&field.env, std::ffi::OsStr::new(&value));
                applied.from_file.insert(key, (value, line));
            }
        }
    }
    let _ = APPLIED.set(applied);
    Ok(())
}

fn set_env(name: &str, value: &std::ffi::OsStr) {
    // Sound here: `apply` runs first thing in `main`, before any other thread exists.
    std::env::set_var(name, value);
}

/// `--config FILE` or `--config=FILE`, else LABCTL_CONFIG, else the default file if present.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut given = None;
    let mut it = args.iter().skip(1);
    while let Some(arg) = it.next() {
        let text = arg.to_string_lossy();
        if text == "--" {
            break;
        } else if text == "--config" {
            given = it.next().cloned();
        } else if let Some(value) = text.strip_prefix("--config=") {
            given = Some(value.into());
        }
    }
    match given.or_else(|| std::env::var_os(CONFIG_ENV)) {
        Some(path) if path.is_empty() => None,
        Some(path) => Some(PathBuf::from(path)),
        None => Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.exists()),
    }
}

/// The subcommand: the first argument that is not an option (or `--config`'s value).
fn subcommand(args: &[OsString]) -> Option<String> {
    let mut it = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(arg) = it.next() {
        if arg == "--config" {
            it.next();
        } else if !arg.starts_with('-') {
            return Some(arg.into_owned());
        }
    }
    None
}

fn read(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot read the host configuration {shown}: {e}"))?;
    let mut text = String::new();
    file.take(MAX_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read the host configuration {shown}: {e}"))?;
    if text.len() as u64 > MAX_BYTES {
        return Err(format!(
            "{shown}: the host configuration is over {MAX_BYTES} bytes; is it the right file?"
        ));
    }
    Ok(text)
}

/// The fields of `text` with their values and lines; an unknown field, a value that is not
/// one string, number or boolean, or a file that is not a mapping is an error at its line.
fn parse(
    path: &Path,
    text: &str,
    fields: &[Field],
) -> Result<BTreeMap<String, (String, usize)>, String> {
    let shown = path.display();
    let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| match e.location() {
        Some(at) => format!("{shown}:{}:{}: not YAML: {e}", at.line(), at.column()),
        None => format!("{shown}: not YAML: {e}"),
    })?;
    let mapping = match doc {
        serde_yaml::Value::Null => return Ok(BTreeMap::new()),
        serde_yaml::Value::Mapping(m) => m,
        _ => {
            return Err(format!(
                "{shown}:1:1: the host configuration is a mapping of fields (`pollSeconds: 60`)"
            ))
        }
    };
    let keys: Vec<&str> = fields.iter().map(|f| f.key.as_str()).collect();
    let mut out = BTreeMap::new();
    for (key, value) in mapping {
        let Some(key) = key.as_str().map(str::to_string) else {
            return Err(format!(
                "{shown}: every field name is a string; {key:?} is not"
            ));
        };
        let line = key_line(text, &key);
        let at = format!("{shown}:{line}:1");
        if !keys.contains(&key.as_str()) {
            let hint = match labctl::validate::did_you_mean(&key, keys.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "`labctl config` lists the fields".to_string(),
            };
            return Err(format!("{at}: unknown field `{key}`; {hint}"));
        }
        let value = match value {
            serde_yaml::Value::String(s) => s,
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::Bool(b) => b.to_string(),
            serde_yaml::Value::Null => {
                return Err(format!(
                    "{at}: `{key}` has no value; give one or remove the line"
                ))
            }
            _ => {
                return Err(format!(
                    "{at}: `{key}` takes one value (a string, number or boolean)"
                ))
            }
        };
        out.insert(key, (value, line));
    }
    Ok(out)
}

/// The line of top-level `key:` in `text` (1 when it is written some other way, as in a flow
/// mapping).
fn key_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|line| {
            [key.to_string(), format!("\"{key}\""), format!("'{key}'")]
                .iter()
                .any(|k| {
                    line.strip_prefix(k.as_str())
                        .is_some_and(|rest| rest.trim_start().starts_with(':'))
                })
        })
        .map_or(1, |i| i + 1)
}

/// A note for an argument error whose value came from the file: which field and line.
pub fn blame(error: &clap::Error) -> Option<String> {
    let applied = APPLIED.get()?;
    let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    let flag = arg.split_whitespace().next()?;
    let field = fields()
        .into_iter()
        .find(|f| f.flag.as_deref() == Some(flag) || f.flag.as_deref() == Some(arg))?;
    let (_, line) = applied.from_file.get(&field.key)?;
    let path = applied.path.as_ref()?;
    Some(format!(
        "note: the value is `{}` at {}:{line} (the host configuration)",
        field.key,
        path.display()
    ))
}

/// `labctl config`: each field's value in force for `labctl serve` and where it came from,
/// secrets masked; exit 2 when a value would not be accepted.
pub fn run(args: &ConfigArgs) -> ExitCode {
    let applied = APPLIED.get_or_init(Applied::default);
    let rows: Vec<serde_json::Value> = fields()
        .into_iter()
        .map(|field| {
            let (value, source) = if let Some(var) = applied.from_env.get(&field.key) {
                (std::env::var(&field.env).ok(), format!("environment {var}"))
            } else if let Some((value, line)) = applied.from_file.get(&field.key) {
                let path = applied.path.as_deref().unwrap_or(Path::new(""));
                (Some(value.clone()), format!("{}:{line}", path.display()))
            } else if let Some(default) = &field.default {
                (Some(default.clone()), "default".to_string())
            } else {
                (None, "unset".to_string())
            };
            let value = value.map(|v| if field.secret { mask(&v) } else { v });
            json!({
                "key": field.key,
                "value": value,
                "source": source,
                "env": field.env,
                "flag": field.flag,
            })
        })
        .collect();
    // The values as `serve` would take them: a bad one is reported as serve would.
    let check = Cli::try_parse_from(["labctl", "serve"]);
    match args.format {
        Format::Json => outln!(
            "{}",
            json!({
                "file": applied.path.as_ref().map(|p| p.display().to_string()),
                "fields": rows,
                "valid": check.is_ok(),
            })
        ),
        Format::Human => {
            match &applied.path {
                Some(p) => outln!("host configuration: {}", p.display()),
                None => {
                    outln!("host configuration: none (--config, {CONFIG_ENV} or {DEFAULT_PATH})")
                }
            }
            for row in &rows {
                outln!(
                    "  {:<22} {:<40} {}",
                    row["key"].as_str().unwrap_or(""),
                    row["value"].as_str().unwrap_or("-"),
                    row["source"].as_str().unwrap_or("")
                );
            }
        }
    }
    match check {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("error: `labctl serve` would refuse this configuration:");
            errln!("{}", e.render().to_string().trim_end());
            if let Some(note) = blame(&e) {
                errln!("{note}");
            }
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// A URL with its userinfo (as everything labctl prints: [`labctl::redact::userinfo`]) and
/// its query replaced by `***`; anything that is not a URL entirely.
fn mask(value: &str) -> String {
    if !value.contains("://") {
        return "***".into();
    }
    let value = labctl::redact::userinfo(value);
    match value.split_once('?') {
        Some((url, _)) => format!("{url}?***"),
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_the_flags_in_camel_case() {
        let keys: Vec<String> = fields().into_iter().map(|f| f.key).collect();
        for key in [
            "repo",
            "databaseUrl",
            "pollSeconds",
            "mcpHttp",
            "tokens",
            "oauthIssuer",
            "oauthAudience",
            "oauthScope",
            "noWatch",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} not in {keys:?}");
        }
    }

    #[test]
    fn masks_passwords_and_queries_but_not_hosts() {
        assert_eq!(
            mask("postgres://labctl:s3cret@db.lab:5432/labctl"),
            "postgres://***@db.lab:5432/labctl"
        );
        assert_eq!(
            mask("https://ntfy.lab/alerts?auth=tk_x"),
            "https://ntfy.lab/alerts?***"
        );
        assert_eq!(
            mask("sqlite:///var/lib/labctl/labctl.db"),
            "sqlite:///var/lib/labctl/labctl.db"
        );
        assert_eq!(mask("opaque"), "***");
    }

    #[test]
    fn unknown_fields_are_named_with_their_line_and_a_suggestion() {
        let text = "repo: /srv/lab\n\npollSecond: 30\n";
        let err = parse(Path::new("c.yaml"), text, &fields()).unwrap_err();
        assert_eq!(
            err,
            "c.yaml:3:1: unknown field `pollSecond`; did you mean `pollSeconds`?"
        );
        let err = parse(Path::new("c.yaml"), "schedule: [a, b]\n", &fields()).unwrap_err();
        assert!(
            err.starts_with("c.yaml:1:1: `schedule` takes one value"),
            "{err}"
        );
    }
}
