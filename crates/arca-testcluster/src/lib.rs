//! An in-memory Kubernetes API server for tests.
//!
//! No real kube-apiserver can run in this project's test environment, and the
//! third-party emulators lack what kube-rs's watcher and controllers rely on.
//! This crate serves, over plain HTTP on 127.0.0.1, the subset of the API that
//! Arca's controller uses, with the semantics of the real server:
//!
//! - discovery (`/api`, `/apis`, per group-version resource lists, `/version`);
//! - CustomResourceDefinitions that register their resources when created,
//!   report `Established`, and default and prune custom objects by their
//!   structural schema;
//! - list and watch with resource versions: a watch from a version older than
//!   the retained history gets `410 Gone` (tests force this with
//!   [`ApiServer::compact`], as etcd's compaction would), label and field
//!   selectors, bookmarks, `timeoutSeconds`;
//! - create (with `generateName`), update with optimistic concurrency (`409`
//!   on a stale `resourceVersion`), merge patch, JSON patch (with `test`),
//!   strategic merge patch (as a merge patch), and server-side apply with a
//!   field manager (fields a manager stops applying are removed);
//! - the `status` subresource kept apart from the rest of the object, and
//!   `metadata.generation` counting changes outside status and metadata;
//! - finalizers and `deletionTimestamp`, and garbage collection of dependents
//!   through `ownerReferences` (background cascade, or orphaning).
//!
//! [`start_kubelet`] adds a stand-in for the kubelet and the storage
//! drivers: claims bound to directories, snapshots as copies, and Jobs run as
//! local processes (see its module for how paths reach them); with it,
//! `pods/exec` runs a command in a pod's context over kube-rs's WebSocket
//! protocol (`v5.channel.k8s.io`/`v4.channel.k8s.io`: stdout, stderr and the
//! exit status).
//!
//! What it is not: there is no authentication or authorisation, no admission,
//! no version conversion (one stored version per resource), no field-level
//! conflict detection in server-side apply (every apply is forced), and lists
//! are never paginated. It is test tooling and is not published.

mod exec;
mod http;
mod kubelet;
mod patch;
mod registry;
mod selector;
mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use kubelet::{KubeletConfig, claim_dir, start_kubelet};
pub use registry::ResourceKey;
pub use store::Store;

/// Errors of the test cluster, each mapped to the HTTP status the real API
/// server answers with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The path names no known resource (404).
    #[error("the server could not find the requested resource: {0}")]
    NotFound(String),
    /// The object exists already (409, reason AlreadyExists).
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A write named a stale `resourceVersion` or a failed precondition (409,
    /// reason Conflict).
    #[error(
        "Operation cannot be fulfilled on {0}: the object has been modified; please apply your changes to the latest version and try again"
    )]
    Conflict(String),
    /// A watch asked for history that is no longer kept (410, reason Expired).
    #[error("too old resource version: {requested} ({oldest})")]
    Expired {
        /// The version asked for.
        requested: u64,
        /// The oldest version still in the history.
        oldest: u64,
    },
    /// The request is malformed (400, reason BadRequest).
    #[error("{0}")]
    BadRequest(String),
    /// The body fails the resource's schema (422, reason Invalid).
    #[error("{0}")]
    Invalid(String),
    /// The verb is not supported here (405).
    #[error("method not allowed: {0}")]
    MethodNotAllowed(String),
    /// Listening or serving failed.
    #[error("test API server I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A running API server on 127.0.0.1; stops when dropped.
pub struct ApiServer {
    address: SocketAddr,
    store: Arc<Store>,
    task: JoinHandle<()>,
}

impl ApiServer {
    /// Starts a server with the built-in resources on a free port of
    /// 127.0.0.1. Must be called inside a tokio runtime.
    pub async fn start() -> Result<ApiServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let store = Arc::new(Store::new());
        let task = tokio::spawn(http::serve(listener, Arc::clone(&store)));
        Ok(ApiServer {
            address,
            store,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A kubeconfig document that points a client (kube-rs, kubectl) at this
    /// server, without credentials.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: arca-test\n  cluster:\n    server: {url}\n\
             users:\n- name: arca-test\n  user: {{}}\ncontexts:\n- name: arca-test\n  context:\n    \
             cluster: arca-test\n    user: arca-test\n    namespace: default\ncurrent-context: arca-test\n",
            url = self.url()
        )
    }

    /// The objects, for tests that inspect or change state directly (the
    /// kubelet stand-in does).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Forgets the event history up to now, as etcd's compaction does: every
    /// watch that resumes from an older version gets `410 Gone`.
    pub fn compact(&self) {
        self.store.compact();
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
