//! Repository URLs as restic spells them, parsed into a typed [`Location`].
//!
//! Parsing is pure: no environment, no filesystem, no network. Building a
//! backend from a `Location` happens in `open`.

use std::fmt;
use std::path::PathBuf;

use crate::{Error, Result};

/// Where a repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on a local filesystem or an NFS mount (`/srv/repo`, `local:/srv/repo`).
    Local {
        /// The repository directory, as given (may be relative).
        path: PathBuf,
    },
    /// An S3 or S3-compatible bucket (`s3:https://host:port/bucket/prefix`, `s3:host/bucket`).
    S3 {
        /// `scheme://host[:port]` of the service.
        endpoint: String,
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket, without leading or trailing `/` (may be empty).
        prefix: String,
    },
    /// A Google Cloud Storage bucket (`gs:bucket:/prefix`).
    Gcs {
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket, without leading or trailing `/` (may be empty).
        prefix: String,
    },
    /// An Azure Blob Storage container (`azure:container:/prefix`).
    Azure {
        /// Container name.
        container: String,
        /// Key prefix inside the container, without leading or trailing `/` (may be empty).
        prefix: String,
    },
}

/// The AWS host restic users write for Amazon S3 itself; the regional endpoint is then
/// chosen from `AWS_DEFAULT_REGION`.
pub(crate) const AWS_S3_HOST: &str = "s3.amazonaws.com";

/// restic backends Arca does not implement: named so the error says so instead of
/// treating `sftp:host:/path` as a local directory.
const UNSUPPORTED_SCHEMES: &[&str] = &["sftp:", "rest:", "rclone:", "b2:", "swift:"];

impl Location {
    /// Parses a restic-style repository URL.
    ///
    /// Anything without a known scheme is a local path, as in restic.
    pub fn parse(url: &str) -> Result<Location> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: redact_userinfo(url),
            reason: reason.to_owned(),
        };
        if url.is_empty() {
            return Err(invalid("empty; give a path or an s3:, gs: or azure: URL"));
        }
        if url.chars().any(char::is_control) {
            return Err(invalid("contains control characters"));
        }
        if let Some(rest) = url.strip_prefix("local:") {
            if rest.is_empty() {
                return Err(invalid("local: needs a directory, e.g. local:/srv/repo"));
            }
            return Ok(Location::Local { path: rest.into() });
        }
        if let Some(rest) = url.strip_prefix("s3:") {
            return parse_s3(rest).map_err(|reason| invalid(&reason));
        }
        if let Some(rest) = url.strip_prefix("gs:") {
            let (bucket, prefix) = parse_name_and_prefix(rest, "gs:bucket:/prefix")
                .map_err(|reason| invalid(&reason))?;
            return Ok(Location::Gcs { bucket, prefix });
        }
        if let Some(rest) = url.strip_prefix("azure:") {
            let (container, prefix) = parse_name_and_prefix(rest, "azure:container:/prefix")
                .map_err(|reason| invalid(&reason))?;
            return Ok(Location::Azure { container, prefix });
        }
        if let Some(scheme) = UNSUPPORTED_SCHEMES.iter().find(|s| url.starts_with(**s)) {
            return Err(invalid(&format!(
                "the {scheme} backend is not supported by Arca; use local:, s3:, gs: or azure:"
            )));
        }
        Ok(Location::Local { path: url.into() })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local { path } => write!(f, "local:{}", path.display()),
            Location::S3 {
                endpoint,
                bucket,
                prefix,
            } => write!(f, "s3:{endpoint}/{bucket}{}", slash_prefix(prefix)),
            Location::Gcs { bucket, prefix } => write!(f, "gs:{bucket}:/{prefix}"),
            Location::Azure { container, prefix } => write!(f, "azure:{container}:/{prefix}"),
        }
    }
}

fn slash_prefix(prefix: &str) -> String {
    if prefix.is_empty() {
        String::new()
    } else {
        format!("/{prefix}")
    }
}

