//! The objects the operator applies, built from the spec and what was observed: VolSync's shapes
//! (names, labels, volumes, environment), with the agent in place of VolSync's script.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    KeyToPath, PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, SeccompProfile, SecretKeySelector,
    SecretVolumeSource, SecurityContext, ServiceAccount, TypedLocalObjectReference, Volume,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::ControllerConfig;
use super::names::{CLEANUP_LABEL, CREATED_BY_LABEL, CREATED_BY_VALUE, OWNER_LABEL};
use super::observed::SecretObserved;
use crate::api::{
    CustomCaSpec, MoverConfig, VolumeSnapshot, VolumeSnapshotSource, VolumeSnapshotSpec,
};

/// The name of the mover container (VolSync's for the restic mover).
pub(crate) const CONTAINER_NAME: &str = "restic";
/// Where the data volume is mounted.
pub(crate) const DATA_DIR: &str = "/data";
/// Where the cache volume is mounted.
pub(crate) const CACHE_DIR: &str = "/cache";
/// Where a custom CA is mounted, and the file it becomes.
const CUSTOM_CA_DIR: &str = "/customCA";
const CUSTOM_CA_FILE: &str = "ca.crt";
/// Where `GOOGLE_APPLICATION_CREDENTIALS` (JSON content in the Secret) is mounted as a file.
const GCS_CREDENTIALS_DIR: &str = "/credentials";
const GCS_CREDENTIALS_FILE: &str = "gcs.json";
/// VolSync's default cache size.
pub(crate) const DEFAULT_CACHE_CAPACITY: &str = "1Gi";

/// Secret keys that must be present.
pub(crate) const REQUIRED_SECRET_KEYS: [&str; 2] = ["RESTIC_REPOSITORY", "RESTIC_PASSWORD"];

/// Secret keys passed to the mover when present (VolSync's list, `mover/restic/mover.go`).
/// `GOOGLE_APPLICATION_CREDENTIALS` is handled apart: it is mounted as a file.
const OPTIONAL_SECRET_KEYS: &[&str] = &[
    "RESTIC_COMPRESSION",
    "RESTIC_PACK_SIZE",
    "RESTIC_READ_CONCURRENCY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "RESTIC_AWS_ASSUME_ROLE_ARN",
    "RESTIC_AWS_ASSUME_ROLE_SESSION_NAME",
    "RESTIC_AWS_ASSUME_ROLE_EXTERNAL_ID",
    "RESTIC_AWS_ASSUME_ROLE_POLICY",
    "RESTIC_AWS_ASSUME_ROLE_REGION",
    "RESTIC_AWS_ASSUME_ROLE_STS_ENDPOINT",
    "ST_AUTH",
    "ST_USER",
    "ST_KEY",
    "OS_AUTH_URL",
    "OS_REGION_NAME",
    "OS_USERNAME",
    "OS_USER_ID",
    "OS_PASSWORD",
    "OS_TENANT_ID",
    "OS_TENANT_NAME",
    "OS_USER_DOMAIN_NAME",
    "OS_USER_DOMAIN_ID",
    "OS_PROJECT_NAME",
    "OS_PROJECT_DOMAIN_NAME",
    "OS_PROJECT_DOMAIN_ID",
    "OS_TRUST_ID",
    "OS_APPLICATION_CREDENTIAL_ID",
    "OS_APPLICATION_CREDENTIAL_NAME",
    "OS_APPLICATION_CREDENTIAL_SECRET",
    "OS_STORAGE_URL",
    "OS_AUTH_TOKEN",
    "B2_ACCOUNT_ID",
    "B2_ACCOUNT_KEY",
    "AZURE_ACCOUNT_NAME",
    "AZURE_ACCOUNT_KEY",
    "AZURE_ACCOUNT_SAS",
    "AZURE_ENDPOINT_SUFFIX",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
    "GOOGLE_PROJECT_ID",
    "RESTIC_REST_USERNAME",
    "RESTIC_REST_PASSWORD",
];
const GCS_CREDENTIALS_KEY: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// The agent's switch for TLS 1.3 on every storage connection.
const REQUIRE_TLS13_ENV: &str = "ARCA_REQUIRE_TLS13";
/// The object a mover works for (`<namespace>/<name>` of a ReplicationSource).
pub(crate) const SOURCE_ENV: &str = "ARCA_SOURCE";

