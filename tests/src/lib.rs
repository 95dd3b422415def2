//! Test support: real `redis-server` processes on free ports that a test can stop, pause and
//! restart. Each [`RedisServer`] is killed when dropped.

mod cluster;
pub mod history;
mod memory;
mod proxy;
mod tls;

pub use cluster::RedisCluster;
pub use memory::MemoryServer;
pub use proxy::Proxy;
pub use tls::{TlsCerts, TlsRedisServer};

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long a server may take to accept connections after being started.
const STARTUP_DEADLINE: Duration = Duration::from_secs(10);

/// What tests ask a server (real or in memory) about its contents, on fresh connections.
macro_rules! inspection {
    () => {
        /// A fresh synchronous connection, for assertions on what Redis holds.
        pub fn connection(&self) -> redis::RedisResult<redis::Connection> {
            redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(2))
        }

        /// Runs `cmd` on a fresh connection and panics on error: for test set-up and assertions.
        pub fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
            let mut connection = self.connection().expect("connect to test redis");
            cmd.query(&mut connection).expect("test redis command")
        }

        /// Runs `cmd` on a fresh connection: `None` if the server is unreachable or answers an
        /// error.
        pub fn try_query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Option<T> {
            let mut connection = self.connection().ok()?;
            cmd.query(&mut connection).ok()
        }

        /// A number from `INFO section` (`evicted_keys`, `used_memory`, …).
        pub fn info_number(&self, section: &str, field: &str) -> u64 {
            let info: String = self.query(redis::cmd("INFO").arg(section));
            let prefix = format!("{field}:");
            info.lines()
                .find_map(|line| line.strip_prefix(prefix.as_str()))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or_else(|| panic!("no number `{field}` in INFO {section}"))
        }

        /// How many times `command` (lowercase, e.g. `get`) has run, from `INFO commandstats`.
        pub fn command_calls(&self, command: &str) -> u64 {
            let info: String = self.query(redis::cmd("INFO").arg("commandstats"));
            let prefix = format!("cmdstat_{command}:calls=");
            info.lines()
                .find_map(|line| line.strip_prefix(prefix.as_str()))
                .and_then(|rest| rest.split(',').next())
                .and_then(|calls| calls.parse().ok())
                .unwrap_or(0)
        }

        /// Every key matching `pattern`, found with `SCAN`, sorted.
        pub fn scan(&self, pattern: &str) -> Vec<String> {
            let mut connection = self.connection().expect("connect to test redis");
            let mut keys: Vec<String> = redis::cmd("SCAN")
                .cursor_arg(0)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .clone()
                .iter(&mut connection)
                .expect("scan")
                .collect::<Result<_, _>>()
                .expect("scan keys");
            keys.sort();
            keys
        }

        /// The keys matching `pattern` that hold cached values, sorted: without the cache's own
        /// bookkeeping (indexes, leases, cursors), whose names all contain a `%` that escaped ids
        /// never produce unencoded.
        pub fn cached_keys(&self, pattern: &str) -> Vec<String> {
            let mut keys = self.scan(pattern);
            keys.retain(|key| !is_bookkeeping(key));
            keys
        }
    };
}
pub(crate) use inspection;

