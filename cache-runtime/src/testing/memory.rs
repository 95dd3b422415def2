//! [`MemoryRedis`]: an in-memory stand-in for `redis-server`, in this process.
//!
//! The cache reaches it as it reaches any Redis, through its `redis://` URL, so every code
//! path under test is the production one: the pool, the breaker, pipelines, scripts (run
//! natively, known by their digests), the invalidation bus (pub/sub), fencing by `run_id`.
//! What it holds expires on the clock it was given: with a [`crate::MockClock`] shared with
//! the cache ([`crate::Cache::with_clock`]), advancing the clock expires keys and ages values
//! without sleeping.

mod commands;
mod connection;
mod glob;
mod hash;
mod info;
mod resp;
mod scripts;
mod store;
#[cfg(test)]
mod tests;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{broadcast, watch};

use crate::clock::{Clock, SystemClock};
use store::Store;

/// A published message: its number (in publishing order), channel and payload.
type Message = Arc<(u64, Vec<u8>, Vec<u8>)>;

/// Messages a subscriber may fall behind by before it is disconnected, as Redis disconnects a
/// subscriber whose output buffer overflows.
const SUBSCRIBER_BACKLOG: usize = 65_536;

/// The accept loop, and word that it has ended.
type Serving = (tokio::task::JoinHandle<()>, std::sync::mpsc::Receiver<()>);

/// What the server task and every connection share.
#[derive(Debug)]
struct Shared {
    store: Mutex<Store>,
    messages: broadcast::Sender<Message>,
    /// `true` while frozen: nothing is answered (as a `SIGSTOP`ped server).
    frozen: watch::Sender<bool>,
    /// Until when writes wait (`CLIENT PAUSE … WRITE`).
    writes_paused_until: Mutex<Option<tokio::time::Instant>>,
    /// Until when every command waits (`CLIENT PAUSE … ALL`, [`MemoryRedis::pause`]).
    all_paused_until: Mutex<Option<tokio::time::Instant>>,
    /// Messages published so far: a subscriber gets those published after it subscribed.
    published: std::sync::atomic::AtomicU64,
    /// Per command (lowercase), the most that one client sent before reading a reply to any
    /// of them: those that arrived in one read.
    largest_bursts: Mutex<std::collections::HashMap<String, usize>>,
    /// Bumped by `CLIENT KILL TYPE pubsub`: every subscribed connection closes.
    subscriber_kills: watch::Sender<u64>,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Pauses for `duration` from now, or longer if a pause already runs longer.
    fn pause(&self, until: &Mutex<Option<tokio::time::Instant>>, duration: std::time::Duration) {
        // At most a day: `Instant` arithmetic must not overflow on a client's number.
        let end =
            tokio::time::Instant::now() + duration.min(std::time::Duration::from_secs(86_400));
        let mut until = lock(until);
        *until = Some(until.map_or(end, |current| current.max(end)));
    }

    /// Ends every pause (`CLIENT UNPAUSE`).
    fn unpause(&self) {
        *lock(&self.writes_paused_until) = None;
        *lock(&self.all_paused_until) = None;
    }