/// `https://host:port/bucket/prefix`, `http://…`, or `host/bucket/prefix` (https).
fn parse_s3(rest: &str) -> Result<Location, String> {
    let (scheme, after_scheme) = if let Some(r) = rest.strip_prefix("https://") {
        ("https", r)
    } else if let Some(r) = rest.strip_prefix("http://") {
        ("http", r)
    } else if rest.contains("://") {
        return Err("only http:// and https:// endpoints are supported".into());
    } else {
        ("https", rest)
    };
    if after_scheme.contains(['?', '#']) {
        return Err("query strings and fragments are not supported".into());
    }
    let (authority, path) = after_scheme
        .split_once('/')
        .ok_or("missing bucket; expected s3:https://host[:port]/bucket[/prefix]")?;
    validate_authority(authority)?;
    let path = path.trim_matches('/');
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    validate_name(bucket, "bucket")?;
    Ok(Location::S3 {
        endpoint: format!("{scheme}://{authority}"),
        bucket: bucket.to_owned(),
        prefix: normalize_prefix(prefix)?,
    })
}

fn validate_authority(authority: &str) -> Result<(), String> {
    if authority.is_empty() {
        return Err("missing host; expected s3:https://host[:port]/bucket[/prefix]".into());
    }
    if authority.contains('@') {
        return Err(
            "credentials in the URL are not supported; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                .into(),
        );
    }
    // The port is what follows the last ':' unless that ':' is inside an IPv6 literal.
    let port = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => {
            if host.is_empty() {
                return Err("missing host before the port".into());
            }
            Some(port)
        }
        _ => None,
    };
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(format!("port {port:?} is not a number from 0 to 65535"));
    }
    if authority.contains(char::is_whitespace) {
        return Err("host contains whitespace".into());
    }
    Ok(())
}

/// `name:/prefix`, `name:prefix` or just `name`.
fn parse_name_and_prefix(rest: &str, form: &str) -> Result<(String, String), String> {
    let (name, prefix) = rest.split_once(':').unwrap_or((rest, ""));
    validate_name(name, "bucket or container").map_err(|e| format!("{e}; expected {form}"))?;
    Ok((name.to_owned(), normalize_prefix(prefix)?))
}

fn validate_name(name: &str, what: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("missing {what} name"));
    }
    if name.contains(['/', ':', '?', '#', '\\']) || name.contains(char::is_whitespace) {
        return Err(format!(
            "{what} name {name:?} contains '/', ':', '?', '#', '\\' or whitespace"
        ));
    }
    Ok(())
}

/// Strips surrounding slashes and rejects segments object keys must not have.
fn normalize_prefix(prefix: &str) -> Result<String, String> {
    let prefix = prefix.trim_matches('/');
    if prefix
        .split('/')
        .any(|segment| segment == "." || segment == "..")
        && !prefix.is_empty()
    {
        return Err(format!("prefix {prefix:?} contains '.' or '..' segments"));
    }
    if prefix.contains("//") {
        return Err(format!("prefix {prefix:?} contains an empty segment"));
    }
    Ok(prefix.to_owned())
}

