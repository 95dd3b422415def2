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
        let codec =
            CodecKind::from_name(v.trim()).ok_or_else(|| ConfigError::new(n, unknown_codec(v)))?;
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
        "CACHE_TLS_CA_FILE",
        "PEM file of the CA that signed the server's certificate (`rediss://`)",
        |b, _, v| Ok(b.tls_ca_file(v.trim())),
    ),
    var(
        "CACHE_TLS_CERT_FILE",
        "PEM file of this client's certificate, for mutual TLS (with the key)",
        |b, _, v| Ok(b.tls_cert_file(v.trim())),
    ),
    var(
        "CACHE_TLS_KEY_FILE",
        "PEM file of this client's private key, for mutual TLS",
        |b, _, v| Ok(b.tls_key_file(v.trim())),
    ),
    var(
        "CACHE_DISABLED",
        "`true`: caching off, every read runs its loader",
        |b, n, v| Ok(b.disabled(boolean(n, v)?)),
    ),
    var(
        "CACHE_LOCAL_TIER_ALL",
        "`true`: every entity uses the in-process tier",
        |b, n, v| Ok(b.local_tier_for_all(boolean(n, v)?)),
    ),
];

/// Why `value` names no codec of this build.
pub(super) fn unknown_codec(value: &str) -> String {
    match value.trim().eq_ignore_ascii_case("json") {
        true => {
            "the `json` codec needs the `json` feature of cache-runtime (`features = [\"json\"]`)"
                .to_owned()
        }
        false => format!("unknown codec `{value}`; use postcard or json"),
    }
}

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

/// `CACHE_*` names among `names` that no setting reads, each with the known name closest to
/// it (a misspelt `CACHE_VERSON` would otherwise be ignored without a word).
pub(super) fn unknown<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Vec<(&'a str, Option<&'static str>)> {
    names
        .into_iter()
        .filter(|name| name.starts_with("CACHE_"))
        .filter(|name| {
            ENV_VARS.iter().all(|var| var.name != *name) && !OTHER_READERS.contains(name)
        })
        .map(|name| {
            let closest = ENV_VARS
                .iter()
                .map(|var| (edit_distance(name, var.name), var.name))
                .min()
                .filter(|(distance, _)| *distance <= 3)
                .map(|(_, known)| known);
            (name, closest)
        })
        .collect()
}

/// `CACHE_*` variables read by this project's other tools rather than by the configuration.
const OTHER_READERS: &[&str] = &[];

/// Levenshtein distance, for suggestions between short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// Warns once per `CACHE_*` variable of the process environment that no setting reads.
pub(super) fn warn_unknown() {
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .collect();
    for (name, closest) in unknown(names.iter().map(String::as_str)) {
        match closest {
            Some(known) => tracing::warn!(
                variable = name,
                "unknown cache setting in the environment, ignored: did you mean {known}?"
            ),
            None => tracing::warn!(
                variable = name,
                "unknown cache setting in the environment, ignored (CacheConfig::from_env reads the ENV_VARS list)"
            ),
        }
    }
}
