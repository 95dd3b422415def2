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
