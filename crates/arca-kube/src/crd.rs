//! The CustomResourceDefinitions generated from the types in [`crate::api`], and their YAML.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::Error;
use crate::api::{ReplicationDestination, ReplicationSource};

/// The CRDs Arca installs: ReplicationSource and ReplicationDestination.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![ReplicationSource::crd(), ReplicationDestination::crd()]
}

/// The file a CRD is kept in under `deploy/helm/arca/crds/` (kubebuilder's `<group>_<plural>.yaml`).
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// A CRD as the YAML document committed under `deploy/helm/arca/crds/`, with a header saying where it
/// comes from.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, Error> {
    let body = serde_norway::to_string(crd).map_err(|source| Error::CrdYaml {
        name: crd.metadata.name.clone().unwrap_or_default(),
        source,
    })?;
    Ok(format!(
        "# Generated from crates/arca-kube/src/api by `ARCA_BLESS=1 cargo test -p arca-kube --test kube crds`; do not edit.\n{body}"
    ))
}
