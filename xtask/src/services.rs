//! Local stand-ins for cloud services the tests need: an S3 server (moto).
//!
//! moto is a Python package, so it lives in a virtualenv under
//! `target/moto-venv`, created on first use and reused afterwards.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

/// How long to wait for the server to answer: 300 polls, 100 ms apart.
const READY_POLLS: u32 = 300;
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A running moto S3 server on 127.0.0.1; stopped when dropped.
pub(crate) struct S3Server {
    /// `http://127.0.0.1:PORT`, for `ARCA_TEST_S3_ENDPOINT` and `s3:` URLs.
    pub(crate) endpoint: String,
    child: Child,
}

/// Installs moto if needed and starts it on a free port, waiting until it answers HTTP.
pub(crate) fn start(workspace_root: &Path) -> anyhow::Result<S3Server> {
    let target = workspace_root.join("target");
    let moto_server = install_moto(&target)?;
    let port = free_port()?;
    let log_path = target.join("moto.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let child = Command::new(&moto_server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", moto_server.display()))?;
    // From here on Drop stops the server, also when it never becomes ready.
    let mut server = S3Server {
        endpoint: format!("http://127.0.0.1:{port}"),
        child,
    };
    for _ in 0..READY_POLLS {
        if answers_http(port) {
            return Ok(server);
        }
        if let Some(status) = server.child.try_wait()? {
            bail!(
                "moto_server exited with {status}; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    bail!(
        "moto_server did not answer on port {port} within {:?}; see {}",
        POLL_INTERVAL * READY_POLLS,
        log_path.display()
    )
}

impl Drop for S3Server {
    fn drop(&mut self) {
        // Already exited is fine; either way reap it so no zombie is left.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `target/moto-venv/bin/moto_server`, installing `moto[server]` first if it is missing.
fn install_moto(target: &Path) -> anyhow::Result<PathBuf> {
    let venv = target.join("moto-venv");
    let moto_server = venv.join("bin/moto_server");
    if moto_server.exists() {
        return Ok(moto_server);
    }
    std::fs::create_dir_all(target)?;
    let install_log = target.join("moto-install.log");
    run_logged(
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
        &install_log,
    )
    .context("creating a Python virtualenv for moto (is python3 with venv installed?)")?;
    run_logged(
        Command::new(venv.join("bin/pip")).args(["install", "--quiet", "moto[server]"]),
        &install_log,
    )
    .context("installing moto[server] with pip")?;
    if !moto_server.exists() {
        bail!(
            "pip installed moto but {} is missing",
            moto_server.display()
        );
    }
    Ok(moto_server)
}

fn run_logged(command: &mut Command, log_path: &Path) -> anyhow::Result<()> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)?;
    let status = command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!(
            "{command:?} failed with {status}; see {}",
            log_path.display()
        );
    }
    Ok(())
}

/// A port nobody listens on right now (the OS picks it).
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Whether something on `port` answers an HTTP request with an HTTP status line.
fn answers_http(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut status_line = [0u8; 8];
    stream.read_exact(&mut status_line).is_ok() && status_line.starts_with(b"HTTP/1.")
}