/// The ReplicationSource or ReplicationDestination that owns what is built.
pub(crate) struct Owner<'a> {
    pub(crate) kind: &'static str,
    pub(crate) plural: &'static str,
    pub(crate) name: &'a str,
    pub(crate) namespace: Option<&'a str>,
    pub(crate) uid: &'a str,
}

impl Owner<'_> {
    /// Metadata of an owned object; `cleanup` marks it for deletion when the sync completes.
    pub(crate) fn meta(&self, name: &str, cleanup: bool) -> ObjectMeta {
        let mut labels = BTreeMap::from([
            (CREATED_BY_LABEL.to_owned(), CREATED_BY_VALUE.to_owned()),
            (OWNER_LABEL.to_owned(), self.uid.to_owned()),
        ]);
        if cleanup {
            labels.insert(CLEANUP_LABEL.to_owned(), self.uid.to_owned());
        }
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: self.namespace.map(str::to_owned),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: format!("{}/{}", crate::api::GROUP, crate::api::VERSION),
                kind: self.kind.to_owned(),
                name: self.name.to_owned(),
                uid: self.uid.to_owned(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        }
    }

    /// The selector for this owner's temporary objects.
    pub(crate) fn cleanup_selector(&self) -> String {
        format!(
            "{CLEANUP_LABEL}={},!{}",
            self.uid,
            super::names::DO_NOT_DELETE_LABEL
        )
    }
}

/// How a PVC is to be made.
pub(crate) struct PvcShape {
    pub(crate) capacity: Option<Quantity>,
    pub(crate) storage_class_name: Option<String>,
    pub(crate) access_modes: Vec<String>,
    pub(crate) data_source: Option<TypedLocalObjectReference>,
}

pub(crate) fn pvc(
    owner: &Owner<'_>,
    name: &str,
    shape: PvcShape,
    cleanup: bool,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: owner.meta(name, cleanup),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(shape.access_modes),
            storage_class_name: shape.storage_class_name,
            resources: shape.capacity.map(|capacity| VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), capacity)])),
                ..VolumeResourceRequirements::default()
            }),
            data_source: shape.data_source,
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

pub(crate) fn volume_snapshot(
    owner: &Owner<'_>,
    name: &str,
    pvc: &str,
    class: Option<String>,
    cleanup: bool,
) -> VolumeSnapshot {
    VolumeSnapshot {
        metadata: owner.meta(name, cleanup),
        spec: VolumeSnapshotSpec {
            source: VolumeSnapshotSource {
                persistent_volume_claim_name: Some(pvc.to_owned()),
            },
            volume_snapshot_class_name: class,
        },
        status: None,
    }
}

/// The mover's ServiceAccount: no API token mounted (the agent never talks to the API server).
pub(crate) fn service_account(owner: &Owner<'_>, name: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: owner.meta(name, false),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// The mover's Role: no rules. It exists so clusters that gate pods by RBAC (OpenShift's
/// SecurityContextConstraints, say) have one place per mover to grant what they need.
pub(crate) fn role(owner: &Owner<'_>, name: &str) -> Role {
    Role {
        metadata: owner.meta(name, false),
        rules: Some(Vec::new()),
    }
}

pub(crate) fn role_binding(owner: &Owner<'_>, name: &str) -> RoleBinding {
    RoleBinding {
        metadata: owner.meta(name, false),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: name.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: name.to_owned(),
            namespace: owner.namespace.map(str::to_owned),
            ..Subject::default()
        }]),
    }
}

/// Everything a mover Job is made from.
pub(crate) struct MoverJob<'a> {
    pub(crate) name: String,
    /// The agent's actions, in order (`unlock`, `backup`, `prune`, `verify`, `restore` …).
    pub(crate) actions: Vec<&'static str>,
    /// Controller-set environment besides the common part (`FORGET_OPTIONS`, `RESTORE_AS_OF` …).
    pub(crate) env: Vec<(&'static str, String)>,
    pub(crate) data_pvc: String,
    pub(crate) data_read_only: bool,
    pub(crate) cache_pvc: String,
    pub(crate) service_account: String,
    pub(crate) mover: &'a MoverConfig,
    pub(crate) custom_ca: Option<&'a CustomCaSpec>,
    pub(crate) secret: &'a SecretObserved,
    pub(crate) paused: bool,
}

