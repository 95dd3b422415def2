//! A product catalog over SQLite (or PostgreSQL: `DATABASE_URL`), cached with cache-runtime.
//!
//! `catalog demo [--seconds N] [--warmup N] [--clients N]` starts the service in process, loads
//! it without the cache and then with it, and prints one table. `catalog serve [--port P]` only
//! serves.

use std::process::ExitCode;

use catalog::{db, demo, http, repo};
use clap::{Parser, Subcommand};

/// A product catalog service, cached with cache-runtime.
#[derive(Debug, Parser)]
#[command(name = "catalog", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Loads the service without the cache, then with it, and prints one table.
    Demo {
        /// Seconds of each measured phase.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Seconds of load that warm the cache before the cached phase (not measured).
        #[arg(long, default_value_t = 20)]
        warmup: u64,
        /// Concurrent clients.
        #[arg(long, default_value_t = 200)]
        clients: usize,
    },
    /// Serves the catalog over HTTP until interrupted.
    Serve {
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    // Before the subscriber: `--help` and usage errors exit here (code 2 for errors).
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Demo {
            seconds,
            warmup,
            clients,
        } => {
            demo::run(demo::Options {
                seconds,
                warmup,
                clients,
            })
            .await
        }
        Command::Serve { port } => serve(port).await,
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
