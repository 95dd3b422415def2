//! TLS against a redis-server that speaks nothing else, with certificates made by the test: a
//! private CA, mutual TLS, and a server the configured CA did not sign (refused with a clear
//! error, never a panic: the source answers meanwhile).

use cache_runtime::{Cache, CacheConfig, CacheError, Ttl};
use cache_tests::{TlsCerts, TlsRedisServer};

use crate::CountingLoader;

fn tls_config(server: &TlsRedisServer) -> cache_runtime::CacheConfigBuilder {
    CacheConfig::builder()
        .redis_url(server.url())
        .app_prefix("tls")
        .metrics_log_interval(None)
}

/// Two reads of one key: a miss that stores, then a hit; answers the loader's calls.
async fn miss_then_hit(cache: &Cache) -> usize {
    let key = cache.entity("product").expect("entity").key(&1u32);
    let loader = CountingLoader::default();
    for _ in 0..2 {
        let value = cache
            .get_or_set(&key, Ttl::Medium, || loader.load(1u32))
            .await;
        assert_eq!(value.expect("the source answers"), 1);
    }
    loader.calls()
}

#[tokio::test]
async fn a_private_ca_verifies_the_server() {
    let certs = TlsCerts::generate();
    let server = TlsRedisServer::start(&certs, false);
    let config = tls_config(&server).tls_ca_file(certs.path("ca.crt"));
    let cache = Cache::new(config.build().expect("config")).expect("cache");
    assert_eq!(
        miss_then_hit(&cache).await,
        1,
        "the second read was a Redis hit"
    );
    let key = cache.entity("product").expect("entity").key(&2u32);
    cache
        .set(&key, &"over TLS", Ttl::Medium)
        .await
        .expect("set");
    assert_eq!(
        cache.get::<String>(&key).await.expect("get").as_deref(),
        Some("over TLS")
    );
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate() {
    let certs = TlsCerts::generate();
    let server = TlsRedisServer::start(&certs, true);
    let with_identity = tls_config(&server)
        .tls_ca_file(certs.path("ca.crt"))
        .tls_client_cert_files(certs.path("client.crt"), certs.path("client.key"));
    let cache = Cache::new(with_identity.build().expect("config")).expect("cache");
    assert_eq!(miss_then_hit(&cache).await, 1);

    // Without one the server refuses every connection: the source answers, nothing panics.
    let without = tls_config(&server).tls_ca_file(certs.path("ca.crt"));
    let refused = Cache::new(without.build().expect("config")).expect("cache");
    assert_eq!(miss_then_hit(&refused).await, 2, "nothing could be cached");
    let key = refused.entity("product").expect("entity").key(&1u32);
    assert!(refused.get::<u32>(&key).await.is_err());
}

#[tokio::test]
async fn a_server_another_ca_signed_is_refused_with_a_clear_error() {
    let certs = TlsCerts::generate();
    let server = TlsRedisServer::start(&certs, false);
    let config = tls_config(&server).tls_ca_file(certs.path("other-ca.crt"));
    let cache = Cache::new(config.build().expect("config")).expect("cache");
    let key = cache.entity("product").expect("entity").key(&1u32);
    let error = cache.get::<u32>(&key).await.expect_err("not trusted");
    let text = error.to_string().to_lowercase();
    assert!(
        matches!(error, CacheError::Redis(_)) && text.contains("certificate"),
        "{error:?}"
    );
    assert_eq!(
        miss_then_hit(&cache).await,
        2,
        "the source answers meanwhile"
    );
}

#[test]
fn tls_settings_are_checked_when_the_configuration_is_built() {
    let certs = TlsCerts::generate();
    let plain = CacheConfig::builder()
        .app_prefix("tls")
        .redis_url("redis://127.0.0.1:6379")
        .tls_ca_file(certs.path("ca.crt"))
        .build()
        .expect_err("certificates without rediss://");
    assert!(plain.to_string().contains("rediss://"), "{plain}");
    let missing = CacheConfig::builder()
        .app_prefix("tls")
        .redis_url("rediss://127.0.0.1:6379")
        .tls_ca_file(certs.path("no-such.crt"))
        .build()
        .expect_err("missing file");
    assert!(missing.to_string().contains("no-such.crt"), "{missing}");
    let half = CacheConfig::from_env_with(|name| match name {
        "CACHE_APP_PREFIX" => Some("tls".into()),
        "CACHE_REDIS_URL" => Some("rediss://127.0.0.1:6379".into()),
        "CACHE_TLS_CERT_FILE" => Some(certs.path("client.crt").to_string_lossy().into()),
        _ => None,
    })
    .and_then(cache_runtime::CacheConfigBuilder::build)
    .expect_err("a certificate without its key");
    assert!(half.to_string().contains("key"), "{half}");
}
