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

/// A 16 MiB object on a slow uplink needs far longer than the 30 s default.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// HTTP client settings shared by every cloud backend.
pub(crate) fn client_options(
    url: &str,
    options: &StoreOptions,
    allow_http: bool,
) -> Result<ClientOptions> {
    let mut client = ClientOptions::new()
        .with_allow_http(allow_http)
        .with_timeout(REQUEST_TIMEOUT)
        .with_connect_timeout(CONNECT_TIMEOUT);
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

/// The HTTP client of a store opened with [`StoreOptions::require_tls13`].
///
/// object_store's [`ClientOptions`] cannot restrict the TLS version, so the
/// store gets its own reqwest client through
/// [`object_store::client::HttpConnector`], built with the same settings as
/// [`client_options`] plus TLS 1.3 as the minimum (rustls then offers and
/// accepts nothing older) and https only unless plain http is allowed.
#[derive(Debug)]
pub(crate) struct Tls13Connector {
    client: reqwest::Client,
}

impl object_store::client::HttpConnector for Tls13Connector {
    fn connect(&self, _: &ClientOptions) -> object_store::Result<object_store::client::HttpClient> {
        Ok(object_store::client::HttpClient::new(self.client.clone()))
    }
}

/// The TLS 1.3 connector when `options` require it; `http` says whether the
/// endpoint is plain http, which is then refused unless `options.allow_http`.
pub(crate) fn tls13_connector(
    url: &str,
    options: &StoreOptions,
    http: bool,
) -> Result<Option<Tls13Connector>> {
    if !options.require_tls13 {
        return Ok(None);
    }
    let invalid = |reason: String| Error::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    if http && !options.allow_http {
        return Err(invalid(
            "TLS 1.3 is required but the endpoint is plain http; use https, or allow plain \
             http explicitly (--allow-http / ARCA_ALLOW_HTTP) for a local test server"
                .into(),
        ));
    }
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .min_tls_version(reqwest::tls::Version::TLS_1_3)
        .https_only(!http)
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(connections) = options.connections {
        builder = builder.pool_max_idle_per_host(connections);
    }
    if let Some(path) = &options.cacert {
        // Already checked by `read_ca_bundle` (client_options runs first).
        let pem = std::fs::read(path)
            .map_err(|err| invalid(format!("cannot read CA bundle {}: {err}", path.display())))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|err| invalid(format!("CA bundle {}: {err}", path.display())))?;
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    let client = builder
        .build()
        .map_err(|err| invalid(format!("cannot build a TLS 1.3 client: {err}")))?;
    Ok(Some(Tls13Connector { client }))
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
    if let Some(connector) = tls13_connector(url, options, allow_http)? {
        builder = builder.with_http_connector(connector);
    }
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

/// Names the environment variable that overrides the GCS endpoint.
pub(crate) const GCS_ENDPOINT_VAR: &str = "ARCA_GCS_ENDPOINT";
/// Names the environment variable that overrides the Azure Blob account URL.
pub(crate) const AZURE_ENDPOINT_VAR: &str = "ARCA_AZURE_ENDPOINT";

/// An endpoint override from `variable`: an `https://` URL, or `http://` when
/// the user wrote that scheme (the only way Arca ever talks plain http to a
/// cloud store). Returns the URL without a trailing `/` and whether it is http.
fn endpoint_override(url: &str, variable: &str, value: &str) -> Result<(String, bool)> {
    let invalid = |reason: String| Error::InvalidUrl {
        url: url.to_owned(),
        reason: format!("{variable}={value:?}: {reason}"),
    };
    let (allow_http, rest) = if let Some(rest) = value.strip_prefix("https://") {
        (false, rest)
    } else if let Some(rest) = value.strip_prefix("http://") {
        (true, rest)
    } else {
        return Err(invalid(
            "an endpoint override must start with https:// (or http://, to allow plain http)"
                .into(),
        ));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') || value.contains(['?', '#']) {
        return Err(invalid(
            "expected scheme://host[:port][/path], without credentials, query or fragment".into(),
        ));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("contains whitespace".into()));
    }
    Ok((value.trim_end_matches('/').to_owned(), allow_http))
}

pub(crate) fn gcs(
    url: &str,
    bucket: &str,
    options: &StoreOptions,
    env: EnvLookup<'_>,
) -> Result<BuiltStore> {
    let endpoint = var(env, GCS_ENDPOINT_VAR)
        .map(|value| endpoint_override(url, GCS_ENDPOINT_VAR, &value))
        .transpose()?;
    let allow_http = endpoint.as_ref().is_some_and(|(_, http)| *http);
    let mut builder = GoogleCloudStorageBuilder::new()
        .with_bucket_name(bucket)
        .with_retry(no_retries())
        .with_client_options(client_options(url, options, allow_http)?);
    if let Some(connector) = tls13_connector(url, options, allow_http)? {
        builder = builder.with_http_connector(connector);
    }
    let mut secrets = Vec::new();
    let credentials = var(env, "GOOGLE_APPLICATION_CREDENTIALS");
    match (endpoint, credentials) {
        // object_store takes another base URL only from a service account key.
        (Some((endpoint, _)), Some(path)) => {
            let key = service_account_with_endpoint(url, &path, &endpoint)?;
            secrets.push(key.private_key);
            builder = builder.with_service_account_key(key.json);
        }
        // An emulator or a gateway that does not authenticate: no OAuth at all.
        (Some((endpoint, _)), None) => {
            let key = serde_json::json!({
                "gcs_base_url": endpoint,
                "disable_oauth": true,
                "client_email": "",
                "private_key": "",
                "private_key_id": "",
            });
            builder = builder.with_service_account_key(key.to_string());
        }
        // GOOGLE_PROJECT_ID is only needed to create buckets, which Arca never does.
        (None, Some(path)) => builder = builder.with_application_credentials(path),
        (None, None) => {}
    }
    let store = builder.build().map_err(|err| Error::InvalidUrl {
        url: url.to_owned(),
        reason: format!("{err}; set GOOGLE_APPLICATION_CREDENTIALS to a service account key file"),
    })?;
    Ok(BuiltStore {
        store: Arc::new(store),
        secrets,
    })
}

/// A service account key file's JSON with `gcs_base_url` set to `endpoint`,
/// and its private key (a secret to scrub from messages).
struct EndpointKey {
    json: String,
    private_key: String,
}

fn service_account_with_endpoint(url: &str, path: &str, endpoint: &str) -> Result<EndpointKey> {
    let invalid = |reason: String| Error::InvalidUrl {
        url: url.to_owned(),
        reason: format!("GOOGLE_APPLICATION_CREDENTIALS={path}: {reason}"),
    };
    let text = std::fs::read_to_string(path).map_err(|err| invalid(format!("{err}")))?;
    let mut key: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
        // serde_json's message names a position, never the content.
        .map_err(|err| invalid(format!("not a JSON object: {err}")))?;
    if key.get("type").and_then(|t| t.as_str()) != Some("service_account") {
        return Err(invalid(format!(
            "with {GCS_ENDPOINT_VAR} the credentials must be a service account key file"
        )));
    }
    let private_key = key
        .get("private_key")
        .and_then(|k| k.as_str())
        .unwrap_or_default()
        .to_owned();
    key.insert("gcs_base_url".into(), endpoint.into());
    Ok(EndpointKey {
        json: serde_json::Value::Object(key).to_string(),
        private_key,
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
    // restic's AZURE_ENDPOINT_SUFFIX (sovereign clouds, Azure Stack Hub) or a
    // whole account URL (Azurite, gateways, private clouds).
    let endpoint = match (
        var(env, AZURE_ENDPOINT_VAR),
        var(env, "AZURE_ENDPOINT_SUFFIX"),
    ) {
        (Some(value), _) => Some(endpoint_override(url, AZURE_ENDPOINT_VAR, &value)?),
        (None, Some(suffix)) => Some(endpoint_override(
            url,
            "AZURE_ENDPOINT_SUFFIX",
            &format!("https://{account}.blob.{}", suffix.trim_matches(['.', '/'])),
        )?),
        (None, None) => None,
    };
    let allow_http = endpoint.as_ref().is_some_and(|(_, http)| *http);
    let mut builder = MicrosoftAzureBuilder::new()
        .with_account(account)
        .with_container_name(container)
        .with_retry(no_retries())
        .with_client_options(client_options(url, options, allow_http)?);
    if let Some(connector) = tls13_connector(url, options, allow_http)? {
        builder = builder.with_http_connector(connector);
    }
    if let Some((endpoint, _)) = endpoint {
        builder = builder.with_endpoint(endpoint);
    }
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
    fn endpoint_overrides_need_a_scheme_and_say_if_http() {
        let ok = |value| endpoint_override("gs:b", GCS_ENDPOINT_VAR, value).unwrap();
        assert_eq!(
            ok("https://gw.example:8443/"),
            ("https://gw.example:8443".to_owned(), false)
        );
        assert_eq!(
            ok("http://127.0.0.1:10000/devstoreaccount1"),
            ("http://127.0.0.1:10000/devstoreaccount1".to_owned(), true)
        );
        for bad in [
            "gw.example:8443",
            "ftp://gw.example",
            "https://",
            "https://user:pw@gw.example",
            "https://gw.example/?x=1",
        ] {
            let err = endpoint_override("gs:b", GCS_ENDPOINT_VAR, bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains(GCS_ENDPOINT_VAR), "{bad}: {err}");
        }
    }

    #[test]
    fn endpoint_overrides_build_clients() {
        let options = StoreOptions::default();
        gcs(
            "gs:b:/",
            "b",
            &options,
            &env_of(&[(GCS_ENDPOINT_VAR, "http://127.0.0.1:4443")]),
        )
        .unwrap();
        for (name, value) in [
            (AZURE_ENDPOINT_VAR, "http://127.0.0.1:10000/acct"),
            ("AZURE_ENDPOINT_SUFFIX", "core.chinacloudapi.cn"),
        ] {
            let pairs = [
                ("AZURE_ACCOUNT_NAME", "acct"),
                ("AZURE_ACCOUNT_KEY", "a2V5"),
                (name, value),
            ];
            let env = env_of(&pairs);
            azure("azure:c:/", "c", &options, &env).unwrap();
        }
        let pairs = [
            ("AZURE_ACCOUNT_NAME", "acct"),
            ("AZURE_ACCOUNT_KEY", "a2V5"),
            (AZURE_ENDPOINT_VAR, "127.0.0.1:10000"),
        ];
        let env = env_of(&pairs);
        let err = azure("azure:c:/", "c", &options, &env).err().unwrap();
        assert!(err.to_string().contains("https://"), "{err}");
    }

    #[test]
    fn gcs_endpoint_with_credentials_needs_a_service_account_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("user.json");
        std::fs::write(
            &file,
            r#"{"type": "authorized_user", "refresh_token": "hunter2"}"#,
        )
        .unwrap();
        let err = gcs(
            "gs:b:/",
            "b",
            &StoreOptions::default(),
            &env_of(&[
                (GCS_ENDPOINT_VAR, "https://gw.example"),
                ("GOOGLE_APPLICATION_CREDENTIALS", file.to_str().unwrap()),
            ]),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("service account key file"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
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

    #[test]
    fn requiring_tls13_refuses_plain_http_unless_it_is_allowed_explicitly() {
        let env = env_of(&[("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s")]);
        let mut options = StoreOptions {
            require_tls13: true,
            ..StoreOptions::default()
        };
        let url = "s3:http://127.0.0.1:9/b";
        let err = s3(url, "http://127.0.0.1:9", "b", &options, &env)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("TLS 1.3 is required"), "{err}");
        assert!(err.contains("--allow-http"), "{err}");
        assert!(s3(url, "https://127.0.0.1:9", "b", &options, &env).is_ok());
        options.allow_http = true;
        assert!(s3(url, "http://127.0.0.1:9", "b", &options, &env).is_ok());
        assert!(tls13_connector(url, &options, false).unwrap().is_some());
        options.require_tls13 = false;
        assert!(tls13_connector(url, &options, true).unwrap().is_none());
    }
}
