//! A real Redis Cluster for tests: three masters with one replica each, made by
//! `redis-cli --cluster create`, every node a [`RedisServer`] stopped by PID when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::RedisServer;

/// How long the cluster may take to cover every slot with a replica behind every master.
const FORMING_DEADLINE: Duration = Duration::from_secs(30);

/// A 3 + 3 Redis Cluster on 127.0.0.1.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    /// Each node's `nodes.conf` lives here; removed on drop.
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts six nodes with `cluster-require-full-coverage no` (what redis.conf recommends),
    /// joins them as three masters with one replica each and waits until every master has an
    /// online replica.
    pub fn start() -> Self {
        Self::start_with(&["--cluster-require-full-coverage", "no"])
    }

    /// Like [`Self::start`], with extra `redis-server` settings on every node.
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "cache-cluster-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("create the cluster's directory");
        let mut nodes = Vec::new();
        for port in cluster_ports(6) {
            // Its own directory: a replica stores the snapshot its master sends as dump.rdb,
            // which must not land where another server would load it.
            let node_dir = dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).expect("create a node's directory");
            let node_dir = node_dir.to_str().expect("utf-8 temp path").to_owned();
            let config = dir.join(format!("nodes-{port}.conf"));
            let config = config.to_str().expect("utf-8 temp path").to_owned();
            let mut args = vec![
                "--dir",
                &node_dir,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &config,
                "--cluster-node-timeout",
                "1000",
                // A replica takes over at once, whatever its replication lag.
                "--cluster-replica-validity-factor",
                "0",
            ];
            args.extend_from_slice(extra);
            // Another test may take a probed port (or its bus port) before the node binds it:
            // a few other ports make that race harmless.
            let mut port = port;
            let node = (0..5)
                .find_map(|attempt| {
                    if attempt > 0 {
                        port = cluster_ports(1)[0];
                    }
                    RedisServer::try_start_on_port(port, &args)
                })
                .expect("could not start a cluster node on any of 5 free ports");
            nodes.push(node);
        }
        let cluster = Self { nodes, dir };
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        cluster.wait_until_formed();
        cluster
    }

    /// Waits until every node sees the cluster as ok and every master has an online replica.
    pub fn wait_until_formed(&self) {
        let started = Instant::now();
        while started.elapsed() < FORMING_DEADLINE {
            if self.formed() {
                return;
            }
            sleep(Duration::from_millis(100));
        }
        panic!("the cluster did not form within {FORMING_DEADLINE:?}");
    }

    fn formed(&self) -> bool {
        let live: Vec<&RedisServer> = self.nodes.iter().filter(|n| n.pid().is_some()).collect();
        let ok = live.iter().all(|node| {
            node.try_query::<String>(redis::cmd("CLUSTER").arg("INFO"))
                .is_some_and(|info| info.contains("cluster_state:ok"))
        });
        let replicated = self.masters().iter().all(|master| {
            master
                .try_query::<String>(redis::cmd("INFO").arg("replication"))
                .is_some_and(|info| info.contains("state=online"))
        });
        // Every node has heard (by gossip) which replica follows which master: clients read
        // the topology from any of them.
        let known = live.iter().all(|node| {
            node.try_query::<redis::Value>(redis::cmd("CLUSTER").arg("SLOTS"))
                .is_some_and(|slots| match slots {
                    redis::Value::Array(ranges) => {
                        !ranges.is_empty()
                            && ranges.iter().all(
                                |range| matches!(range, redis::Value::Array(f) if f.len() >= 4),
                            )
                    }
                    _ => false,
                })
        });
        ok && replicated && known
    }

    /// The seed list for `CACHE_REDIS_URL`: every node, comma-separated.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.nodes.iter().map(RedisServer::url).collect();
        seeds.join(",")
    }

    /// Every node, started or not.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The running nodes that are masters now, in port order.
    pub fn masters(&self) -> Vec<&RedisServer> {
        self.live()
            .filter(|n| {
                n.try_query::<String>(redis::cmd("INFO").arg("replication"))
                    .is_some_and(|info| info.contains("role:master"))
            })
            .collect()
    }

    /// The running master that holds `key`'s slot (the others answer `MOVED`).
    pub fn master_of(&self, key: &str) -> &RedisServer {
        self.masters()
            .into_iter()
            .find(|master| {
                master
                    .try_query::<i64>(redis::cmd("EXISTS").arg(key))
                    .is_some()
            })
            .expect("a live master owns the key's slot")
    }

    /// The replica of `master` (from its `INFO replication`).
    pub fn replica_of(&self, master: &RedisServer) -> &RedisServer {
        let info: String = master.query(redis::cmd("INFO").arg("replication"));
        let port: u16 = info
            .lines()
            .find_map(|line| line.strip_prefix("slave0:"))
            .and_then(|fields| fields.split(',').find_map(|f| f.strip_prefix("port=")))
            .and_then(|port| port.parse().ok())
            .expect("the master has a replica");
        self.nodes
            .iter()
            .find(|n| n.port() == port)
            .expect("a node of this cluster")
    }

    /// Waits until three masters cover every slot again (after a failover).
    pub fn wait_for_three_masters(&self, within: Duration) {
        let started = Instant::now();
        while started.elapsed() < within {
            let ok = self.live().all(|n| {
                n.try_query::<String>(redis::cmd("CLUSTER").arg("INFO"))
                    .is_none_or(|info| info.contains("cluster_state:ok"))
            });
            if ok && self.masters().len() == 3 {
                return;
            }
            sleep(Duration::from_millis(20));
        }
        panic!("no three masters within {within:?}");
    }

    /// The node at `index` (mutable: to stop, pause or restart it).
    pub fn node_mut(&mut self, index: usize) -> &mut RedisServer {
        &mut self.nodes[index]
    }

    /// The index of the node `server` is.
    pub fn index_of(&self, server: &RedisServer) -> usize {
        self.nodes
            .iter()
            .position(|n| n.port() == server.port())
            .expect("a node of this cluster")
    }

    /// How many times `command` ran on all nodes together (`INFO commandstats`).
    pub fn command_calls(&self, command: &str) -> u64 {
        self.live().map(|n| n.command_calls(command)).sum()
    }

    /// How many errors of kind `code` (`CROSSSLOT`, `MOVED`) all nodes answered
    /// (`INFO errorstats`).
    pub fn error_count(&self, code: &str) -> u64 {
        let prefix = format!("errorstat_{code}:count=");
        self.live()
            .map(|n| {
                let info: String = n.query(redis::cmd("INFO").arg("errorstats"));
                info.lines()
                    .find_map(|line| line.strip_prefix(prefix.as_str()))
                    .and_then(|count| count.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Every key matching `pattern` on every master, sorted.
    pub fn scan(&self, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .masters()
            .into_iter()
            .flat_map(|m| m.scan(pattern))
            .collect();
        keys.sort();
        keys
    }

    fn live(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes.iter().filter(|n| n.pid().is_some())
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `count` free ports whose cluster-bus ports (port + 10000) are free too.
fn cluster_ports(count: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    let mut candidate = 20_000 + (rand_suffix() % 20_000) as u16;
    while ports.len() < count {
        candidate = if candidate >= 40_000 {
            20_000
        } else {
            candidate + 1
        };
        let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
        if free(candidate) && free(candidate + 10_000) {
            ports.push(candidate);
        }
    }
    ports
}

fn rand_suffix() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    u64::from(nanos) ^ u64::from(std::process::id()) << 20
}
