//! Building object_store clients from a [`Location`], the environment and [`StoreOptions`].
//!
//! The environment is a function argument so tests never touch the process
//! environment. Secret values read here are returned alongside the store so error
//! messages can be scrubbed of them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::{Certificate, ClientOptions, ObjectStore, RetryConfig};

use crate::location::AWS_S3_HOST;
use crate::{Error, Result, StoreOptions};

/// Looks up an environment variable; `None` when unset or empty.
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn var(env: EnvLookup<'_>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

/// A built client plus the secret strings it was given.
pub(crate) struct BuiltStore {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) secrets: Vec<String>,
}

/// Retries belong to `RetryBackend`, so every request object_store sends is one we count.
fn no_retries() -> RetryConfig {
    RetryConfig {
        max_retries: 0,
        ..RetryConfig::default()
    }
}

/// HTTP client settings shared by every cloud backend.
pub(crate) fn client_options(
    url: &str,
    options: &StoreOptions,
    allow_http: bool,
) -> Result<ClientOptions> {
    // A 16 MiB object on a slow uplink needs far longer than the 30 s default.
    let mut client = ClientOptions::new()
        .with_allow_http(allow_http)
        .with_timeout(Duration::from_secs(600))
        .with_connect_timeout(Duration::from_secs(15));
    if let Some(connections) = options.connections {
        client = client.with_pool_max_idle_per_host(connections);
    }
    if let Some(path) = &options.cacert {
        for certificate in read_ca_bundle(url, path)? {
            client = client.with_root_certificate(certificate);
        }
    }
    Ok(client)
}

fn read_ca_bundle(url: &str, path: &Path) -> Result<Vec<Certificate>> {
    let invalid = |reason: String| Error::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    let pem = std::fs::read(path)
        .map_err(|err| invalid(format!("cannot read CA bundle {}: {err}", path.display())))?;
    let certificates = Certificate::from_pem_bundle(&pem).map_err(|err| {
        invalid(format!(
            "CA bundle {} is not valid PEM: {err}",
            path.display()
        ))
    })?;
    if certificates.is_empty() {
        return Err(invalid(format!(
            "CA bundle {} holds no certificates",
            path.display()
        )));
    }
    Ok(certificates)
}

/// Static AWS credentials.
#[derive(PartialEq, Eq)]
pub(crate) struct AwsKeys {
    pub(crate) key_id: String,
    pub(crate) secret: String,
    pub(crate) token: Option<String>,
}

impl std::fmt::Debug for AwsKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsKeys")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Keys from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, else from the shared
/// credentials file's `AWS_PROFILE` (or `default`) section.
pub(crate) fn aws_keys(env: EnvLookup<'_>) -> Option<AwsKeys> {
    if let (Some(key_id), Some(secret)) = (
        var(env, "AWS_ACCESS_KEY_ID"),
        var(env, "AWS_SECRET_ACCESS_KEY"),
    ) {
        return Some(AwsKeys {
            key_id,
            secret,
            token: var(env, "AWS_SESSION_TOKEN"),
        });
    }
    let file = var(env, "AWS_SHARED_CREDENTIALS_FILE")
        .or_else(|| var(env, "HOME").map(|home| format!("{home}/.aws/credentials")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let profile = var(env, "AWS_PROFILE").unwrap_or_else(|| "default".to_owned());
    profile_keys(&text, &profile)
}

/// Reads one profile from an AWS shared credentials file (INI).
pub(crate) fn profile_keys(text: &str, profile: &str) -> Option<AwsKeys> {
    let mut in_profile = false;
    let (mut key_id, mut secret, mut token) = (None, None, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let section = section.trim();
            in_profile = section == profile
                || section.strip_prefix("profile ").map(str::trim) == Some(profile);
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((name, value)) = line.split_once('=') {
            let value = Some(value.trim().to_owned());
            match name.trim() {
                "aws_access_key_id" => key_id = value,
                "aws_secret_access_key" => secret = value,
                "aws_session_token" => token = value,
                _ => {}
            }
        }
    }
    Some(AwsKeys {
        key_id: key_id?,
        secret: secret?,
        token,
    })
}

pub(crate) fn s3(
    url: &str,
    endpoint: &str,
    bucket: &str,
    options: &StoreOptions,
    env: EnvLookup<'_>,
) -> Result<BuiltStore> {
    let region = var(env, "AWS_DEFAULT_REGION")
        .or_else(|| var(env, "AWS_REGION"))
        .or_else(|| region_of_aws_endpoint(endpoint))
        .unwrap_or_else(|| "us-east-1".to_owned());
    let is_aws = endpoint == format!("https://{AWS_S3_HOST}");
    let allow_http = endpoint.starts_with("http://");
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(region)
        .with_retry(no_retries())
        .with_client_options(client_options(url, options, allow_http)?);
    if !is_aws {
        // MinIO, Ceph RGW and most S3-compatible services want path-style requests.
        builder = builder
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false);
    }
    let mut secrets = Vec::new();
    match aws_keys(env) {
        Some(keys) => {
            secrets.push(keys.secret.clone());
            builder = builder
                .with_access_key_id(keys.key_id)
                .with_secret_access_key(keys.secret);
            if let Some(token) = keys.token {
                secrets.push(token.clone());
                builder = builder.with_token(token);
            }
        }
        // Without keys object_store tries web identity (EKS IRSA) and instance
        // metadata, which only exist on AWS.
        None if !is_aws && var(env, "AWS_WEB_IDENTITY_TOKEN_FILE").is_none() => {
            return Err(Error::InvalidUrl {
                url: url.to_owned(),
                reason: "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a credentials file".into(),
            });
        }
        None => {}
    }
    let store = builder.build().map_err(|err| Error::InvalidUrl {
        url: url.to_owned(),
        reason: err.to_string(),
    })?;
    Ok(BuiltStore {
        store: Arc::new(store),
        secrets,
    })
}

/// The region named by a regional AWS endpoint (`https://s3.eu-west-1.amazonaws.com`,
/// or the older `s3-eu-west-1` form), which requests must be signed for.
fn region_of_aws_endpoint(endpoint: &str) -> Option<String> {
    let host = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, host)| host);
    let host = host.split(':').next()?;
    let region = host
        .strip_suffix(".amazonaws.com")?
        .strip_prefix("s3.")
        .or_else(|| host.strip_prefix("s3-"))?;
    let region = region.strip_suffix(".amazonaws.com").unwrap_or(region);
    (!region.is_empty() && !region.contains('.')).then(|| region.to_owned())
}

