use super::*;
use std::collections::HashMap;

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn defaults_build_once_the_app_prefix_is_set() {
    let config = CacheConfig::builder()
        .app_prefix("shop")
        .build()
        .expect("valid");
    assert_eq!(config.app_prefix(), "shop");
    assert_eq!(config.version(), DEFAULT_VERSION);
    assert_eq!(config.ttl_classes().short, Duration::from_secs(60));
    assert_eq!(config.ttl_classes().medium, Duration::from_secs(900));
    assert_eq!(config.ttl_classes().long, Duration::from_secs(86_400));
    assert_eq!(config.jitter_percent, 10);
    assert_eq!(config.operation_timeout(), DEFAULT_OPERATION_TIMEOUT);
}

#[test]
fn a_missing_app_prefix_is_named() {
    let err = CacheConfig::builder().build().expect_err("no app prefix");
    assert_eq!(err.field(), "app_prefix");
}

#[test]
fn each_bad_field_is_named_in_the_error() {
    let base = || CacheConfig::builder().app_prefix("shop");
    let cases = [
        (base().app_prefix("Shop!"), "app_prefix"),
        (base().redis_url("http://localhost"), "redis_url"),
        (base().redis_url("not a url"), "redis_url"),
        (base().jitter_percent(51), "jitter_percent"),
        (base().pool_size(0), "pool_size"),
        (base().pool_size(65), "pool_size"),
        (
            base().operation_timeout(Duration::ZERO),
            "operation_timeout",
        ),
        (base().breaker_threshold(0), "breaker_threshold"),
        (base().breaker_cooldown(Duration::ZERO), "breaker_cooldown"),
        (base().max_value_bytes(10), "max_value_bytes"),
        (base().ttl_medium(Duration::ZERO), "ttl_medium"),
        (
            base().metrics_log_interval(Some(Duration::from_millis(10))),
            "metrics_log_interval",
        ),
    ];
    for (builder, field) in cases {
        let err = builder.build().expect_err(field);
        assert_eq!(err.field(), field, "{err}");
    }
}

#[cfg(not(feature = "tls"))]
#[test]
fn tls_urls_without_the_tls_feature_say_which_feature_to_enable() {
    let err = CacheConfig::builder()
        .app_prefix("shop")
        .redis_url("rediss://cache.internal:6380")
        .build()
        .expect_err("no tls feature");
    assert!(err.to_string().contains("`tls` feature"), "{err}");
}

#[test]
fn debug_and_errors_never_print_the_password() {
    let config = CacheConfig::builder()
        .app_prefix("shop")
        .redis_url("redis://app:s3cret@127.0.0.1:6379/0")
        .build()
        .expect("valid");
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    assert!(
        debug.contains("redis://app:***@127.0.0.1:6379/0"),
        "{debug}"
    );
    let builder_debug = format!(
        "{:?}",
        CacheConfig::builder().redis_url("redis://:s3cret@h")
    );
    assert!(!builder_debug.contains("s3cret"));
    let err = CacheConfig::builder()
        .app_prefix("shop")
        .redis_url("http://app:s3cret@host")
        .build()
        .expect_err("bad scheme");
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

#[test]
fn environment_variables_override_defaults() {
    let config = CacheConfig::from_env_with(env(&[
        ("CACHE_REDIS_URL", "redis://10.0.0.1:6380/2"),
        ("CACHE_APP_PREFIX", "shop"),
        ("CACHE_VERSION", "3"),
        ("CACHE_TTL_SHORT", "30s"),
        ("CACHE_TTL_MEDIUM", "10m"),
        ("CACHE_TTL_LONG", "2h"),
        ("CACHE_JITTER_PERCENT", "5"),
        ("CACHE_POOL_SIZE", "4"),
        ("CACHE_OPERATION_TIMEOUT", "100ms"),
        ("CACHE_BREAKER_THRESHOLD", "3"),
        ("CACHE_BREAKER_COOLDOWN", "2s"),
        ("CACHE_MAX_VALUE_BYTES", "4096"),
        ("CACHE_COMPRESSION_THRESHOLD", "off"),
        ("CACHE_CODEC", "postcard"),
        ("CACHE_METRICS_LOG_INTERVAL", "off"),
        ("CACHE_LEASE_TTL", "500ms"),
        ("CACHE_LOCAL_TIER_BYTES", "1048576"),
        ("CACHE_LOCAL_TIER_ALL", "true"),
    ]))
    .and_then(CacheConfigBuilder::build)
    .expect("valid");
    assert_eq!(config.redacted_redis_url(), "redis://10.0.0.1:6380/2");
    assert_eq!(config.version(), 3);
    assert_eq!(config.ttl.short, Duration::from_secs(30));
    assert_eq!(config.ttl.medium, Duration::from_secs(600));
    assert_eq!(config.ttl.long, Duration::from_secs(7200));
    assert_eq!(config.jitter_percent, 5);
    assert_eq!(config.pool_size, 4);
    assert_eq!(config.operation_timeout, Duration::from_millis(100));
    assert_eq!(config.breaker_threshold, 3);
    assert_eq!(config.breaker_cooldown, Duration::from_secs(2));
    assert_eq!(config.max_value_bytes, 4096);
    assert_eq!(config.compression_threshold, None);
    assert_eq!(config.metrics_log_interval, None);
    assert_eq!(config.lease_ttl, Some(Duration::from_millis(500)));
    assert_eq!(config.local_tier_bytes, Some(1 << 20));
    assert!(config.local_tier_for_all);
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let err =
        CacheConfig::from_env_with(env(&[("CACHE_POOL_SIZE", "many")])).expect_err("not a number");
    assert_eq!(err.field(), "CACHE_POOL_SIZE");
    let err = CacheConfig::from_env_with(env(&[("CACHE_TTL_SHORT", "5 minutes")]))
        .expect_err("bad duration");
    assert_eq!(err.field(), "CACHE_TTL_SHORT");
    let err =
        CacheConfig::from_env_with(env(&[("CACHE_CODEC", "bincode")])).expect_err("unknown codec");
    assert_eq!(err.field(), "CACHE_CODEC");
}

#[test]
fn the_readme_documents_every_environment_variable() {
    let readme = include_str!("../../../README.md");
    for var in ENV_VARS {
        let name = var.name;
        assert!(
            readme.contains(&format!("| `{name}` |")),
            "{name} missing from README.md"
        );
    }
}

#[test]
fn cluster_seeds_are_checked_and_redacted_one_by_one() {
    let config = CacheConfig::builder()
        .redis_url("redis://:hunter2@10.0.0.1:7000,10.0.0.2:7001,redis://:hunter2@10.0.0.3:7002")
        .app_prefix("shop")
        .build()
        .expect("valid seeds");
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("10.0.0.2:7001"), "{shown}");
    let bad = CacheConfig::builder()
        .redis_url("redis://10.0.0.1:7000,http://x")
        .app_prefix("shop")
        .build()
        .expect_err("a bad seed");
    assert_eq!(bad.field(), "redis_url");
    let node = CacheConfig::builder()
        .redis_url("redis://10.0.0.1:7000,10.0.0.2:7001")
        .redis_mode(crate::RedisMode::Node)
        .app_prefix("shop")
        .build()
        .expect_err("several seeds in node mode");
    assert_eq!(node.field(), "redis_mode");
    let err = CacheConfig::from_env_with(env(&[
        ("CACHE_APP_PREFIX", "shop"),
        ("CACHE_REDIS_MODE", "sentinel"),
    ]))
    .expect_err("unknown mode");
    assert_eq!(err.field(), "CACHE_REDIS_MODE");
}

