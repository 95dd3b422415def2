//! `cachectl`: look at a cache's Redis and act on it, without writing code.
//!
//! Human tables by default, `--json` for machines. Exit codes: 0 ok, 1 unhealthy (`health`),
//! 2 a usage or connection error, reported in one line. Credentials in `--url` are never
//! printed. Everything that reads uses `cache_runtime::inspect`; invalidations and purges go
//! through `cache_runtime::Cache`, so they publish the same events as the library.

mod format;
mod health;
mod inspect;
mod keys;
mod output;
mod routed;
mod versions;
mod write;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Operations for a cache-runtime cache in Redis.
#[derive(Debug, Parser)]
#[command(name = "cachectl", version, about)]
struct Cli {
    /// Redis URL (also CACHE_REDIS_URL), or a cluster's comma-separated seeds; credentials in
    /// it are never printed.
    #[arg(
        long,
        global = true,
        env = "CACHE_REDIS_URL",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379"
    )]
    url: String,
    /// The app prefix (also CACHE_APP_PREFIX): only its keys are looked at or changed.
    #[arg(long, global = true, env = "CACHE_APP_PREFIX")]
    app: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// PEM file of the CA that signed the server's certificate, for `rediss://` URLs (also
    /// CACHE_TLS_CA_FILE).
    #[arg(long, global = true, env = "CACHE_TLS_CA_FILE")]
    tls_ca: Option<std::path::PathBuf>,
    /// PEM file of this client's certificate, for servers that require one (also
    /// CACHE_TLS_CERT_FILE).
    #[arg(long, global = true, env = "CACHE_TLS_CERT_FILE")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM file of this client's private key (also CACHE_TLS_KEY_FILE).
    #[arg(long, global = true, env = "CACHE_TLS_KEY_FILE")]
    tls_key: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Server health as a cache sees it; exits 1 when something will make the cache misbehave.
    Health,
    /// Key count and memory per app, version and entity, from one SCAN pass.
    Keys {
        /// MEMORY USAGE on this many keys per namespace (the rest is extrapolated).
        #[arg(long, default_value_t = 100)]
        sample: u64,
        /// Stop after this many keys.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// TTL distribution per entity; keys without a TTL are flagged.
    Ttl {
        /// Stop after this many keys.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// What a key holds, and whether a read would serve it.
    Inspect(inspect::InspectArgs),
    /// Invalidate an entity, an id with its variants, a tag, or keys matching a pattern.
    Invalidate(write::InvalidateArgs),
    /// Delete the keys of versions older than --version, rate-limited and resumable.
    Purge(write::PurgeArgs),
}

/// A failure reported as one line, exit code 2.
#[derive(Debug)]
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Self {
        Self(error.to_string())
    }
}

/// The TLS files of the command line, for every connection cachectl makes.
static TLS: std::sync::OnceLock<cache_runtime::TlsFiles> = std::sync::OnceLock::new();

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = TLS.set(tls_files(&cli));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("cannot start: {error}")),
    };
    match runtime.block_on(run(&cli)) {
        Ok(code) => code,
        Err(Failure(message)) => fail(&message),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("cachectl: {message}");
    ExitCode::from(2)
}

async fn run(cli: &Cli) -> Result<ExitCode, Failure> {
    match &cli.command {
        Command::Health => health::run(cli).await,
        Command::Keys { sample, limit } => keys::run_keys(cli, *sample, *limit).await,
        Command::Ttl { limit } => keys::run_ttl(cli, *limit).await,
        Command::Inspect(args) => inspect::run(cli, args).await,
        Command::Invalidate(args) => write::invalidate(cli, args).await,
        Command::Purge(args) => write::purge(cli, args).await,
    }
}

/// The URL without its password, for messages.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "the given URL".to_owned(),
    }
}

/// The first of the comma-separated seeds in `--url` (one URL for a plain Redis).
fn first_seed(url: &str) -> &str {
    url.split(',').next().unwrap_or(url).trim()
}

/// A connection for reading, or a one-line failure.
async fn connect(cli: &Cli) -> Result<redis::aio::MultiplexedConnection, Failure> {
    connect_url(first_seed(&cli.url)).await
}

