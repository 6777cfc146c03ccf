//! eKuiper's source configuration files (`etc/mqtt_source.yaml`, `etc/sources/redis.yaml`):
//! a `default` section and named sections a stream or table selects with `CONF_KEY`, each
//! named section laid over `default`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// One section of a source configuration file.
pub trait Section: Clone + Default + DeserializeOwned {
    /// The command-line option that gives the file (`--mqtt-conf`), named when a `CONF_KEY` is
    /// used without one.
    const OPTION: &'static str;

    /// `self` with the fields `over` sets replaced.
    fn laid_under(&self, over: &Self) -> Self;
}

/// A source configuration file: its sections by name.
#[derive(Debug, Clone)]
pub struct ConfFile<S> {
    /// Where it was read from (for error messages and relative paths).
    pub path: Option<PathBuf>,
    sections: BTreeMap<String, S>,
}

impl<S> Default for ConfFile<S> {
    fn default() -> Self {
        Self {
            path: None,
            sections: BTreeMap::new(),
        }
    }
}

impl<S: Section> ConfFile<S> {
    /// Reads the YAML file at `path`.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Self::parse(&text, path)
    }

    /// Parses the YAML text of `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, String> {
        let sections: BTreeMap<String, S> = if text.trim().is_empty() {
            BTreeMap::new()
        } else {
            // No snippet of the file in the message: it may hold a password.
            let options = serde_saphyr::options! { with_snippet: false };
            serde_saphyr::from_str_with_options(text, options)
                .map_err(|e| format!("{}: {e}", path.display()))?
        };
        Ok(Self {
            path: Some(path.to_path_buf()),
            sections,
        })
    }

    /// The settings for `conf_key` (`None`: `default`): the named section over `default`.
    pub fn settings(&self, conf_key: Option<&str>) -> Result<S, String> {
        let base = self.sections.get("default").cloned().unwrap_or_default();
        match conf_key {
            None => Ok(base),
            Some(key) => match self.sections.get(key) {
                Some(named) => Ok(base.laid_under(named)),
                None => Err(match &self.path {
                    Some(p) => format!(
                        "CONF_KEY {key:?} is not a section of {} (sections: {})",
                        p.display(),
                        self.sections.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                    None => format!(
                        "CONF_KEY {key:?} needs a configuration file: pass {} FILE",
                        S::OPTION
                    ),
                }),
            },
        }
    }

    /// The folder relative paths in the file (certificates) start at.
    pub fn base_dir(&self) -> PathBuf {
        self.path
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }
}
