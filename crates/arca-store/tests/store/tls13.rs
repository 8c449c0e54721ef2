//! `StoreOptions::require_tls13` against a real server that speaks only
//! TLS 1.2 (`openssl s_server -tls1_2`, with a throwaway CA the client is
//! told to trust): without the option the request gets through TLS to the
//! server's HTTP answer; with it, the handshake is refused and nothing is
//! sent. Skipped, with a note, where no `openssl` command exists.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use std::time::Duration;

use arca_store::{RetryPolicy, StoreOptions};

fn test_env(name: &str) -> Option<String> {
    match name {
        "AWS_ACCESS_KEY_ID" => Some("test".into()),
        "AWS_SECRET_ACCESS_KEY" => Some("test-secret-value".into()),
        "AWS_DEFAULT_REGION" => Some("us-east-1".into()),
        _ => None,
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA, and a certificate for 127.0.0.1 it signed, in `dir`.
fn make_certificates(dir: &Path) {
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "1", "-subj", "/CN=arca-test-ca"];
    ca.extend(key);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(dir, &ca);
    let mut request = vec!["req", "-subj", "/CN=127.0.0.1"];
    request.extend(key);
    request.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(dir, &request);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
}

/// The TLS 1.2-only server; killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `openssl s_server` on a free port and waits for its `ACCEPT` line.
fn start_tls12_server(dir: &Path) -> (Server, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let accept = format!("127.0.0.1:{port}");
    let mut child = Command::new("openssl")
        .args(["s_server", "-tls1_2", "-www", "-accept", &accept])
        .args(["-cert", "server.pem", "-key", "server.key"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start openssl s_server");
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("ACCEPT") => break,
            Some(Ok(_)) => {}
            other => panic!("openssl s_server did not start: {other:?}"),
        }
    }
    // The rest of its output is not needed; keep the pipe drained.
    std::thread::spawn(move || lines.for_each(drop));
    (server, port)
}

#[tokio::test]
async fn a_tls12_only_server_is_refused_when_tls13_is_required() {
    if Command::new("openssl").arg("version").output().is_err() {
        #[allow(clippy::print_stderr, reason = "a skipped test must say so")]
        {
            eprintln!("skipping: no openssl command to run a TLS 1.2 server with");
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let (_server, port) = start_tls12_server(dir.path());
    let url = format!("s3:https://127.0.0.1:{port}/bucket/repo");
    let mut options = StoreOptions::default();
    options.cacert = Some(dir.path().join("ca.pem"));
    // A refused handshake is a failure to report, not to retry.
    options.retry = RetryPolicy::new(0, Duration::ZERO, Duration::ZERO);

    // A GET: `s_server -www` answers nothing else.
    let get = |options: &StoreOptions| {
        let store = arca_store::open_with_env(&url, options, &test_env).unwrap();
        async move { store.backend.get("config").await }
    };
    // TLS 1.2 is accepted: the request reaches the server, whose answer (an
    // HTML status page without the headers S3 sends) is read and rejected.
    let tls12 = format!("{:?}", get(&options).await);
    assert!(tls12.contains("missing from response"), "{tls12}");

    options.require_tls13 = true;
    let refused = get(&options)
        .await
        .expect_err("a TLS 1.2 handshake must fail");
    let message = format!("{refused:?}");
    assert!(message.contains("ProtocolVersion"), "{message}");
}
