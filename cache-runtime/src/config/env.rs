//! Loading configuration from `CACHE_*` environment variables.

use std::time::Duration;

use super::{CacheConfigBuilder, ConfigError};
use crate::codec::CodecKind;
use crate::ttl::parse_duration;

/// Every environment variable read by [`CacheConfig::from_env`](super::CacheConfig::from_env),
/// with what it sets. README.md shows the same table.
pub const ENV_VARS: &[(&str, &str)] = &[
    (
        "CACHE_REDIS_URL",
        "Redis URL (`redis://user:pass@host:6379/0`)",
    ),
    ("CACHE_APP_PREFIX", "app prefix of every key (required)"),
    ("CACHE_VERSION", "schema version in keys"),
    ("CACHE_TTL_SHORT", "`short` TTL class (`60s`)"),
    ("CACHE_TTL_MEDIUM", "`medium` TTL class (`15m`)"),
    ("CACHE_TTL_LONG", "`long` TTL class (`24h`)"),
    ("CACHE_JITTER_PERCENT", "TTL jitter, ± percent"),
    ("CACHE_POOL_SIZE", "number of multiplexed connections"),
    (
        "CACHE_OPERATION_TIMEOUT",
        "deadline of one Redis operation (`250ms`)",
    ),
    (
        "CACHE_BREAKER_THRESHOLD",
        "consecutive failures that open the breaker",
    ),
    (
        "CACHE_BREAKER_COOLDOWN",
        "time the breaker stays open (`5s`)",
    ),
    ("CACHE_MAX_VALUE_BYTES", "largest encoded value stored"),
    (
        "CACHE_COMPRESSION_THRESHOLD",
        "compress values above this many bytes, or `off`",
    ),
    ("CACHE_CODEC", "`postcard` or `json`"),
    (
        "CACHE_METRICS_LOG_INTERVAL",
        "hit-ratio log interval (`60s`), or `off`",
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
    mut b: CacheConfigBuilder,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<CacheConfigBuilder, ConfigError> {
    for (var, _) in ENV_VARS {
        let Some(value) = lookup(var) else { continue };
        b = match *var {
            "CACHE_REDIS_URL" => b.redis_url(value),
            "CACHE_APP_PREFIX" => b.app_prefix(value),
            "CACHE_VERSION" => b.version(number(var, &value)?),
            "CACHE_TTL_SHORT" => b.ttl_short(duration(var, &value)?),
            "CACHE_TTL_MEDIUM" => b.ttl_medium(duration(var, &value)?),
            "CACHE_TTL_LONG" => b.ttl_long(duration(var, &value)?),
            "CACHE_JITTER_PERCENT" => b.jitter_percent(number(var, &value)?),
            "CACHE_POOL_SIZE" => b.pool_size(number(var, &value)?),
            "CACHE_OPERATION_TIMEOUT" => b.operation_timeout(duration(var, &value)?),
            "CACHE_BREAKER_THRESHOLD" => b.breaker_threshold(number(var, &value)?),
            "CACHE_BREAKER_COOLDOWN" => b.breaker_cooldown(duration(var, &value)?),
            "CACHE_MAX_VALUE_BYTES" => b.max_value_bytes(number(var, &value)?),
            "CACHE_COMPRESSION_THRESHOLD" => {
                b.compression_threshold(optional(&value, |v| number(var, v))?)
            }
            "CACHE_CODEC" => b.codec(CodecKind::from_name(value.trim()).ok_or_else(|| {
                ConfigError::new(
                    *var,
                    format!("unknown codec `{value}`; use postcard or json"),
                )
            })?),
            "CACHE_METRICS_LOG_INTERVAL" => {
                b.metrics_log_interval(optional(&value, |v| duration(var, v))?)
            }
            "CACHE_LEASE_TTL" => b.lease_ttl(optional(&value, |v| duration(var, v))?),
            _ => b,
        };
    }
    Ok(b)
}
