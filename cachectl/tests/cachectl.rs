//! `cachectl` against real redis-server processes, seeded through the library.

use std::process::{Command, Output};
use std::time::Duration;

use cache_runtime::{Cache, CacheConfig, CodecKind, Ttl};
use cache_tests::RedisServer;
use serde_json::Value;

fn cachectl(server: &RedisServer, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cachectl"))
        .args(["--url", &server.url(), "--app", "shop"])
        .args(args)
        .env_remove("CACHE_REDIS_URL")
        .env_remove("CACHE_APP_PREFIX")
        .env_remove("CACHE_VERSION")
        .output()
        .expect("run cachectl")
}

/// `cachectl --json …`, which must succeed, parsed.
fn json(server: &RedisServer, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = cachectl(server, &all);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

fn cache(server: &RedisServer, version: u32) -> Cache {
    let config = CacheConfig::builder()
        .redis_url(server.url())
        .app_prefix("shop")
        .version(version)
        .codec(CodecKind::Json)
        .metrics_log_interval(None)
        .build()
        .expect("config");
    Cache::new(config).expect("cache")
}

/// 30 products and 12 listings (3 categories × 4 pages) under v1, 5 products under v2, and 7
/// keys of another app.
async fn seed(server: &RedisServer) -> (Cache, Cache) {
    let v1 = cache(server, 1);
    let v2 = cache(server, 2);
    let products = v1.entity("product").expect("entity");
    for id in 0..30u32 {
        let ttl = if id % 2 == 0 { Ttl::Short } else { Ttl::Long };
        v1.set(&products.key(&id), &format!("product {id}"), ttl)
            .await
            .expect("set");
    }
    let lists = v1.entity("product_list").expect("entity");
    for category in 0..3u32 {
        for page in 0..4u32 {
            let key = lists.variant_key(&category, &format!("p{page}"));
            v1.set(&key, &vec![category, page], Ttl::Medium)
                .await
                .expect("set");
        }
    }
    let products_v2 = v2.entity("product").expect("entity");
    for id in 0..5u32 {
        v2.set(&products_v2.key(&id), &id, Ttl::Medium)
            .await
            .expect("set");
    }
    let mut other = server.connection().expect("connect");
    for i in 0..7 {
        let () = redis::cmd("SET")
            .arg(format!("blog:v1:post:{i}"))
            .arg("x")
            .query(&mut other)
            .expect("set");
    }
    (v1, v2)
}

fn namespace<'a>(out: &'a Value, version: u64, entity: &str) -> &'a Value {
    out["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .find(|ns| ns["version"] == version && ns["entity"] == entity && ns["bookkeeping"] == false)
        .unwrap_or_else(|| panic!("no namespace v{version}:{entity} in {out:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_counted_per_namespace_and_ttl_buckets_add_up() {
    let server = RedisServer::start();
    let _caches = seed(&server).await;
    let keys = json(&server, &["keys", "--sample", "5"]);
    assert_eq!(namespace(&keys, 1, "product")["keys"], 30);
    assert_eq!(namespace(&keys, 1, "product_list")["keys"], 12);
    assert_eq!(namespace(&keys, 2, "product")["keys"], 5);
    assert_eq!(namespace(&keys, 1, "product")["memory_is_sampled"], true);
    assert!(namespace(&keys, 1, "product")["bytes"].as_u64() > Some(0));
    assert_eq!(keys["complete"], true);
    let other_app = keys["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .any(|ns| ns["app"] == "blog");
    assert!(!other_app, "only the app's keys");

    let ttl = json(&server, &["ttl"]);
    for (version, entity, count) in [
        (1, "product", 30),
        (1, "product_list", 12),
        (2, "product", 5),
    ] {
        let ns = namespace(&ttl, version, entity);
        let buckets = ns["buckets"].as_array().expect("buckets");
        let bounds: Vec<_> = buckets.iter().map(|b| b["max_seconds"].as_u64()).collect();
        assert_eq!(
            bounds,
            [
                Some(10),
                Some(60),
                Some(600),
                Some(3_600),
                Some(21_600),
                Some(86_400),
                None
            ],
            "shortest first, and one past the last bound"
        );
        let in_buckets: u64 = buckets
            .iter()
            .map(|b| b["keys"].as_u64().expect("count"))
            .sum();
        let total = in_buckets
            + ns["no_ttl"].as_u64().expect("no_ttl")
            + ns["gone"].as_u64().expect("gone");
        assert_eq!(
            total, count,
            "{entity} v{version}: buckets add up to the keys"
        );
        assert_eq!(ns["no_ttl"], 0, "every value has a TTL");
    }
    // Short (60 s ± 10 %) and long (24 h ± 10 %) products fall in different buckets.
    let products = namespace(&ttl, 1, "product");
    let bucket = |label: &str| {
        products["buckets"]
            .as_array()
            .expect("buckets")
            .iter()
            .find(|b| b["label"] == label)
            .and_then(|b| b["keys"].as_u64())
            .unwrap_or_else(|| panic!("no bucket {label}"))
    };
    assert_eq!(bucket("≤1m00s") + bucket("≤10m00s"), 15);
    assert_eq!(bucket("≤1d00h") + bucket(">1d00h"), 15);

    let limited = json(&server, &["keys", "--limit", "10"]);
    assert_eq!(
        (limited["scanned"].as_u64(), &limited["complete"]),
        (Some(10), &Value::Bool(false))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_decodes_a_stored_value_and_says_whether_it_would_be_served() {
    let server = RedisServer::start();
    let (v1, _v2) = seed(&server).await;
    let products = v1.entity("product").expect("entity");
    // A read sets the marks the value is checked against, as in a running service.
    assert_eq!(
        v1.get::<String>(&products.key(&7u32)).await.expect("get"),
        Some("product 7".into())
    );
    let report = json(
        &server,
        &[
            "inspect",
            "--entity",
            "product",
            "--id",
            "7",
            "--version",
            "1",
        ],
    );
    assert_eq!(report["key"], "shop:v1:product:7");
    assert_eq!(report["value"], "product 7");
    assert_eq!(report["validity"], "valid", "{report:#}");
    assert_eq!(report["header"]["codec"], 2);
    assert!(report["ttl_ms"].as_u64() > Some(0));

    let list = json(&server, &["inspect", "shop:v1:product_list:2:p3"]);
    assert_eq!(list["value"], serde_json::json!([2, 3]));

    v1.invalidate_entity(&products).await.expect("invalidate");
    let report = json(&server, &["inspect", "shop:v1:product:7"]);
    assert_eq!(report["exists"], true, "marks invalidate without deleting");
    assert_eq!(report["validity"], "invalidated", "{report:#}");

    let missing = json(&server, &["inspect", "shop:v1:product:999"]);
    assert_eq!(missing["exists"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_changes_nothing() {
    let server = RedisServer::start();
    let _caches = seed(&server).await;
    let before = server.scan("*");
    let published = server.command_calls("publish");
    for args in [
        vec![
            "invalidate",
            "--entity",
            "product",
            "--version",
            "1",
            "--dry-run",
        ],
        vec![
            "invalidate",
            "--entity",
            "product",
            "--version",
            "1",
            "--id",
            "3",
            "--dry-run",
        ],
        vec![
            "invalidate",
            "--entity",
            "product",
            "--version",
            "1",
            "--pattern",
            "1*",
            "--dry-run",
        ],
        vec!["invalidate", "--tag", "category:1", "--dry-run"],
    ] {
        let plan = json(&server, &args);
        assert_eq!(plan["dry_run"], true);
    }
    let pattern = json(
        &server,
        &[
            "invalidate",
            "--entity",
            "product",
            "--version",
            "1",
            "--pattern",
            "1*",
            "--dry-run",
        ],
    );
    // 1 and 10..=19.
    assert_eq!(pattern["plan"]["matching_keys"], 11);
    assert_eq!(
        server.scan("*"),
        before,
        "no key added, changed away or removed"
    );
    assert_eq!(
        server.command_calls("publish"),
        published,
        "no instance was told anything"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_remove_exactly_their_keys_and_other_instances_see_them() {
    let server = RedisServer::start();
    let (v1, _v2) = seed(&server).await;
    let products = v1.entity("product").expect("entity");
    // Another instance with values in its local tier.
    let other = Cache::new(
        CacheConfig::builder()
            .redis_url(server.url())
            .app_prefix("shop")
            .codec(CodecKind::Json)
            .metrics_log_interval(None)
            .local_tier_for_all(true)
            .build()
            .expect("config"),
    )
    .expect("cache");
    while !other.invalidation_bus_connected() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let other_lists = other.entity("product_list").expect("entity");
    let read = |category: u32| {
        let (other, lists) = (other.clone(), other_lists.clone());
        async move {
            other
                .get_or_set(&lists.variant_key(&category, "p0"), Ttl::Medium, || async {
                    Ok::<_, std::io::Error>(vec![999u32])
                })
                .await
                .expect("read")
        }
    };
    assert_eq!(read(1).await, vec![1, 0]);

    let out = cachectl(
        &server,
        &["invalidate", "--entity", "product_list", "--id", "1"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The id's variants token went: its pages are invalid (left to their TTL), the others not.
    for (category, expected) in [(0, "valid"), (1, "invalidated"), (2, "valid")] {
        for page in 0..4 {
            let key = format!("shop:v1:product_list:{category}:p{page}");
            let report = json(&server, &["inspect", &key]);
            assert_eq!(report["validity"], expected, "{key}: {report:#}");
        }
    }
    assert_eq!(
        server.cached_keys("shop:v1:product:*").len(),
        30,
        "another entity untouched"
    );
    assert_eq!(
        read(1).await,
        vec![999],
        "the other instance's local copy went too"
    );
    assert_eq!(read(2).await, vec![2, 0]);

    let out = cachectl(
        &server,
        &[
            "invalidate",
            "--entity",
            "product",
            "--version",
            "1",
            "--pattern",
            "2?",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.cached_keys("shop:v1:product:2?").len(), 0);
    assert_eq!(server.cached_keys("shop:v1:product:*").len(), 20);

    let out = cachectl(
        &server,
        &["invalidate", "--entity", "product", "--version", "1"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        v1.get::<String>(&products.key(&3u32)).await.expect("get"),
        None,
        "an entity invalidation turns every value into a miss"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_removes_only_the_old_version() {
    let server = RedisServer::start();
    let (v1, _v2) = seed(&server).await;
    // A deleted ordered value leaves a revision record, in braces like the variants tokens.
    let key = v1.entity("product").expect("entity").key(&100u32);
    assert!(
        v1.set_ordered(&key, &"p", Ttl::Long, 7)
            .await
            .expect("ordered")
    );
    assert!(v1.delete(&key).await.expect("delete"));
    let old_keys = server.scan("*shop:v1:*");
    assert!(
        old_keys.iter().any(|k| k.ends_with(":%variants"))
            && old_keys.iter().any(|k| k.ends_with(":%revision")),
        "{old_keys:?}"
    );
    // A dry run counts them all and changes nothing.
    let (before, published) = (server.scan("*"), server.command_calls("publish"));
    let plan = json(&server, &["purge", "--version", "2", "--dry-run"]);
    assert_eq!(plan["dry_run"], true);
    assert_eq!(
        plan["removed"].as_u64(),
        Some(old_keys.len() as u64),
        "{plan:#}"
    );
    assert_eq!(server.scan("*"), before, "nothing deleted");
    assert_eq!(server.command_calls("publish"), published, "nobody told");

    let report = json(&server, &["purge", "--version", "2"]);
    assert_eq!(report["done"], true);
    // The 42 values, v1's own marks, its variants tokens and revision records.
    assert_eq!(
        report["removed"].as_u64(),
        Some(old_keys.len() as u64),
        "{report:#}"
    );
    assert!(
        server.scan("*shop:v1:*").is_empty(),
        "{:?}",
        server.scan("*shop:v1:*")
    );
    assert_eq!(server.cached_keys("shop:v2:*").len(), 5);
    assert_eq!(
        server.scan("blog:*").len(),
        7,
        "another app's keys are untouched"
    );
}

#[test]
fn an_unreachable_redis_is_exit_2_and_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_cachectl"))
        .args([
            "--url",
            "redis://ops:s3cret@127.0.0.1:1",
            "--app",
            "shop",
            "keys",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("cachectl: cannot connect"), "{stderr}");
    assert!(
        !stderr.contains("s3cret"),
        "the password is never printed: {stderr}"
    );
    assert!(out.stdout.is_empty());

    let usage = Command::new(env!("CARGO_BIN_EXE_cachectl"))
        .args(["inspect"])
        .output()
        .expect("run");
    assert_eq!(usage.status.code(), Some(2), "a usage error");
}

#[test]
fn health_is_unhealthy_on_a_server_that_does_not_suit_a_cache() {
    let unbounded = RedisServer::start();
    let out = cachectl(&unbounded, &["--json", "health"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    assert_eq!(report["healthy"], false);
    assert_eq!(report["bus_channel"], "shop:%invalidations");

    let suited =
        RedisServer::start_with_args(&["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lfu"]);
    let out = cachectl(&suited, &["--json", "health"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["maxmemory_policy"], "allkeys-lfu");
    assert_eq!(report["maxmemory"], 64 * 1024 * 1024);
    assert_eq!(
        report["hit_ratio_scope"], "server",
        "--app does not narrow it"
    );
    let human = cachectl(&suited, &["health"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("allkeys-lfu") && text.trim_end().ends_with("healthy"),
        "{text}"
    );
    assert!(text.contains("the whole server's"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_keeps_the_versions_it_is_told_to() {
    let server = RedisServer::start();
    let _caches = seed(&server).await;
    let v3 = cache(&server, 3);
    let key = v3.entity("product").expect("entity").key(&1u32);
    v3.set(&key, &1u32, Ttl::Medium).await.expect("set");
    let report = json(&server, &["purge", "--version", "3", "--keep-version", "1"]);
    assert_eq!(report["done"], true);
    assert_eq!(server.cached_keys("shop:v1:*").len(), 42, "kept");
    assert!(server.scan("shop:v2:*").is_empty(), "purged");
    assert_eq!(server.cached_keys("shop:v3:*").len(), 1);
}

/// On a Redis Cluster, `keys` and `ttl` scan every master and `health` reports each master
/// with the cluster's own findings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_ttl_and_health_cover_every_master_of_a_cluster() {
    let cluster = cache_tests::RedisCluster::start_with(&[
        "--cluster-require-full-coverage",
        "no",
        "--maxmemory",
        "64mb",
        "--maxmemory-policy",
        "allkeys-lfu",
    ]);
    let config = CacheConfig::builder()
        .redis_url(cluster.url())
        .app_prefix("shop")
        .metrics_log_interval(None)
        .build()
        .expect("config");
    let cache = Cache::new(config).expect("cache");
    let products = cache.entity("product").expect("entity");
    let started = std::time::Instant::now();
    while !cache.invalidation_bus_connected() {
        assert!(started.elapsed() < Duration::from_secs(5), "subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for id in 0..300u32 {
        cache
            .set(&products.key(&id), &id, Ttl::Long)
            .await
            .expect("set");
    }
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cachectl"))
            .args(["--url", &cluster.url(), "--app", "shop", "--json"])
            .args(args)
            .env_remove("CACHE_REDIS_URL")
            .env_remove("CACHE_APP_PREFIX")
            .output()
            .expect("run cachectl");
        (
            out.status.code(),
            serde_json::from_slice::<Value>(&out.stdout),
        )
    };
    let (code, keys) = run(&["keys"]);
    let keys = keys.expect("keys JSON");
    assert_eq!(code, Some(0));
    let values: u64 = keys["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .filter(|ns| ns["bookkeeping"] == false)
        .map(|ns| ns["keys"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(values, 300, "{keys:#}");
    assert_eq!(keys["complete"], true);
    let (code, ttl) = run(&["ttl"]);
    assert_eq!(code, Some(0), "{ttl:?}");
    let (code, health) = run(&["health"]);
    let health = health.expect("health JSON");
    assert_eq!(code, Some(0), "{health:#}");
    assert_eq!(health["cluster"], true);
    assert_eq!(health["uncovered_slots"], 0);
    let nodes = health["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3);
    assert!(nodes.iter().all(|n| n["replicas"] == 1), "{health:#}");
    assert!(health["bus_subscribers"].as_u64().unwrap_or(0) >= 1);
    // Single keys wherever they live: the key, then its marks on other masters.
    for id in ["7", "123", "250"] {
        let (code, report) = run(&["inspect", "--entity", "product", "--id", id]);
        let report = report.expect("inspect JSON");
        assert_eq!(code, Some(0), "{report:#}");
        assert_eq!(report["exists"], true, "{report:#}");
        assert_eq!(report["validity"], "valid", "{report:#}");
        let (code, plan) = run(&["invalidate", "--entity", "product", "--id", id, "--dry-run"]);
        assert_eq!(code, Some(0));
        assert_eq!(plan.expect("plan")["plan"]["key_exists"], true);
    }
    let (_, plan) = run(&[
        "invalidate",
        "--entity",
        "product",
        "--pattern",
        "*",
        "--dry-run",
    ]);
    assert_eq!(plan.expect("plan")["plan"]["matching_keys"], 300);
    assert_eq!(cluster.error_count("CROSSSLOT"), 0);
}

/// Without `--version`, the one version the entity has keys at; several, or a version or an
/// entity with no keys, are refused (exit 2, one line naming what is live) and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_version_is_inferred_from_what_is_live_or_the_call_refused() {
    let server = RedisServer::start();
    let (_v1, v2) = seed(&server).await;
    // product_list lives at v1 only: inferred, and said on stderr.
    let out = cachectl(
        &server,
        &["invalidate", "--entity", "product_list", "--id", "2"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("acting on v1"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(v1)"));
    let published = server.command_calls("publish");
    let before = server.scan("*");
    for (args, says) in [
        (
            vec!["invalidate", "--entity", "product", "--id", "3"],
            "has keys at v1, v2: give --version",
        ),
        (
            vec!["invalidate", "--entity", "product", "--version", "3"],
            "no keys at v3; it has keys at v1, v2",
        ),
        (
            vec!["invalidate", "--entity", "prodcut"],
            "entity `prodcut` has no keys",
        ),
        (
            vec!["inspect", "--entity", "product", "--id", "3"],
            "give --version",
        ),
        (
            vec!["invalidate", "--entity", "product", "--dry-run"],
            "give --version",
        ),
    ] {
        let out = cachectl(&server, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    assert_eq!(
        server.command_calls("publish"),
        published,
        "nobody was told"
    );
    assert_eq!(server.scan("*"), before, "nothing changed");
    // Given the version that is live, the live value goes.
    let products = v2.entity("product").expect("entity");
    let out = cachectl(
        &server,
        &[
            "invalidate",
            "--entity",
            "product",
            "--id",
            "3",
            "--version",
            "2",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        v2.get::<u32>(&products.key(&3u32)).await.expect("get"),
        None
    );
    // A dry run on an id cached only with variants says so.
    let plan = json(
        &server,
        &[
            "invalidate",
            "--entity",
            "product_list",
            "--id",
            "1",
            "--dry-run",
        ],
    );
    assert_eq!(plan["plan"]["key_exists"], false);
    assert_eq!(plan["plan"]["has_variants"], true);
    assert_eq!(plan["plan"]["version"], 1);
}

/// A reader that goes away (`cachectl --json keys | head -1`) ends cachectl quietly with exit
/// code 0, not a panic: here the pipe is closed before cachectl writes anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_the_output_quietly() {
    let server = RedisServer::start();
    let _caches = seed(&server).await;
    for args in [
        vec!["--json", "keys"],
        vec!["ttl"],
        vec!["inspect", "shop:v1:product:1"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cachectl"))
            .args(["--url", &server.url(), "--app", "shop"])
            .args(&args)
            .env_remove("CACHE_REDIS_URL")
            .env_remove("CACHE_APP_PREFIX")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run cachectl");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// Against a TLS-only server that requires client certificates: with the CA and the client's
/// certificate cachectl reads and invalidates; without the certificate it fails in one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cachectl_speaks_tls_with_a_private_ca_and_a_client_certificate() {
    let certs = cache_tests::TlsCerts::generate();
    let server = cache_tests::TlsRedisServer::start(&certs, true);
    let path = |file: &str| certs.path(file).to_string_lossy().into_owned();
    let cache = Cache::new(
        CacheConfig::builder()
            .redis_url(server.url())
            .app_prefix("shop")
            .codec(CodecKind::Json)
            .metrics_log_interval(None)
            .tls_ca_file(certs.path("ca.crt"))
            .tls_client_cert_files(certs.path("client.crt"), certs.path("client.key"))
            .build()
            .expect("config"),
    )
    .expect("cache");
    let key = cache.entity("product").expect("entity").key(&1u32);
    cache.set(&key, &"lamp", Ttl::Medium).await.expect("set");
    let run = |args: &[&str], with_identity: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cachectl"));
        command
            .args([
                "--url",
                &server.url(),
                "--app",
                "shop",
                "--tls-ca",
                &path("ca.crt"),
            ])
            .env_remove("CACHE_REDIS_URL")
            .env_remove("CACHE_APP_PREFIX")
            .env_remove("CACHE_VERSION")
            .env_remove("CACHE_TLS_CERT_FILE")
            .env_remove("CACHE_TLS_KEY_FILE");
        if with_identity {
            command.args([
                "--tls-cert",
                &path("client.crt"),
                "--tls-key",
                &path("client.key"),
            ]);
        }
        command.args(args).output().expect("run cachectl")
    };
    let report = run(&["--json", "inspect", "shop:v1:product:1"], true);
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let report: Value = serde_json::from_slice(&report.stdout).expect("JSON");
    assert_eq!(report["value"], "lamp", "{report:#}");
    let out = run(&["invalidate", "--entity", "product", "--id", "1"], true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(cache.get::<String>(&key).await.expect("get"), None);

    let refused = run(&["keys"], false);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