/// The URL with any `user:password@` removed, for error messages.
fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..]
        .find('/')
        .map_or(url.len(), |i| authority_start + i);
    match url[authority_start..authority_end].rfind('@') {
        Some(at) => format!(
            "{}<redacted>@{}",
            &url[..authority_start],
            &url[authority_start + at + 1..]
        ),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(endpoint: &str, bucket: &str, prefix: &str) -> Location {
        Location::S3 {
            endpoint: endpoint.into(),
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn restic_url_forms() {
        let cases = [
            (
                "/srv/repo",
                Location::Local {
                    path: "/srv/repo".into(),
                },
            ),
            (
                "local:/srv/repo",
                Location::Local {
                    path: "/srv/repo".into(),
                },
            ),
            (
                "relative/repo",
                Location::Local {
                    path: "relative/repo".into(),
                },
            ),
            (
                "/mnt/odd:name",
                Location::Local {
                    path: "/mnt/odd:name".into(),
                },
            ),
            (
                "s3:https://minio.example:9000/bucket/a/b",
                s3("https://minio.example:9000", "bucket", "a/b"),
            ),
            (
                "s3:http://127.0.0.1:9000/restic",
                s3("http://127.0.0.1:9000", "restic", ""),
            ),
            (
                "s3:http://127.0.0.1:9000/restic/",
                s3("http://127.0.0.1:9000", "restic", ""),
            ),
            (
                "s3:s3.amazonaws.com/bucket/prefix",
                s3("https://s3.amazonaws.com", "bucket", "prefix"),
            ),
            ("s3:http://[::1]:9000/b", s3("http://[::1]:9000", "b", "")),
            ("s3:http://[::1]/b", s3("http://[::1]", "b", "")),
            (
                "gs:bucket:/prefix/x",
                Location::Gcs {
                    bucket: "bucket".into(),
                    prefix: "prefix/x".into(),
                },
            ),
            (
                "gs:bucket:/",
                Location::Gcs {
                    bucket: "bucket".into(),
                    prefix: String::new(),
                },
            ),
            (
                "gs:bucket",
                Location::Gcs {
                    bucket: "bucket".into(),
                    prefix: String::new(),
                },
            ),
            (
                "azure:container:/prefix",
                Location::Azure {
                    container: "container".into(),
                    prefix: "prefix".into(),
                },
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(Location::parse(url).unwrap(), expected, "{url}");
        }
    }

    #[test]
    fn invalid_urls_say_why() {
        let cases = [
            ("", "empty"),
            ("local:", "needs a directory"),
            ("s3:http://host:9000", "missing bucket"),
            ("s3:http:///bucket", "missing host"),
            ("s3:http://host:port/bucket", "not a number"),
            ("s3:ftp://host/bucket", "only http:// and https://"),
            ("s3:http://host/bucket?x=1", "query strings"),
            ("s3:http://host/bucket/../x", "'..'"),
            ("s3:http://host//", "missing bucket name"),
            ("gs::/prefix", "missing bucket or container name"),
            ("azure:", "missing bucket or container name"),
            ("sftp:user@host:/srv", "not supported by Arca"),
            ("/srv/\nrepo", "control characters"),
        ];
        for (url, reason) in cases {
            let err = Location::parse(url).unwrap_err().to_string();
            assert!(err.contains(reason), "{url:?}: {err}");
        }
    }

    #[test]
    fn credentials_in_url_are_rejected_and_never_echoed() {
        let err = Location::parse("s3:https://AKIAKEY:supersecret@host/bucket")
            .unwrap_err()
            .to_string();
        assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
        assert!(!err.contains("supersecret"), "{err}");
        assert!(!err.contains("AKIAKEY"), "{err}");
    }

    #[test]
    fn display_round_trips() {
        for url in [
            "local:/srv/repo",
            "s3:https://host:9000/bucket/a/b",
            "s3:http://host/bucket",
            "gs:bucket:/p",
            "azure:c:/",
        ] {
            let location = Location::parse(url).unwrap();
            assert_eq!(
                Location::parse(&location.to_string()).unwrap(),
                location,
                "{url}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_display_reparses(url in "\\PC{0,40}") {
            if let Ok(location) = Location::parse(&url) {
                proptest::prop_assert_eq!(Location::parse(&location.to_string()).unwrap(), location);
            }
        }

        #[test]
        fn scheme_shaped_garbage_never_panics_and_reparses(
            url in "(s3:|gs:|azure:|local:|sftp:|)(https?://|ftp://|)[a-z0-9:/@\\[\\].?#%_ -]{0,30}"
        ) {
            if let Ok(location) = Location::parse(&url) {
                proptest::prop_assert_eq!(Location::parse(&location.to_string()).unwrap(), location);
            }
        }

        #[test]
        fn s3_components_survive(
            host in "[a-z0-9.-]{1,20}",
            port in proptest::option::of(0u16..),
            bucket in "[a-z0-9][a-z0-9.-]{0,30}",
            prefix in "([a-z0-9_-]{1,8}/){0,3}",
        ) {
            let authority = match port { Some(p) => format!("{host}:{p}"), None => host.clone() };
            let url = format!("s3:http://{authority}/{bucket}/{prefix}");
            let parsed = Location::parse(&url).unwrap();
            proptest::prop_assert_eq!(
                parsed,
                s3(&format!("http://{authority}"), &bucket, prefix.trim_matches('/'))
            );
        }
    }
}
