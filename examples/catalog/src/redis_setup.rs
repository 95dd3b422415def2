//! Where the demo's Redis comes from: the one at `CACHE_REDIS_URL` if it answers, else a
//! `redis-server` started for the demo on a free port (stopped afterwards), else none.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The Redis the demo uses.
#[derive(Debug)]
pub enum DemoRedis {
    /// Answering at this URL already.
    Running(String),
    /// Started for the demo; killed on drop.
    Started { url: String, child: Child },
    /// None: the demo runs on the database alone, for this reason.
    Absent(String),
}

impl DemoRedis {
    pub fn url(&self) -> Option<&str> {
        match self {
            Self::Running(url) | Self::Started { url, .. } => Some(url),
            Self::Absent(_) => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Running(url) => format!("Redis at {}", redacted(url)),
            Self::Started { url, .. } => format!(
                "no Redis answered at $CACHE_REDIS_URL: started redis-server at {url} for the demo (stopped at the end)"
            ),
            Self::Absent(why) => format!("no Redis: {why}; the demo runs on the database alone"),
        }
    }
}

impl Drop for DemoRedis {
    fn drop(&mut self) {
        if let Self::Started { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn redacted(url: &str) -> String {
    match url.split_once('@') {
        Some((_, host)) => format!("redis://***@{host}"),
        None => url.to_owned(),
    }
}

async fn answers(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), ping).await,
        Ok(Ok(_))
    )
}

pub async fn find_or_start(url: &str) -> DemoRedis {
    if answers(url).await {
        return DemoRedis::Running(url.to_owned());
    }
    let port = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(address) => address.port(),
        Err(error) => return DemoRedis::Absent(format!("no free port ({error})")),
    };
    let started = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lfu"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match started {
        Ok(child) => child,
        Err(_) => {
            return DemoRedis::Absent(format!(
                "none answered at {} and redis-server is not on the PATH",
                redacted(url)
            ));
        }
    };
    let own = format!("redis://127.0.0.1:{port}");
    let redis = DemoRedis::Started {
        url: own.clone(),
        child,
    };
    for _ in 0..100 {
        if answers(&own).await {
            return redis;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(redis);
    DemoRedis::Absent("the redis-server started for the demo did not answer".to_owned())
}

/// What `cachectl health` would say of a Redis the demo did not start: without `maxmemory`
/// (or with `noeviction`) it fills up and refuses writes instead of evicting. Fine for a demo,
/// not for production: said once, with the fix.
pub async fn production_note(redis: &DemoRedis) -> Option<String> {
    let DemoRedis::Running(url) = redis else {
        return None;
    };
    let client = redis::Client::open(url.as_str()).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let (_, maxmemory): (String, u64) = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query_async(&mut conn)
        .await
        .ok()?;
    let (_, policy): (String, String) = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(&mut conn)
        .await
        .ok()?;
    (maxmemory == 0 || policy == "noeviction").then(|| {
        format!(
            "note: this Redis has maxmemory {maxmemory} and maxmemory-policy {policy}: fine for a demo, but `cachectl health` calls it unhealthy for a cache (it fills up and refuses writes instead of evicting); redis.conf has the recommended settings"
        )
    })
}

/// Deletes every key of `prefix` (values, and the bookkeeping keys in braces): one `SCAN`
/// pass per pattern, in batches. Answers how many were deleted.
pub async fn remove_prefix(url: &str, prefix: &str) -> Result<u64, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let mut removed = 0;
    for pattern in [format!("{prefix}:*"), format!("{{{prefix}:*")] {
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            if !keys.is_empty() {
                let n: u64 = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                removed += n;
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
    }
    Ok(removed)
}