#[test]
fn a_unix_socket_password_is_redacted_too() {
    let config = CacheConfig::builder()
        .redis_url("unix:///run/redis.sock?db=2&pass=hunter2")
        .app_prefix("shop")
        .build()
        .expect("valid config");
    let shown = format!("{config:?} {}", config.redacted_redis_url());
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("pass=***"), "{shown}");
    assert!(shown.contains("db=2"), "{shown}");
}

/// Whichever is applied later wins: the environment over code with `with_env` last, code over
/// the environment with setters after `from_env`.
#[test]
fn the_later_of_code_and_environment_wins() {
    let environment = env(&[("CACHE_VERSION", "4"), ("CACHE_APP_PREFIX", "deployed")]);
    let env_last = CacheConfig::builder()
        .app_prefix("shop")
        .version(3)
        .with_env_from(&environment)
        .and_then(CacheConfigBuilder::build)
        .expect("valid");
    assert_eq!((env_last.app_prefix(), env_last.version()), ("deployed", 4));
    let code_last = CacheConfig::from_env_with(&environment)
        .map(|b| b.app_prefix("shop").version(3))
        .and_then(CacheConfigBuilder::build)
        .expect("valid");
    assert_eq!((code_last.app_prefix(), code_last.version()), ("shop", 3));
    // Unset variables leave the code's settings alone.
    let untouched = CacheConfig::builder()
        .app_prefix("shop")
        .version(3)
        .with_env_from(env(&[]))
        .and_then(CacheConfigBuilder::build)
        .expect("valid");
    assert_eq!(untouched.version(), 3);
}

#[test]
fn an_unknown_cache_variable_is_named_with_the_closest_known_one() {
    let found = super::env::unknown([
        "CACHE_VERSON",
        "CACHE_VERSION",
        "CACHE_REDIS_ULR",
        "CACHE_SOMETHING_ELSE_ENTIRELY",
        "PATH",
    ]);
    assert_eq!(
        found,
        [
            ("CACHE_VERSON", Some("CACHE_VERSION")),
            ("CACHE_REDIS_ULR", Some("CACHE_REDIS_URL")),
            ("CACHE_SOMETHING_ELSE_ENTIRELY", None),
        ]
    );
}

#[test]
fn a_codec_this_build_lacks_is_named_with_what_to_do() {
    assert!(super::env::unknown_codec("json").contains("`json` feature"));
    assert!(super::env::unknown_codec("cbor").contains("use postcard or json"));
    let err = CacheConfig::from_env_with(env(&[("CACHE_CODEC", "cbor")])).expect_err("unknown");
    assert!(err.to_string().contains("CACHE_CODEC"), "{err}");
}
