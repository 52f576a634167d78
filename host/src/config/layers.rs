//! The layers under [`Settings`]: defaults < TOML file <
//! `SPINNERET_<TABLE>__<KEY>` environment variables, merged as one TOML tree
//! before it is read into the tables.

use super::{ConfigError, Settings};
use std::path::Path;

const ENV_PREFIX: &str = "SPINNERET_";

impl Settings {
    /// Load defaults < `file` < environment. CLI flags are applied by the
    /// caller on the result, then [`Settings::validate`] runs.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut tree = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.into(),
                    source,
                })?;
                text.parse::<toml::Table>().map_err(|e| ConfigError::File {
                    path: path.into(),
                    message: e.to_string(),
                })?
            }
            None => toml::Table::new(),
        };
        for (var, value) in env {
            let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let Some((table, key)) = rest.split_once("__") else {
                continue;
            };
            let path: Vec<String> = std::iter::once(table)
                .chain(key.split("__"))
                .map(|p| p.to_ascii_lowercase())
                .collect();
            set_path(&mut tree, &path, env_value(&value)).map_err(|message| ConfigError::Env {
                var: var.clone(),
                message,
            })?;
        }
        // The path names the key at fault (`crawl.lease_ttl: ...`).
        serde_path_to_error::deserialize(toml::Value::Table(tree)).map_err(|e| {
            ConfigError::Invalid(format!(
                "{}: {} (check the config file and SPINNERET_* variables)",
                e.path(),
                e.inner().message()
            ))
        })
    }
}

/// An env value as TOML when it parses as a scalar or array, else a string.
fn env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn set_path(tree: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, tables) = path.split_last().ok_or("empty key")?;
    let mut cur = tree;
    for name in tables {
        let entry = cur
            .entry(name.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{name}` is not a table"))?;
    }
    cur.insert(last.clone(), value);
    Ok(())
}