/// A connection that sends each single-key command to the server holding its key: the one
/// Redis, or the right master of a cluster.
async fn connect_routed(cli: &Cli) -> Result<routed::Routed, Failure> {
    let mut conn = connect(cli).await?;
    if cache_runtime::inspect::cluster_layout(&mut conn)
        .await?
        .is_none()
    {
        return Ok(routed::Routed::Node(conn));
    }
    let seeds: Vec<&str> = cli.url.split(',').map(str::trim).collect();
    let seeds: Vec<String> = seeds
        .iter()
        .map(|seed| match seed.contains("://") {
            true => Ok((*seed).to_owned()),
            false => node_url(first_seed(&cli.url), seed),
        })
        .collect::<Result<_, _>>()?;
    let mut builder = redis::cluster::ClusterClientBuilder::new(seeds);
    if let Some(certificates) = tls_files(cli).certificates(first_seed(&cli.url))? {
        builder = builder.certs(certificates);
    }
    let client = builder
        .build()
        .map_err(|e| Failure(format!("invalid cluster seeds {}: {e}", redacted(&cli.url))))?;
    match tokio::time::timeout(Duration::from_secs(3), client.get_async_connection()).await {
        Ok(Ok(conn)) => Ok(routed::Routed::Cluster(conn)),
        Ok(Err(e)) => Err(Failure(format!("cannot connect to the cluster: {e}"))),
        Err(_) => Err(Failure(
            "cannot connect to the cluster: no answer within 3 s".into(),
        )),
    }
}

/// The servers that hold keys: the one Redis, or each master of a cluster (reached with the
/// seed's scheme and credentials), with the cluster's layout.
async fn connect_masters(cli: &Cli) -> Result<Masters, Failure> {
    let seed = first_seed(&cli.url);
    let mut conn = connect_url(seed).await?;
    let Some(layout) = cache_runtime::inspect::cluster_layout(&mut conn).await? else {
        return Ok(Masters {
            layout: None,
            nodes: vec![(redacted(seed), conn)],
        });
    };
    let mut nodes = Vec::new();
    for master in &layout.masters {
        let url = node_url(seed, &master.address)?;
        nodes.push((master.address.clone(), connect_url(&url).await?));
    }
    Ok(Masters {
        layout: Some(layout),
        nodes,
    })
}

/// The URL of the cluster node at `address`: the seed's, with its host and port.
fn node_url(seed: &str, address: &str) -> Result<String, Failure> {
    let mut url = url::Url::parse(seed).map_err(|e| Failure(e.to_string()))?;
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| Failure(format!("unexpected node address {address}")))?;
    let _ = url.set_host(Some(host));
    let _ = url.set_port(port.parse().ok());
    Ok(url.into())
}

/// Every server that holds keys, by address.
struct Masters {
    layout: Option<cache_runtime::inspect::ClusterLayout>,
    nodes: Vec<(String, redis::aio::MultiplexedConnection)>,
}

/// The TLS files given on the command line (or in the environment).
fn tls_files(cli: &Cli) -> cache_runtime::TlsFiles {
    cache_runtime::TlsFiles::new(
        cli.tls_ca.clone(),
        cli.tls_cert.clone(),
        cli.tls_key.clone(),
    )
}

async fn connect_url(url: &str) -> Result<redis::aio::MultiplexedConnection, Failure> {
    let client = TLS
        .get()
        .cloned()
        .unwrap_or_default()
        .client(url)
        .map_err(|e| Failure(format!("cannot use Redis URL {}: {e}", redacted(url))))?;
    match tokio::time::timeout(
        Duration::from_secs(3),
        client.get_multiplexed_async_connection(),
    )
    .await
    {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(Failure(format!("cannot connect to {}: {e}", redacted(url)))),
        Err(_) => Err(Failure(format!(
            "cannot connect to {}: no answer within 3 s",
            redacted(url)
        ))),
    }
}

/// The app prefix, required by commands that change keys.
fn required_app(cli: &Cli) -> Result<&str, Failure> {
    cli.app
        .as_deref()
        .ok_or_else(|| Failure("--app (or CACHE_APP_PREFIX) is required for this command".into()))
}