    /// Until when `args` waits: any command during a pause of all, a write during a pause of
    /// writes.
    fn paused_until(&self, args: &[Vec<u8>]) -> Option<tokio::time::Instant> {
        let now = tokio::time::Instant::now();
        let all = (*lock(&self.all_paused_until)).filter(|until| *until > now);
        let name = args.first()?.to_ascii_uppercase();
        let writes = (*lock(&self.writes_paused_until))
            .filter(|until| *until > now && connection::is_write(&name));
        all.max(writes)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An in-memory Redis on a loopback port, served by a thread of its own (so it outlives the
/// test runtime that started it, and may live in a `static`). Stopped when dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use cache_runtime::testing::MemoryRedis;
///
/// let redis = MemoryRedis::start().expect("a loopback port");
/// let client = redis::Client::open(redis.url()).expect("a valid URL");
/// let mut connection = client.get_multiplexed_async_connection().await.expect("connected");
/// let _: () = redis::cmd("SET").arg("k").arg("v").query_async(&mut connection).await.expect("SET");
/// let value: String = redis::cmd("GET").arg("k").query_async(&mut connection).await.expect("GET");
/// assert_eq!(value, "v");
/// # }
/// ```
#[derive(Debug)]
pub struct MemoryRedis {
    shared: Arc<Shared>,
    address: SocketAddr,
    runtime: tokio::runtime::Handle,
    /// The accept loop (aborting it closes every connection), and word that it has ended.
    serving: Mutex<Option<Serving>>,
    /// Dropped to stop the server's thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl MemoryRedis {
    /// A server on a free loopback port, expiring keys on the system clock.
    pub fn start() -> std::io::Result<Self> {
        Self::with_clock(Arc::new(SystemClock::default()))
    }

    /// A server expiring keys (and answering `TIME`) on `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> std::io::Result<Self> {
        let listener = StdListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let (runtime, stop) = server_thread()?;
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(clock)),
            messages: broadcast::channel(SUBSCRIBER_BACKLOG).0,
            frozen: watch::channel(false).0,
            writes_paused_until: Mutex::new(None),
            all_paused_until: Mutex::new(None),
            published: std::sync::atomic::AtomicU64::new(0),
            largest_bursts: Mutex::default(),
            subscriber_kills: watch::channel(0).0,
        });
        let server = Self {
            shared,
            address,
            runtime,
            serving: Mutex::new(None),
            _stop: stop,
        };
        server.serve(listener)?;
        Ok(server)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.address)
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Closes every connection and stops listening; what is stored stays (see [`Self::restart`]).
    pub fn stop(&self) {
        if let Some((serving, ended)) = self.serving() {
            serving.abort();
            // The listener closes when the server's thread drops the task: wait for it, so the
            // port refuses connections once this returns.
            let _ = ended.recv_timeout(std::time::Duration::from_secs(5));
        }
    }

    /// Starts again on the same port with nothing stored and a new `run_id`, as a Redis
    /// without persistence comes back from a restart.
    pub fn restart(&self) -> std::io::Result<()> {
        self.stop();
        self.shared.store().restart();
        let listener = StdListener::bind(self.address)?;
        self.serve(listener)
    }

    /// Stops answering (commands wait, connections stay open), as a paused process.
    pub fn freeze(&self) {
        self.shared.frozen.send_replace(true);
    }

    /// Answers again, in order, what waited while frozen.
    pub fn thaw(&self) {
        self.shared.frozen.send_replace(false);
    }

    /// Answers nothing for `duration`, then everything that waited (`CLIENT PAUSE … ALL`).
    pub fn pause(&self, duration: std::time::Duration) {
        self.shared.pause(&self.shared.all_paused_until, duration);
    }

    /// The most `command`s (lowercase: `get`) one client had sent before the server answered
    /// any of them, as far as one read of its socket shows (a lower bound of its largest
    /// pipeline): what a test of how many commands a client keeps in flight asserts on. Freeze
    /// the server while the client sends, and one read takes all it sent (up to 64 KiB).
    pub fn largest_burst(&self, command: &str) -> usize {
        lock(&self.shared.largest_bursts)
            .get(command)
            .copied()
            .unwrap_or(0)
    }

    /// Removes every key.
    pub fn flush(&self) {
        self.shared.store().flush();
    }

    /// Removes every expired key now (Redis does it in the background; here reads remove
    /// expired keys as they meet them, and this removes the rest).
    pub fn sweep_expired(&self) {
        self.shared.store().sweep();
    }

    fn serving(&self) -> Option<Serving> {
        self.serving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    fn serve(&self, listener: StdListener) -> std::io::Result<()> {
        listener.set_nonblocking(true)?;
        let shared = self.shared.clone();
        let _entered = self.runtime.enter();
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let (ended, ended_rx) = std::sync::mpsc::channel();
        let serving = self.runtime.spawn(async move {
            // Declared first, dropped last: after the listener and the connections.
            let _ended = Ended(ended);
            let listener = listener;
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let _ = stream.set_nodelay(true);
                        connections.spawn(connection::serve(stream, shared.clone()));
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        *self
            .serving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((serving, ended_rx));
        Ok(())
    }
}

impl Drop for MemoryRedis {
    fn drop(&mut self) {
        if let Some((serving, _)) = self.serving() {
            serving.abort();
        }
    }
}

/// Says, when dropped with the accept loop, that the listener is closed.
struct Ended(std::sync::mpsc::Sender<()>);

impl Drop for Ended {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// A thread running a runtime of its own until the sender is dropped.
fn server_thread() -> std::io::Result<(tokio::runtime::Handle, tokio::sync::oneshot::Sender<()>)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("memory-redis".into())
        .spawn(move || {
            runtime.block_on(async {
                let _ = stopped.await;
            });
        })?;
    Ok((handle, stop))
}
