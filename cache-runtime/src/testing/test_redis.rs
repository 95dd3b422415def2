//! [`TestRedis`]: a real `redis-server` for a test, on a free port.

use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to accept connections.
const STARTUP: Duration = Duration::from_secs(10);

/// Why a [`TestRedis`] is not running.
#[derive(Debug, thiserror::Error)]
pub enum TestRedisError {
    #[error(
        "redis-server is not installed (apt install redis-server, brew install redis); tests on the in-memory Redis (TestCache::in_memory) need none"
    )]
    NotInstalled,
    #[error("redis-server did not start on port {port}: {why}")]
    DidNotStart { port: u16, why: String },
    #[error("redis-server on port {port} refused {command}")]
    Refused { port: u16, command: &'static str },
    #[error("cannot run redis-server: {0}")]
    Io(#[from] std::io::Error),
}

/// A `redis-server` child process on 127.0.0.1, persisting nothing. It is killed when
/// dropped, and when the test process exits without dropping it (a server kept in a `static`,
/// a test binary killed by a timeout): a watchdog process kills it once its parent is gone.
#[derive(Debug)]
pub struct TestRedis {
    port: u16,
    args: Vec<String>,
    server: Option<Child>,
    watchdog: Option<Child>,
}

impl TestRedis {
    /// A server on a free port.
    pub fn start() -> Result<Self, TestRedisError> {
        Self::start_with_args(&[])
    }

    /// A server on a free port with more `redis-server` arguments (`["--maxmemory", "4mb"]`).
    pub fn start_with_args(args: &[&str]) -> Result<Self, TestRedisError> {
        let mut last = None;
        // The port is free when picked, and may be taken before the server binds it.
        for _ in 0..5 {
            let mut redis = Self {
                port: free_port()?,
                args: args.iter().map(|a| (*a).to_owned()).collect(),
                server: None,
                watchdog: None,
            };
            match redis.launch() {
                Ok(()) => return Ok(redis),
                Err(TestRedisError::NotInstalled) => return Err(TestRedisError::NotInstalled),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or(TestRedisError::NotInstalled))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL: a crash, as clients see it).
    pub fn kill(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) -> Result<(), TestRedisError> {
        self.kill();
        self.launch()
    }

    /// Makes the server answer no client for `duration` (`CLIENT PAUSE … ALL`), then everything
    /// that waited.
    pub fn pause(&self, duration: Duration) -> Result<(), TestRedisError> {
        use std::io::{Read as _, Write as _};
        let millis = duration.as_millis().to_string();
        let command = format!(
            "*4\r\n$6\r\nCLIENT\r\n$5\r\nPAUSE\r\n${}\r\n{millis}\r\n$3\r\nALL\r\n",
            millis.len()
        );
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(command.as_bytes())?;
        let mut reply = [0; 5];
        stream.read_exact(&mut reply)?;
        match &reply {
            b"+OK\r\n" => Ok(()),
            _ => Err(TestRedisError::Refused {
                port: self.port,
                command: "CLIENT PAUSE",
            }),
        }
    }

    /// Stops the process (SIGSTOP) until [`Self::thaw`]: to clients it hangs.
    pub fn freeze(&self) -> Result<(), TestRedisError> {
        self.signal("-STOP")
    }

    /// Resumes a frozen server (SIGCONT).
    pub fn thaw(&self) -> Result<(), TestRedisError> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> Result<(), TestRedisError> {
        let Some(pid) = self.pid() else {
            return Err(TestRedisError::DidNotStart {
                port: self.port,
                why: "the server is not running".to_owned(),
            });
        };
        Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()?;
        Ok(())
    }

    fn launch(&mut self) -> Result<(), TestRedisError> {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let server = match command.spawn() {
            Ok(server) => server,
            Err(error) if error.kind() == ErrorKind::NotFound => {
                return Err(TestRedisError::NotInstalled);
            }
            Err(error) => return Err(error.into()),
        };
        self.server = Some(server);
        match watchdog(self.pid().unwrap_or(0)) {
            Ok(watchdog) => self.watchdog = Some(watchdog),
            // Without it, a server kept in a `static` would outlive the tests.
            Err(error) => {
                self.kill();
                return Err(error.into());
            }
        }
        let started = Instant::now();
        while started.elapsed() < STARTUP {
            if let Some(server) = &mut self.server
                && let Ok(Some(status)) = server.try_wait()
            {
                self.server = None;
                self.kill();
                return Err(TestRedisError::DidNotStart {
                    port: self.port,
                    why: format!("it exited ({status})"),
                });
            }
            if answers(self.port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        Err(TestRedisError::DidNotStart {
            port: self.port,
            why: format!("not answering after {STARTUP:?}"),
        })
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A process that kills `pid` once this process is gone (polling twice a second): Rust runs no
/// destructor for a `static`, nor for a process killed outright.
fn watchdog(pid: u32) -> std::io::Result<Child> {
    let script = format!(
        "while kill -0 {parent} 2>/dev/null; do sleep 0.5; done; kill -9 {pid} 2>/dev/null",
        parent = std::process::id()
    );
    Command::new("/bin/sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// Whether a server on `port` answers `PING`.
fn answers(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
