//! Live progress pushed to the controller (`ARCA_PROGRESS_URL`), so a
//! ReplicationSource's status can show how far a running Job is.
//!
//! Best effort by design: each progress line is POSTed as JSON (a
//! [`ProgressLine`]) to a plain-HTTP, in-cluster URL with short timeouts; a
//! failure is logged at debug level and never affects the run. A minimal
//! HTTP/1.1 request over `std::net` is all this needs, so no HTTP client
//! crate is pulled in for it.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::progress::{ProgressLine, ProgressSink};
use crate::{Error, Result};

/// How long connecting, sending or waiting for the answer may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Where progress goes: `http://host[:port]/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget {
    /// Host name or address.
    pub host: String,
    /// Port (80 when not given).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl std::str::FromStr for PushTarget {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self> {
        let bad = |why: &str| Error::config("ARCA_PROGRESS_URL", format!("{url:?}: {why}"));
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// URLs (an in-cluster service) are supported"))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("expected http://host[:port]/path"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (
                host,
                port.parse().map_err(|_| bad("the port is not a number"))?,
            ),
            _ => (authority, 80),
        };
        Ok(PushTarget {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            path: if path.is_empty() {
                "/".into()
            } else {
                path.to_owned()
            },
        })
    }
}

impl PushTarget {
    /// POSTs `body` (JSON); the HTTP status code of the answer.
    fn post(&self, body: &str) -> std::io::Result<u16> {
        let address = (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("the host name has no address"))?;
        let mut stream = TcpStream::connect_timeout(&address, TIMEOUT)?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        write!(
            stream,
            "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.path,
            self.host,
            self.port,
            body.len()
        )?;
        let mut head = [0u8; 64];
        let read = stream.read(&mut head)?;
        let status = std::str::from_utf8(&head[..read])
            .ok()
            .and_then(|text| text.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::other("not an HTTP answer"))?;
        Ok(status)
    }
}

/// A sink that passes everything on to `inner` and also pushes each
/// progress line to a [`PushTarget`].
pub struct ProgressPush {
    target: PushTarget,
    inner: Arc<dyn ProgressSink>,
}

impl ProgressPush {
    /// Pushes to `target`, logging through `inner`.
    pub fn new(target: PushTarget, inner: Arc<dyn ProgressSink>) -> Self {
        ProgressPush { target, inner }
    }
}

impl ProgressSink for ProgressPush {
    fn line(&self, line: &ProgressLine) {
        self.inner.line(line);
        let body = serde_json::to_string(line).expect("a progress line serialises");
        match self.target.post(&body) {
            Ok(status) if (200..300).contains(&status) => {}
            Ok(status) => tracing::debug!(status, "the progress receiver refused an update"),
            Err(err) => tracing::debug!(%err, "cannot push progress"),
        }
    }

    fn warning(&self, path: &Path, message: &str) {
        self.inner.warning(path, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;
    use std::sync::Mutex;

    #[test]
    fn urls_parse_and_others_are_refused() {
        let target: PushTarget = "http://arca-controller.arca:8080/progress/ns/rs/app"
            .parse()
            .unwrap();
        assert_eq!(
            target,
            PushTarget {
                host: "arca-controller.arca".into(),
                port: 8080,
                path: "/progress/ns/rs/app".into()
            }
        );
        let bare: PushTarget = "http://10.0.0.1".parse().unwrap();
        assert_eq!((bare.port, bare.path.as_str()), (80, "/"));
        let v6: PushTarget = "http://[::1]:9/p".parse().unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 9));
        for bad in [
            "https://x/p",
            "http://",
            "http://user:pw@x/p",
            "http://x:port/p",
            "x/p",
        ] {
            let err = bad.parse::<PushTarget>().unwrap_err();
            assert!(
                err.to_string().contains("ARCA_PROGRESS_URL"),
                "{bad}: {err}"
            );
        }
    }

    #[derive(Default)]
    struct Lines(Mutex<Vec<ProgressLine>>);

    impl ProgressSink for Lines {
        fn line(&self, line: &ProgressLine) {
            self.0.lock().unwrap().push(line.clone());
        }
        fn warning(&self, _: &Path, _: &str) {}
    }

    fn sample() -> ProgressLine {
        ProgressLine {
            action: "backup",
            seconds_elapsed: 3,
            total_files: 10,
            files_done: 4,
            total_bytes: 1000,
            bytes_done: 400,
            warnings: 0,
        }
    }

    #[test]
    fn each_line_is_posted_as_json_and_still_logged() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = std::io::BufReader::new(stream);
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
                head.push(line);
            }
            let length: usize = head
                .iter()
                .find_map(|h| h.strip_prefix("Content-Length: "))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            reader
                .get_mut()
                .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .unwrap();
            (head[0].clone(), String::from_utf8(body).unwrap())
        });
        let logged = Arc::new(Lines::default());
        let target = format!("http://127.0.0.1:{port}/progress/ns/app")
            .parse()
            .unwrap();
        let push = ProgressPush::new(target, logged.clone());
        push.line(&sample());
        let (request, body) = server.join().unwrap();
        assert_eq!(request, "POST /progress/ns/app HTTP/1.1\r\n");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["bytes_done"], 400);
        assert_eq!(json["action"], "backup");
        assert_eq!(*logged.0.lock().unwrap(), [sample()]);
    }

    #[test]
    fn an_unreachable_receiver_changes_nothing() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let logged = Arc::new(Lines::default());
        let target = format!("http://127.0.0.1:{port}/p").parse().unwrap();
        ProgressPush::new(target, logged.clone()).line(&sample());
        assert_eq!(logged.0.lock().unwrap().len(), 1);
    }
}
