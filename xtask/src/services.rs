//! Local stand-ins for cloud services the tests need: an S3 server (moto)
//! and an Azure Blob service (Azurite).
//!
//! moto is a Python package, so it lives in a virtualenv under
//! `target/moto-venv`; Azurite is an npm package, installed under
//! `target/azurite`. Both are installed on first use and reused afterwards.
//! No GCS emulator is started: neither one on the package registries works
//! with object_store 0.12 (see docs/backends/gcs.md).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;

/// How long to wait for the server to answer: 300 polls, 100 ms apart.
const READY_POLLS: u32 = 300;
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Azurite's account and its documented development key (public, not a secret).
pub(crate) const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub(crate) const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The container the Azure tests use (each under its own prefix).
const AZURE_TEST_CONTAINER: &str = "arca-test";
/// The Azurite release line installed (its npm major version).
const AZURITE_PACKAGE: &str = "azurite@3";

/// The moto server's handle (the name other modules use).
pub(crate) type S3Server = Server;

/// A running local service on 127.0.0.1; stopped when dropped.
pub(crate) struct Server {
    /// `http://127.0.0.1:PORT` (for Azurite with the account's path:
    /// `http://127.0.0.1:PORT/devstoreaccount1`).
    pub(crate) endpoint: String,
    child: Child,
}

/// Installs moto if needed and starts it on a free port, waiting until it answers HTTP.
pub(crate) fn start(workspace_root: &Path) -> anyhow::Result<Server> {
    let target = workspace_root.join("target");
    let moto_server = install_moto(&target)?;
    let port = free_port()?;
    let mut command = Command::new(&moto_server);
    command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    spawn_and_wait(
        command,
        "moto_server",
        port,
        &target.join("moto.log"),
        format!("http://127.0.0.1:{port}"),
    )
}

/// Installs Azurite if needed, starts its blob service on a free port with
/// its data in a fresh directory, waits until it answers and creates the
/// test container. The endpoint is the account URL.
pub(crate) fn start_azurite(workspace_root: &Path) -> anyhow::Result<Server> {
    let target = workspace_root.join("target");
    let azurite = install_azurite(&target)?;
    let port = free_port()?;
    let data = target.join("azurite-data");
    // Each run starts empty; a leftover directory only holds an old run's blobs.
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;
    let mut command = Command::new(&azurite);
    command
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .arg("--location")
        .arg(&data)
        .args(["--silent", "--skipApiVersionCheck"]);
    let server = spawn_and_wait(
        command,
        "azurite-blob",
        port,
        &target.join("azurite.log"),
        format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"),
    )?;
    create_azure_container(port, AZURE_TEST_CONTAINER)?;
    Ok(server)
}

/// Starts `command` (output to `log_path`) and waits until it answers HTTP on `port`.
fn spawn_and_wait(
    mut command: Command,
    name: &str,
    port: u16,
    log_path: &Path,
    endpoint: String,
) -> anyhow::Result<Server> {
    let log = std::fs::File::create(log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    // From here on Drop stops the server, also when it never becomes ready.
    let mut server = Server { endpoint, child };
    for _ in 0..READY_POLLS {
        if answers_http(port) {
            return Ok(server);
        }
        if let Some(status) = server.child.try_wait()? {
            bail!("{name} exited with {status}; see {}", log_path.display());
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    bail!(
        "{name} did not answer on port {port} within {:?}; see {}",
        POLL_INTERVAL * READY_POLLS,
        log_path.display()
    )
}

impl Drop for Server {
    fn drop(&mut self) {
        // Already exited is fine; either way reap it so no zombie is left.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `target/azurite/node_modules/.bin/azurite-blob`, installing Azurite with npm first if it is missing.
fn install_azurite(target: &Path) -> anyhow::Result<PathBuf> {
    let prefix = target.join("azurite");
    let binary = prefix.join("node_modules/.bin/azurite-blob");
    if binary.exists() {
        return Ok(binary);
    }
    std::fs::create_dir_all(&prefix)?;
    run_logged(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(AZURITE_PACKAGE),
        &target.join("azurite-install.log"),
    )
    .context("installing Azurite with npm (are node and npm installed?)")?;
    if !binary.exists() {
        bail!("npm installed Azurite but {} is missing", binary.display());
    }
    Ok(binary)
}

/// Creates `container` in Azurite with a Shared Key signed `PUT ?restype=container`
/// (object_store cannot create containers).
fn create_azure_container(port: u16, container: &str) -> anyhow::Result<()> {
    const VERSION: &str = "2021-08-06";
    let date = jiff::Timestamp::now()
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    // Path-style emulator URLs carry the account, so it appears twice in the resource.
    let string_to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{VERSION}\n/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{container}\nrestype:container"
    );
    let key = base64::engine::general_purpose::STANDARD.decode(AZURITE_KEY)?;
    let signature = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
        string_to_sign.as_bytes(),
    );
    let signature = base64::engine::general_purpose::STANDARD.encode(signature.as_ref());
    let mut stream =
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).context("connecting to Azurite")?;
    write!(
        stream,
        "PUT /{AZURITE_ACCOUNT}/{container}?restype=container HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         x-ms-date: {date}\r\nx-ms-version: {VERSION}\r\n\
         Authorization: SharedKey {AZURITE_ACCOUNT}:{signature}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    if !response.starts_with("HTTP/1.1 201") {
        bail!(
            "Azurite refused to create container {container}: {}",
            response.lines().next().unwrap_or("no answer")
        );
    }
    Ok(())
}

/// Creates `bucket` on the local S3 server with a plain, unsigned `PUT
/// /<bucket>` (moto accepts it; object_store cannot create buckets).
pub(crate) fn create_s3_bucket(endpoint: &str, bucket: &str) -> anyhow::Result<()> {
    let authority = endpoint
        .strip_prefix("http://")
        .context("the local S3 endpoint is plain http")?;
    let mut stream = TcpStream::connect(authority).context("connecting to the S3 server")?;
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    if !response.starts_with("HTTP/1.1 200") {
        bail!(
            "the S3 server refused to create bucket {bucket}: {}",
            response.lines().next().unwrap_or("no answer")
        );
    }
    Ok(())
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
pub(crate) fn free_port() -> anyhow::Result<u16> {
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
