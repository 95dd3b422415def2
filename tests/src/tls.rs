//! A TLS-only redis-server for the TLS tests, with certificates made for it by `openssl`: a
//! private CA, the server's certificate (for 127.0.0.1), a client certificate, and a second CA
//! that signed none of them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Certificates in a directory of their own, removed on drop.
#[derive(Debug)]
pub struct TlsCerts {
    dir: PathBuf,
}

impl TlsCerts {
    /// Makes the CA, server and client certificates (P-256 keys, valid two days).
    pub fn generate() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "cache-tests-tls-{}-{}",
            std::process::id(),
            super::free_port()
        ));
        std::fs::create_dir_all(&dir).expect("certificate directory");
        let certs = Self { dir };
        certs.ca("ca");
        certs.ca("other-ca");
        certs.signed("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n");
        certs.signed(
            "client",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        );
        certs
    }

    /// `name.crt` or `name.key` in the directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn ca(&self, name: &str) {
        openssl(
            &self.dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.crt"),
            ],
        );
    }

    fn signed(&self, name: &str, extensions: &str) {
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        std::fs::write(self.dir.join(format!("{name}.ext")), extensions).expect("extensions");
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &format!("{name}.crt"),
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }
}

impl Drop for TlsCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("the TLS tests make their certificates with `openssl`: install it (apt-get install openssl)");
    assert!(status.success(), "openssl {args:?} failed");
}

/// A redis-server that only speaks TLS (`--port 0`), killed on drop.
#[derive(Debug)]
pub struct TlsRedisServer {
    port: u16,
    child: Child,
}

impl TlsRedisServer {
    /// Starts it with `certs`' server certificate; with `require_client_cert`, clients must
    /// present a certificate signed by the CA (`tls-auth-clients yes`).
    pub fn start(certs: &TlsCerts, require_client_cert: bool) -> Self {
        let port = super::free_port();
        let path = |file: &str| certs.path(file).to_string_lossy().into_owned();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args([
                "--tls-cert-file",
                &path("server.crt"),
                "--tls-key-file",
                &path("server.key"),
            ])
            .args(["--tls-ca-cert-file", &path("ca.crt")])
            .args([
                "--tls-auth-clients",
                if require_client_cert { "yes" } else { "no" },
            ])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let server = Self { port, child };
        // Listening is enough to go on: the tests' clients do the handshake.
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not listen for TLS on {port} (is it built with TLS?)"
            );
            sleep(Duration::from_millis(20));
        }
        server
    }

    /// `rediss://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsRedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
