//! A product catalog over SQLite (or PostgreSQL: `DATABASE_URL`), cached with cache-runtime.
//!
//! `catalog demo [--seconds N] [--warmup N] [--clients N]` starts the service in process, loads
//! it without the cache and then with it, and prints one table. `catalog serve [--port P]` only
//! serves.

use std::process::ExitCode;

use catalog::{db, demo, http, repo};

fn usage() -> ExitCode {
    eprintln!(
        "usage: catalog demo [--seconds N] [--warmup N] [--clients N] | catalog serve [--port P]"
    );
    ExitCode::from(2)
}

fn flag(args: &[String], name: &str, default: u64) -> Result<u64, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(at) => args
            .get(at + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name} takes a number")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => match (
            flag(&args, "--seconds", 10),
            flag(&args, "--warmup", 20),
            flag(&args, "--clients", 200),
        ) {
            (Ok(seconds), Ok(warmup), Ok(clients)) => {
                demo::run(demo::Options {
                    seconds,
                    warmup,
                    clients: usize::try_from(clients).unwrap_or(200),
                })
                .await
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Err(e),
        },
        Some("serve") => match flag(&args, "--port", 8080) {
            Ok(port) => serve(u16::try_from(port).unwrap_or(8080)).await,
            Err(e) => Err(e),
        },
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("catalog: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Serves on `port` until interrupted, with the cache when Redis answers.
async fn serve(port: u16) -> Result<(), String> {
    let url =
        std::env::var("CACHE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let path = std::env::temp_dir().join("catalog.db");
    let (db, described) = db::Db::from_env(&path, 4).await.map_err(|e| e.0)?;
    println!("{described}");
    let prometheus = http::install_prometheus();
    let cache = cache_runtime::Cache::new(
        cache_runtime::CacheConfig::builder()
            .redis_url(url)
            .app_prefix("catalog")
            .build()
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    // The database was just seeded: nothing cached by an earlier run may be served.
    if let Err(error) = cache.invalidate_all().await {
        eprintln!("catalog: cannot reset the cache ({error}); serving anyway");
    }
    cache_runtime::install(cache.clone()).map_err(|e| e.to_string())?;
    let app = http::App {
        catalog: repo::Catalog { db },
        cache: Some(cache),
        bypass: std::sync::Arc::default(),
        limiter: None,
        prometheus,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot listen on {port}: {e}"))?;
    println!("catalog at http://127.0.0.1:{port}");
    axum::serve(listener, http::router(app))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())
}
