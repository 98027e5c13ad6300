//! Supervisor settings from configuration (serde; TOML helpers): restart limits, backoff and
//! strategy, and per-child restart and shutdown, keyed by child id. The tree's shape (which
//! actors) is code; its policies can be configuration.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::backoff::Backoff;
use crate::intensity::Intensity;
use crate::spec::{Restart, Shutdown};
use crate::supervisor::Strategy;

/// Settings for one supervisor.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorConfig {
    /// Restart strategy.
    pub strategy: Option<Strategy>,
    /// Restart intensity.
    pub intensity: Option<Intensity>,
    /// Backoff between restarts.
    pub backoff: Option<Backoff>,
    /// Per-child overrides, by child id.
    #[serde(default)]
    pub children: HashMap<String, ChildConfig>,
    /// Nested supervisors' settings, by child id.
    #[serde(default)]
    pub supervisors: HashMap<String, SupervisorConfig>,
}

/// Per-child overrides.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChildConfig {
    /// Restart type.
    pub restart: Option<Restart>,
    /// Shutdown.
    pub shutdown: Option<Shutdown>,
}

/// A configuration document could not be read.
#[derive(thiserror::Error, Debug)]
pub enum ConfigError {
    /// Not valid TOML, or not the expected shape.
    #[error("invalid supervisor configuration: {0}")]
    Toml(#[from] toml::de::Error),
}

impl SupervisorConfig {
    /// Parses TOML.
    pub fn from_toml(s: &str) -> Result<Self, ConfigError> {
        Ok(toml::from_str(s)?)
    }
}

/// Durations as integer milliseconds in configuration.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().min(u64::MAX as u128) as u64)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
