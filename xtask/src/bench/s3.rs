//! Repositories on the local S3 server of `crate::services` (moto): one bucket
//! per repository, created with a raw HTTP PUT (moto accepts unsigned
//! requests), and sized by listing the bucket.

use std::io::{Read, Write};
use std::net::TcpStream;

use anyhow::{Context, Result, bail};

use crate::process;
use crate::services::{self, S3Server};

/// Credentials moto accepts; both tools read them from the environment.
const CREDENTIALS: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_DEFAULT_REGION", "us-east-1"),
];

/// A running server; stopped when dropped.
pub(super) struct Server {
    server: S3Server,
}

impl Server {
    /// Starts the server (installing moto on first use).
    pub(super) fn start() -> Result<Self> {
        Ok(Self {
            server: services::start(&process::project_root())?,
        })
    }

    /// A new bucket named after `name`: the restic-style repository URL and the
    /// credentials environment.
    pub(super) fn repository(&self, name: &str) -> Result<(String, Vec<(String, String)>)> {
        let bucket = format!("bench-{name}");
        let response = self.request("PUT", &format!("/{bucket}"))?;
        if !response.starts_with("HTTP/1.1 200") {
            let status = response.lines().next().unwrap_or_default();
            bail!(
                "creating bucket {bucket} on {} failed: {status}",
                self.server.endpoint
            );
        }
        let env = CREDENTIALS
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()));
        Ok((
            format!("s3:{}/{bucket}", self.server.endpoint),
            env.collect(),
        ))
    }

    /// Sum of the object sizes in the bucket of the repository URL `repo`.
    pub(super) fn repository_bytes(&self, repo: &str) -> Result<u64> {
        Ok(self.objects(repo)?.iter().map(|(_, size)| size).sum())
    }

    /// Every object in the bucket of the repository URL `repo`: key and size.
    pub(super) fn objects(&self, repo: &str) -> Result<Vec<(String, u64)>> {
        let bucket = bucket_of(repo)?;
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/{bucket}?list-type=2");
            if let Some(token) = &token {
                path.push_str(&format!("&continuation-token={}", percent_encode(token)));
            }
            let response = self.request("GET", &path)?;
            if !response.starts_with("HTTP/1.1 200") {
                bail!(
                    "listing bucket {bucket} failed: {}",
                    response.lines().next().unwrap_or_default()
                );
            }
            for contents in xml_values(&response, "Contents") {
                let key = xml_values(contents, "Key").first().map(|k| k.to_string());
                let size = xml_values(contents, "Size")
                    .first()
                    .and_then(|size| size.parse::<u64>().ok());
                match (key, size) {
                    (Some(key), Some(size)) => objects.push((key, size)),
                    _ => bail!("listing bucket {bucket}: an entry without key or size"),
                }
            }
            token = xml_values(&response, "NextContinuationToken")
                .first()
                .map(|token| token.to_string());
            if token.is_none() {
                return Ok(objects);
            }
        }
    }

    /// The URL of object `key` in the bucket of the repository URL `repo`.
    pub(super) fn object_url(&self, repo: &str, key: &str) -> Result<String> {
        let encoded: Vec<String> = key.split('/').map(percent_encode).collect();
        Ok(format!(
            "{}/{}/{}",
            self.server.endpoint,
            bucket_of(repo)?,
            encoded.join("/")
        ))
    }

    /// curl's `--user` for SigV4-signed requests with the credentials moto accepts.
    pub(super) fn curl_user() -> String {
        format!("{}:{}", CREDENTIALS[0].1, CREDENTIALS[1].1)
    }

    /// The server's `http://host:port`.
    pub(super) fn endpoint(&self) -> &str {
        &self.server.endpoint
    }

    fn host(&self) -> &str {
        self.server.endpoint.trim_start_matches("http://")
    }

    /// One HTTP/1.1 request without a body; the whole response as text.
    fn request(&self, method: &str, path: &str) -> Result<String> {
        let host = self.host();
        let mut stream =
            TcpStream::connect(host).with_context(|| format!("connecting to S3 at {host}"))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .with_context(|| format!("reading from S3 at {host}"))?;
        Ok(response)
    }
}

/// The bucket of a repository URL `s3:http://host:port/bucket`.
fn bucket_of(repo: &str) -> Result<&str> {
    repo.rsplit('/')
        .next()
        .filter(|bucket| !bucket.is_empty())
        .context("repository URL without a bucket")
}

/// The text inside every `<tag>...</tag>` of an XML document.
fn xml_values<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(open.as_str())
        .skip(1)
        .filter_map(|rest| rest.split_once(close.as_str()).map(|(value, _)| value))
        .collect()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_response_values_and_token_encoding() {
        let xml = "<ListBucketResult><Contents><Key>a</Key><Size>10</Size></Contents>\
                   <Contents><Size>32</Size></Contents><NextContinuationToken>x/y+z=</NextContinuationToken></ListBucketResult>";
        assert_eq!(xml_values(xml, "Size"), ["10", "32"]);
        assert_eq!(
            xml_values(xml, "Contents")[0],
            "<Key>a</Key><Size>10</Size>"
        );
        assert_eq!(
            bucket_of("s3:http://127.0.0.1:5555/bench-rto").unwrap(),
            "bench-rto"
        );
        assert!(bucket_of("s3:http://127.0.0.1:5555/").is_err());
        assert_eq!(xml_values(xml, "NextContinuationToken"), ["x/y+z="]);
        assert!(xml_values(xml, "Missing").is_empty());
        assert_eq!(percent_encode("x/y+z="), "x%2Fy%2Bz%3D");
    }
}