/// The agent's exit code for a partial success (docs/AGENT.md): the snapshot was saved, but some
/// files or a replica failed.
const PARTIAL_EXIT_CODE: i32 = 3;

/// A partial success ends the Job at once instead of being retried: a retry would back up again,
/// and the result document already says what failed.
fn final_partial_exit() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![PodFailurePolicyRule {
            action: "FailJob".to_owned(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: Some(CONTAINER_NAME.to_owned()),
                operator: "In".to_owned(),
                values: vec![PARTIAL_EXIT_CODE],
            }),
            on_pod_conditions: None,
        }],
    }
}

pub(crate) fn job(owner: &Owner<'_>, spec: MoverJob<'_>, config: &ControllerConfig) -> Job {
    let mut env: Vec<EnvVar> = Vec::new();
    let plain = |name: &str, value: String| EnvVar {
        name: name.to_owned(),
        value: Some(value),
        value_from: None,
    };
    env.push(plain("DATA_DIR", DATA_DIR.to_owned()));
    env.push(plain("RESTIC_CACHE_DIR", CACHE_DIR.to_owned()));
    env.push(plain("PRIVILEGED_MOVER", "0".to_owned()));
    // A source's snapshots carry its name, so sources sharing one repository never take each
    // other's snapshots as parents, forget them or restore them (docs/AGENT.md, `ARCA_SOURCE`).
    if owner.kind == "ReplicationSource" {
        let namespace = owner.namespace.unwrap_or_default();
        env.push(plain(SOURCE_ENV, format!("{namespace}/{}", owner.name)));
    }
    for (name, value) in spec.env {
        env.push(plain(name, value));
    }
    if spec.custom_ca.is_some_and(CustomCaSpec::is_configured) {
        env.push(plain(
            "CUSTOM_CA",
            format!("{CUSTOM_CA_DIR}/{CUSTOM_CA_FILE}"),
        ));
    }
    if let Some(url) = &config.progress_url {
        let namespace = owner.namespace.unwrap_or_default();
        env.push(plain(
            "ARCA_PROGRESS_URL",
            format!("{url}/{namespace}/{}/{}", owner.plural, owner.name),
        ));
    }
    for (name, value) in &config.proxy_env {
        env.push(plain(name, value.clone()));
    }
    let from_secret = |key: &str| EnvVar {
        name: key.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: spec.secret.name.clone(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    };
    for key in REQUIRED_SECRET_KEYS {
        env.push(from_secret(key));
    }
    for key in OPTIONAL_SECRET_KEYS {
        if spec.secret.keys.contains(*key) {
            env.push(from_secret(key));
        }
    }
    // VolSync passes every RCLONE_* key (for restic's rclone backend); Arca also passes its own
    // ARCA_* equivalents. BTreeSet order keeps the Job stable from one reconcile to the next.
    for key in &spec.secret.keys {
        // The controller's TLS policy is not the Secret's to relax.
        let overridden = config.require_tls13 && key == REQUIRE_TLS13_ENV;
        if (key.starts_with("RCLONE_") || key.starts_with("ARCA_")) && !overridden {
            env.push(from_secret(key));
        }
    }
    if config.require_tls13 {
        env.push(plain(REQUIRE_TLS13_ENV, "1".to_owned()));
    }

    let mut volumes = vec![
        Volume {
            name: "data".to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: spec.data_pvc.clone(),
                read_only: Some(spec.data_read_only),
            }),
            ..Volume::default()
        },
        Volume {
            name: "cache".to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: spec.cache_pvc.clone(),
                read_only: Some(false),
            }),
            ..Volume::default()
        },
        Volume {
            name: "tempdir".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".to_owned()),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    let mount = |name: &str, path: String, read_only: bool| VolumeMount {
        name: name.to_owned(),
        mount_path: path,
        read_only: Some(read_only),
        ..VolumeMount::default()
    };
    let mut mounts = vec![
        mount("data", DATA_DIR.to_owned(), spec.data_read_only),
        mount("cache", CACHE_DIR.to_owned(), false),
        mount("tempdir", "/tmp".to_owned(), false),
    ];
    if let Some(ca) = spec.custom_ca.filter(|ca| ca.is_configured()) {
        let items = Some(vec![KeyToPath {
            key: ca.key.clone().unwrap_or_default(),
            path: CUSTOM_CA_FILE.to_owned(),
            mode: None,
        }]);
        let mut volume = Volume {
            name: "custom-ca".to_owned(),
            ..Volume::default()
        };
        match ca.secret_name.as_deref().filter(|s| !s.is_empty()) {
            Some(secret) => {
                volume.secret = Some(SecretVolumeSource {
                    secret_name: Some(secret.to_owned()),
                    items,
                    ..SecretVolumeSource::default()
                });
            }
            None => {
                volume.config_map = Some(ConfigMapVolumeSource {
                    name: ca.config_map_name.clone().unwrap_or_default(),
                    items,
                    ..ConfigMapVolumeSource::default()
                });
            }
        }
        volumes.push(volume);
        mounts.push(mount("custom-ca", CUSTOM_CA_DIR.to_owned(), true));
    }
    if spec.secret.keys.contains(GCS_CREDENTIALS_KEY) {
        volumes.push(Volume {
            name: "gcs-credentials".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(spec.secret.name.clone()),
                items: Some(vec![KeyToPath {
                    key: GCS_CREDENTIALS_KEY.to_owned(),
                    path: GCS_CREDENTIALS_FILE.to_owned(),
                    mode: None,
                }]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount(
            "gcs-credentials",
            GCS_CREDENTIALS_DIR.to_owned(),
            true,
        ));
        env.push(plain(
            GCS_CREDENTIALS_KEY,
            format!("{GCS_CREDENTIALS_DIR}/{GCS_CREDENTIALS_FILE}"),
        ));
    }
    for (index, extra) in spec.mover.mover_volumes.iter().flatten().enumerate() {
        let name = format!("u-{index}");
        let source = &extra.volume_source;
        volumes.push(Volume {
            name: name.clone(),
            secret: source.secret.clone(),
            persistent_volume_claim: source.persistent_volume_claim.clone(),
            nfs: source.nfs.clone(),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name,
            mount_path: format!("/mnt/{}", extra.mount_path.trim_start_matches('/')),
            ..VolumeMount::default()
        });
    }

    let runs_as_root = spec
        .mover
        .mover_security_context
        .as_ref()
        .and_then(|context| context.run_as_user)
        == Some(0);
    let container = Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(config.mover_image.clone()),
        command: Some(vec!["arca-agent".to_owned()]),
        args: Some(spec.actions.iter().map(|a| (*a).to_owned()).collect()),
        env: Some(env),
        volume_mounts: Some(mounts),
        resources: spec.mover.mover_resources.clone(),
        termination_message_path: Some("/dev/termination-log".to_owned()),
        termination_message_policy: Some("File".to_owned()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: (!runs_as_root).then_some(true),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                localhost_profile: None,
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };

    let mut pod_labels =
        BTreeMap::from([(CREATED_BY_LABEL.to_owned(), CREATED_BY_VALUE.to_owned())]);
    pod_labels.insert(OWNER_LABEL.to_owned(), owner.uid.to_owned());
    if let Some(extra) = &spec.mover.mover_pod_labels {
        for (key, value) in extra {
            pod_labels
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
    }
    let pod_security = spec.mover.mover_security_context.clone().or_else(|| {
        Some(PodSecurityContext {
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        })
    });

    Job {
        metadata: owner.meta(&spec.name, false),
        spec: Some(JobSpec {
            backoff_limit: Some(config.job_backoff_limit),
            pod_failure_policy: Some(final_partial_exit()),
            parallelism: Some(if spec.paused { 0 } else { 1 }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    service_account_name: Some(spec.service_account),
                    automount_service_account_token: Some(false),
                    security_context: pod_security,
                    affinity: spec.mover.mover_affinity.clone(),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}