/// A `redis-server` child process listening on 127.0.0.1.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    password: Option<String>,
    /// The ACL user the URL names (with `password`), for servers run with a config file.
    user: Option<String>,
    /// A configuration file given to `redis-server` before the other arguments.
    config_file: Option<std::path::PathBuf>,
    /// Extra `redis-server` arguments (`--maxmemory 4mb`, …).
    args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server without authentication.
    pub fn start() -> Self {
        Self::spawn(None, &[])
    }

    /// Starts a server that requires `password` (`requirepass`).
    pub fn start_with_password(password: &str) -> Self {
        Self::spawn(Some(password.to_owned()), &[])
    }

    /// Starts a server with the configuration file `config` (its port, persistence and
    /// daemonizing overridden), reached as ACL `user` with `password`.
    pub fn start_with_config(config: &std::path::Path, user: &str, password: &str) -> Self {
        for _ in 0..5 {
            let mut server = Self {
                port: free_port(),
                password: Some(password.to_owned()),
                user: Some(user.to_owned()),
                config_file: Some(config.to_owned()),
                args: Vec::new(),
                child: None,
            };
            if server.launch() {
                return server;
            }
        }
        panic!("could not start redis-server with {}", config.display());
    }

    /// Starts a server with extra command-line settings, e.g. `["--maxmemory", "4mb"]`.
    pub fn start_with_args(args: &[&str]) -> Self {
        Self::spawn(None, args)
    }

    /// Starts a server on `port` with extra settings (a cluster node, whose bus port must be
    /// free too, is given its port by [`RedisCluster`]).
    pub fn start_on_port(port: u16, args: &[&str]) -> Self {
        Self::try_start_on_port(port, args)
            .unwrap_or_else(|| panic!("could not start redis-server on port {port}"))
    }

    /// [`Self::start_on_port`], or `None` when the server could not start there (the port
    /// was taken meanwhile).
    pub fn try_start_on_port(port: u16, args: &[&str]) -> Option<Self> {
        let mut server = Self {
            port,
            password: None,
            user: None,
            config_file: None,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            child: None,
        };
        server.launch().then_some(server)
    }

    fn spawn(password: Option<String>, args: &[&str]) -> Self {
        // Another test may grab the same free port between our probe and the server's bind;
        // a few attempts make that race harmless.
        for _ in 0..5 {
            let mut server = Self {
                port: free_port(),
                password: password.clone(),
                user: None,
                config_file: None,
                args: args.iter().map(|a| (*a).to_owned()).collect(),
                child: None,
            };
            if server.launch() {
                return server;
            }
        }
        panic!("could not start redis-server (is it installed and on PATH?)");
    }

    fn launch(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        if let Some(file) = &self.config_file {
            cmd.arg(file);
        }
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let (Some(password), None) = (&self.password, &self.config_file) {
            cmd.args(["--requirepass", password]);
        }
        cmd.args(&self.args);
        let child = cmd.spawn().expect("spawn redis-server");
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < STARTUP_DEADLINE {
            if self.exited() {
                return false;
            }
            if self.ping() {
                return true;
            }
            sleep(Duration::from_millis(20));
        }
        self.stop();
        false
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    fn ping(&self) -> bool {
        self.connection()
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://[[user]:password@]127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        match (&self.user, &self.password) {
            (Some(user), Some(password)) => {
                format!("redis://{user}:{password}@127.0.0.1:{}", self.port)
            }
            (None, Some(password)) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            (_, None) => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    inspection!();

    /// Kills the server (SIGKILL: what a crash looks like to clients).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: nothing is persisted).
    pub fn restart(&mut self) {
        self.stop();
        assert!(
            self.launch(),
            "redis-server did not restart on port {}",
            self.port
        );
    }

    /// Stops the process (SIGSTOP) until [`Self::thaw`]: to everyone else it hangs, as a
    /// stalled machine does.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Resumes a frozen process (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.pid().expect("a running server");
        let sent = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill {signal} {pid}");
    }

    /// Makes the server stop answering clients for `duration` (`CLIENT PAUSE … ALL`).
    pub fn pause(&self, duration: Duration) {
        let _: () = self.query(
            redis::cmd("CLIENT")
                .arg("PAUSE")
                .arg(duration.as_millis().to_string())
                .arg("ALL"),
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Index, lease and cursor keys end in a `%` part that escaping cannot produce (`%` is only
/// ever followed by two uppercase hex digits in an escaped value).
pub(crate) fn is_bookkeeping(key: &str) -> bool {
    key.split(':').any(|part| {
        part.strip_prefix('%').is_some_and(|rest| {
            !rest
                .chars()
                .take(2)
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
        })
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

/// The plan the multi-process batch test and its `batch_client` processes share.
pub mod batch {
    /// Batches per process.
    pub const PER_PROCESS: u64 = 2;
    /// The ids the batches of all 4 processes cover between them: `0..IDS`.
    pub const IDS: u64 = 55;

    /// The ids of one batch: 20, overlapping the next batch's by 15.
    pub fn ids(process: u64, batch: u64) -> Vec<u64> {
        let first = (process * PER_PROCESS + batch) * 5;
        (first..first + 20).collect()
    }
}
