//! Loading configuration from `CACHE_*` environment variables.
//!
//! [`ENV_VARS`] is the only list: each entry carries the setter it applies, so a variable cannot
//! be documented without being read, or read without being documented.

use std::fmt;
use std::time::Duration;

use super::{CacheConfigBuilder, ConfigError};
use crate::codec::CodecKind;
use crate::ttl::parse_duration;

type Apply = fn(CacheConfigBuilder, &'static str, &str) -> Result<CacheConfigBuilder, ConfigError>;

/// One environment variable read by [`CacheConfig::from_env`](super::CacheConfig::from_env).
pub struct EnvVar {
    /// The variable's name.
    pub name: &'static str,
    /// What it sets.
    pub meaning: &'static str,
    apply: Apply,
}

impl fmt::Debug for EnvVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvVar")
            .field("name", &self.name)
            .field("meaning", &self.meaning)
            .finish_non_exhaustive()
    }
}

const fn var(name: &'static str, meaning: &'static str, apply: Apply) -> EnvVar {
    EnvVar {
        name,
        meaning,
        apply,
    }
}

/// Every environment variable [`CacheConfig::from_env`](super::CacheConfig::from_env) reads.
/// README.md shows the same table (a test checks it).
pub static ENV_VARS: &[EnvVar] = &[
    var(
        "CACHE_REDIS_URL",
        "Redis URL (`redis://user:pass@host:6379/0`)",
        |b, _, v| Ok(b.redis_url(v)),
    ),
    var(
        "CACHE_REDIS_MODE",
        "`auto` (default), `node` or `cluster`: what the URL names",
        |b, n, v| {
            v.parse()
                .map(|mode| b.redis_mode(mode))
                .map_err(|e: String| ConfigError::new(n, e))
        },
    ),
    var(
        "CACHE_APP_PREFIX",
        "app prefix of every key (required)",
        |b, _, v| Ok(b.app_prefix(v)),
    ),
    var("CACHE_VERSION", "schema version in keys", |b, n, v| {
        Ok(b.version(number(n, v)?))
    }),
    var("CACHE_TTL_SHORT", "`short` TTL class (`60s`)", |b, n, v| {
        Ok(b.ttl_short(duration(n, v)?))
    }),
    var(
        "CACHE_TTL_MEDIUM",
        "`medium` TTL class (`15m`)",
        |b, n, v| Ok(b.ttl_medium(duration(n, v)?)),
    ),
    var("CACHE_TTL_LONG", "`long` TTL class (`24h`)", |b, n, v| {
        Ok(b.ttl_long(duration(n, v)?))
    }),
    var(
        "CACHE_JITTER_PERCENT",
        "TTL jitter, ± percent",
        |b, n, v| Ok(b.jitter_percent(number(n, v)?)),
    ),
    var(
        "CACHE_POOL_SIZE",
        "number of multiplexed connections",
        |b, n, v| Ok(b.pool_size(number(n, v)?)),
    ),
    var(
        "CACHE_OPERATION_TIMEOUT",
        "deadline of one Redis operation (`250ms`)",
        |b, n, v| Ok(b.operation_timeout(duration(n, v)?)),
    ),
    var(
        "CACHE_BREAKER_THRESHOLD",
        "consecutive failures that open the breaker",
        |b, n, v| Ok(b.breaker_threshold(number(n, v)?)),
    ),
    var(
        "CACHE_BREAKER_COOLDOWN",
        "time the breaker stays open (`5s`)",
        |b, n, v| Ok(b.breaker_cooldown(duration(n, v)?)),
    ),
    var(
        "CACHE_MAX_VALUE_BYTES",
        "largest encoded value stored",
        |b, n, v| Ok(b.max_value_bytes(number(n, v)?)),
    ),
    var(
        "CACHE_COMPRESSION_THRESHOLD",
        "compress values above this many bytes, or `off`",
        |b, n, v| Ok(b.compression_threshold(optional(v, |v| number(n, v))?)),
    ),
    var("CACHE_CODEC", "`postcard` or `json`", |b, n, v| {
        let codec = CodecKind::from_name(v.trim()).ok_or_else(|| {
            ConfigError::new(n, format!("unknown codec `{v}`; use postcard or json"))
        })?;
        Ok(b.codec(codec))
    }),
    var(
        "CACHE_METRICS_LOG_INTERVAL",
        "hit-ratio log interval (`60s`), or `off`",
        |b, n, v| Ok(b.metrics_log_interval(optional(v, |v| duration(n, v))?)),
    ),
    var(
        "CACHE_LEASE_TTL",
        "loader lease across processes (`2s`), or `off`",
        |b, n, v| Ok(b.lease_ttl(optional(v, |v| duration(n, v))?)),
    ),
    var(
        "CACHE_LOCAL_TIER_BYTES",
        "bound of the in-process tier, or `off`",
        |b, n, v| Ok(b.local_tier_bytes(optional(v, |v| number(n, v))?)),
    ),
    var(
        "CACHE_LOCAL_TIER_ALL",
        "`true`: every entity uses the in-process tier",
        |b, n, v| Ok(b.local_tier_for_all(boolean(n, v)?)),
    ),
];

fn number<T: std::str::FromStr>(var: &str, value: &str) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| ConfigError::new(var, format!("`{value}` is not a valid number")))
}

fn duration(var: &str, value: &str) -> Result<Duration, ConfigError> {
    parse_duration(value).map_err(|e| ConfigError::new(var, e.to_string()))
}

fn boolean(var: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ConfigError::new(
            var,
            format!("`{value}` is not true or false"),
        )),
    }
}

fn optional<T>(
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    if value.trim() == "off" {
        Ok(None)
    } else {
        parse(value).map(Some)
    }
}

/// Applies every variable that `lookup` finds to `builder`.
pub(super) fn apply(
    mut builder: CacheConfigBuilder,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<CacheConfigBuilder, ConfigError> {
    for var in ENV_VARS {
        if let Some(value) = lookup(var.name) {
            builder = (var.apply)(builder, var.name, &value)?;
        }
    }
    Ok(builder)
}
