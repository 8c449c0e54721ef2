//! Which resources exist: the built-in ones a backup operator touches, and
//! those that CustomResourceDefinitions register.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// A resource's place in the API: group (`""` for the core group), version
/// and plural name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceKey {
    /// API group, `""` for the core group.
    pub group: String,
    /// API version within the group.
    pub version: String,
    /// Plural resource name, e.g. `jobs`.
    pub plural: String,
}

impl ResourceKey {
    /// A key from its parts.
    pub fn new(group: &str, version: &str, plural: &str) -> ResourceKey {
        ResourceKey {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
        }
    }

    /// `v1` or `group/version`, as objects' `apiVersion` spells it.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// What the server knows about one resource.
#[derive(Debug, Clone)]
pub(crate) struct ResourceInfo {
    pub(crate) kind: String,
    pub(crate) singular: String,
    pub(crate) namespaced: bool,
    pub(crate) status_subresource: bool,
    /// The structural schema of a custom resource, for defaulting and pruning.
    pub(crate) schema: Option<Value>,
}

/// The built-in resources: (group, version, plural, kind, namespaced, status subresource).
const BUILT_IN: &[(&str, &str, &str, &str, bool, bool)] = &[
    ("", "v1", "namespaces", "Namespace", false, true),
    ("", "v1", "pods", "Pod", true, true),
    ("", "v1", "secrets", "Secret", true, false),
    ("", "v1", "configmaps", "ConfigMap", true, false),
    ("", "v1", "serviceaccounts", "ServiceAccount", true, false),
    (
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
        true,
    ),
    (
        "",
        "v1",
        "persistentvolumes",
        "PersistentVolume",
        false,
        true,
    ),
    ("", "v1", "events", "Event", true, false),
    ("", "v1", "services", "Service", true, true),
    ("apps", "v1", "deployments", "Deployment", true, true),
    ("batch", "v1", "jobs", "Job", true, true),
    ("batch", "v1", "cronjobs", "CronJob", true, true),
    ("coordination.k8s.io", "v1", "leases", "Lease", true, false),
    ("events.k8s.io", "v1", "events", "Event", true, false),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "Role",
        true,
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        false,
    ),
    (
        "storage.k8s.io",
        "v1",
        "storageclasses",
        "StorageClass",
        false,
        false,
    ),
    (
        "snapshot.storage.k8s.io",
        "v1",
        "volumesnapshots",
        "VolumeSnapshot",
        true,
        true,
    ),
    (
        "snapshot.storage.k8s.io",
        "v1",
        "volumesnapshotclasses",
        "VolumeSnapshotClass",
        false,
        false,
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        true,
    ),
];

/// The resources the server serves.
#[derive(Debug)]
pub(crate) struct Registry {
    resources: BTreeMap<ResourceKey, ResourceInfo>,
}

impl Registry {
    pub(crate) fn with_built_ins() -> Registry {
        let resources = BUILT_IN
            .iter()
            .map(|&(group, version, plural, kind, namespaced, status)| {
                (
                    ResourceKey::new(group, version, plural),
                    ResourceInfo {
                        kind: kind.to_string(),
                        singular: kind.to_lowercase(),
                        namespaced,
                        status_subresource: status,
                        schema: None,
                    },
                )
            })
            .collect();
        Registry { resources }
    }

    pub(crate) fn get(&self, key: &ResourceKey) -> Option<&ResourceInfo> {
        self.resources.get(key)
    }

    /// Registers (or re-registers) every served version of a CRD object;
    /// returns the keys it serves.
    pub(crate) fn register_crd(&mut self, crd: &Value) -> Vec<ResourceKey> {
        let spec = &crd["spec"];
        let group = spec["group"].as_str().unwrap_or_default();
        let names = &spec["names"];
        let plural = names["plural"].as_str().unwrap_or_default();
        let kind = names["kind"].as_str().unwrap_or_default();
        let singular = names["singular"]
            .as_str()
            .map_or_else(|| kind.to_lowercase(), str::to_string);
        let namespaced = spec["scope"].as_str() != Some("Cluster");
        let mut keys = Vec::new();
        for version in spec["versions"].as_array().into_iter().flatten() {
            if version["served"] == Value::Bool(false) {
                continue;
            }
            let key = ResourceKey::new(group, version["name"].as_str().unwrap_or_default(), plural);
            let schema = version["schema"]["openAPIV3Schema"].clone();
            self.resources.insert(
                key.clone(),
                ResourceInfo {
                    kind: kind.to_string(),
                    singular: singular.clone(),
                    namespaced,
                    status_subresource: version["subresources"]["status"].is_object(),
                    schema: (!schema.is_null()).then_some(schema),
                },
            );
            keys.push(key);
        }
        keys
    }

    /// Removes what a deleted CRD registered.
    pub(crate) fn unregister_crd(&mut self, crd: &Value) {
        let spec = &crd["spec"];
        let group = spec["group"].as_str().unwrap_or_default();
        let plural = spec["names"]["plural"].as_str().unwrap_or_default();
        self.resources
            .retain(|key, _| !(key.group == group && key.plural == plural));
    }

    /// `GET /api`.
    pub(crate) fn core_versions() -> Value {
        json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
    }

    /// `GET /apis`: every non-core group with its versions.
    pub(crate) fn group_list(&self) -> Value {
        let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for key in self.resources.keys().filter(|key| !key.group.is_empty()) {
            let versions = groups.entry(&key.group).or_default();
            if !versions.contains(&key.version.as_str()) {
                versions.push(&key.version);
            }
        }
        let groups: Vec<Value> = groups
            .into_iter()
            .map(|(group, versions)| {
                let versions: Vec<Value> = versions
                    .iter()
                    .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
                    .collect();
                json!({"name": group, "versions": versions, "preferredVersion": versions[0]})
            })
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `GET /api/v1` or `GET /apis/GROUP/VERSION`, `None` if nothing is served
    /// there.
    pub(crate) fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let mut resources = Vec::new();
        for (key, info) in &self.resources {
            if key.group != group || key.version != version {
                continue;
            }
            resources.push(json!({
                "name": key.plural,
                "singularName": info.singular,
                "namespaced": info.namespaced,
                "kind": info.kind,
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            }));
            if info.status_subresource {
                resources.push(json!({
                    "name": format!("{}/status", key.plural),
                    "singularName": "",
                    "namespaced": info.namespaced,
                    "kind": info.kind,
                    "verbs": ["get", "patch", "update"],
                }));
            }
        }
        let group_version = ResourceKey::new(group, version, "").api_version();
        (!resources.is_empty()).then(|| {
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
        })
    }
}