pub(crate) fn gcs(
    url: &str,
    bucket: &str,
    options: &StoreOptions,
    env: EnvLookup<'_>,
) -> Result<BuiltStore> {
    let mut builder = GoogleCloudStorageBuilder::new()
        .with_bucket_name(bucket)
        .with_retry(no_retries())
        .with_client_options(client_options(url, options, false)?);
    // GOOGLE_PROJECT_ID is only needed to create buckets, which Arca never does.
    if let Some(path) = var(env, "GOOGLE_APPLICATION_CREDENTIALS") {
        builder = builder.with_application_credentials(path);
    }
    let store = builder.build().map_err(|err| Error::InvalidUrl {
        url: url.to_owned(),
        reason: format!("{err}; set GOOGLE_APPLICATION_CREDENTIALS to a service account key file"),
    })?;
    Ok(BuiltStore {
        store: Arc::new(store),
        secrets: Vec::new(),
    })
}

pub(crate) fn azure(
    url: &str,
    container: &str,
    options: &StoreOptions,
    env: EnvLookup<'_>,
) -> Result<BuiltStore> {
    let account = var(env, "AZURE_ACCOUNT_NAME").ok_or_else(|| Error::InvalidUrl {
        url: url.to_owned(),
        reason: "AZURE_ACCOUNT_NAME is not set".into(),
    })?;
    let mut builder = MicrosoftAzureBuilder::new()
        .with_account(account)
        .with_container_name(container)
        .with_retry(no_retries())
        .with_client_options(client_options(url, options, false)?);
    let mut secrets = Vec::new();
    if let Some(key) = var(env, "AZURE_ACCOUNT_KEY") {
        secrets.push(key.clone());
        builder = builder.with_access_key(key);
    } else if let Some(sas) = var(env, "AZURE_ACCOUNT_SAS") {
        let sas = sas.trim_start_matches('?').to_owned();
        secrets.push(sas.clone());
        builder = builder.with_config(AzureConfigKey::SasKey, sas);
    } else {
        return Err(Error::InvalidUrl {
            url: url.to_owned(),
            reason: "no Azure credentials: set AZURE_ACCOUNT_KEY or AZURE_ACCOUNT_SAS".into(),
        });
    }
    let store = builder.build().map_err(|err| Error::InvalidUrl {
        url: url.to_owned(),
        reason: err.to_string(),
    })?;
    Ok(BuiltStore {
        store: Arc::new(store),
        secrets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn env_keys_win_over_profiles() {
        let env = env_of(&[
            ("AWS_ACCESS_KEY_ID", "AKIA1"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
            ("AWS_SESSION_TOKEN", "tok"),
            ("AWS_PROFILE", "other"),
        ]);
        let keys = aws_keys(&env).unwrap();
        assert_eq!(keys.key_id, "AKIA1");
        assert_eq!(keys.secret, "s3cr3t");
        assert_eq!(keys.token.as_deref(), Some("tok"));
        assert!(!format!("{keys:?}").contains("s3cr3t"));
    }

    #[test]
    fn profiles_are_read_from_the_credentials_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n\n# comment\n[backup]\naws_access_key_id=B\naws_secret_access_key=BS\naws_session_token=BT\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let default = aws_keys(&env_of(&[("AWS_SHARED_CREDENTIALS_FILE", path)])).unwrap();
        assert_eq!(
            (
                default.key_id.as_str(),
                default.secret.as_str(),
                default.token
            ),
            ("D", "DS", None)
        );
        let backup = aws_keys(&env_of(&[
            ("AWS_SHARED_CREDENTIALS_FILE", path),
            ("AWS_PROFILE", "backup"),
        ]))
        .unwrap();
        assert_eq!(backup.token.as_deref(), Some("BT"));
        assert!(
            aws_keys(&env_of(&[
                ("AWS_SHARED_CREDENTIALS_FILE", path),
                ("AWS_PROFILE", "none")
            ]))
            .is_none()
        );
    }

    #[test]
    fn s3_builds_with_keys_and_refuses_without() {
        let options = StoreOptions::default();
        let env = env_of(&[
            ("AWS_ACCESS_KEY_ID", "AKIA1"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
        ]);
        let built = s3(
            "s3:http://127.0.0.1:9/b",
            "http://127.0.0.1:9",
            "b",
            &options,
            &env,
        )
        .unwrap();
        assert_eq!(built.secrets, vec!["s3cr3t".to_owned()]);
        let err = s3(
            "s3:http://127.0.0.1:9/b",
            "http://127.0.0.1:9",
            "b",
            &options,
            &env_of(&[]),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("AWS_ACCESS_KEY_ID"), "{err}");
    }

    #[test]
    fn regions_are_read_from_aws_endpoints() {
        let cases = [
            ("https://s3.eu-west-1.amazonaws.com", Some("eu-west-1")),
            ("https://s3-us-west-2.amazonaws.com", Some("us-west-2")),
            ("https://s3.amazonaws.com", None),
            ("https://minio.example:9000", None),
            ("http://s3.local.example.amazonaws.com.evil", None),
        ];
        for (endpoint, region) in cases {
            assert_eq!(
                region_of_aws_endpoint(endpoint).as_deref(),
                region,
                "{endpoint}"
            );
        }
    }

    #[test]
    fn azure_needs_an_account_and_a_key() {
        let options = StoreOptions::default();
        let err = azure("azure:c:/", "c", &options, &env_of(&[]))
            .err()
            .unwrap();
        assert!(err.to_string().contains("AZURE_ACCOUNT_NAME"), "{err}");
        let err = azure(
            "azure:c:/",
            "c",
            &options,
            &env_of(&[("AZURE_ACCOUNT_NAME", "acct")]),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("AZURE_ACCOUNT_KEY"), "{err}");
        let built = azure(
            "azure:c:/",
            "c",
            &options,
            &env_of(&[
                ("AZURE_ACCOUNT_NAME", "acct"),
                ("AZURE_ACCOUNT_SAS", "?sv=1&sig=abc"),
            ]),
        )
        .unwrap();
        assert_eq!(built.secrets, vec!["sv=1&sig=abc".to_owned()]);
    }

    #[test]
    fn gcs_reports_unreadable_credentials() {
        let options = StoreOptions::default();
        let result = gcs(
            "gs:b:/",
            "b",
            &options,
            &env_of(&[("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")]),
        );
        let err = result.err().unwrap();
        assert!(
            err.to_string().contains("GOOGLE_APPLICATION_CREDENTIALS"),
            "{err}"
        );
    }

    #[test]
    fn ca_bundle_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = StoreOptions {
            cacert: Some(dir.path().join("missing.pem")),
            ..StoreOptions::default()
        };
        let err = client_options("s3:x", &options, false).err().unwrap();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        std::fs::write(dir.path().join("empty.pem"), "not a certificate").unwrap();
        options.cacert = Some(dir.path().join("empty.pem"));
        let err = client_options("s3:x", &options, false).err().unwrap();
        assert!(err.to_string().contains("empty.pem"), "{err}");
    }
}
