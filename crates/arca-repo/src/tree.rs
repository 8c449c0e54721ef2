//! Trees: one directory listing each, stored as a tree blob.
//!
//! A [`Tree`] is the JSON encoding of its [`Node`]s sorted by name bytes
//! (see `docs/FORMAT.md`, "Trees"). Identical directories encode to identical
//! bytes and so deduplicate. Decoding validates what restore relies on: names
//! are single path components (never empty, `.`, `..`, or containing `/` or
//! NUL), unique and sorted; directories and only directories have a subtree.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use crate::{Error, Id, Result};

/// The raw bytes of a file name (or symlink target, or xattr name).
///
/// Serialised as a JSON string when the bytes are valid UTF-8, otherwise as
/// `{"raw": "<lower-case hex of the bytes>"}`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FileName(Vec<u8>);

impl FileName {
    /// The name as an OS string.
    pub fn as_os_str(&self) -> &OsStr {
        OsStr::from_bytes(&self.0)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Wraps raw bytes.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        FileName(bytes.into())
    }

    /// Whether this is a valid single path component (see the module docs).
    pub fn is_valid_component(&self) -> bool {
        !self.0.is_empty()
            && self.0 != b"."
            && self.0 != b".."
            && !self.0.contains(&b'/')
            && !self.0.contains(&0)
    }
}

impl From<&OsStr> for FileName {
    fn from(name: &OsStr) -> Self {
        FileName(name.as_bytes().to_vec())
    }
}

impl From<OsString> for FileName {
    fn from(name: OsString) -> Self {
        FileName(name.into_vec())
    }
}

impl From<&str> for FileName {
    fn from(name: &str) -> Self {
        FileName(name.as_bytes().to_vec())
    }
}

impl fmt::Debug for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(&self.0), f)
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum FileNameRepr<'a> {
    Utf8(std::borrow::Cow<'a, str>),
    Raw { raw: String },
}

impl serde::Serialize for FileName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => FileNameRepr::Raw {
                raw: hex::encode(&self.0),
            }
            .serialize(s),
        }
    }
}

impl<'de> serde::Deserialize<'de> for FileName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match FileNameRepr::deserialize(d)? {
            FileNameRepr::Utf8(text) => Ok(FileName(text.into_owned().into_bytes())),
            FileNameRepr::Raw { raw } => hex::decode(raw)
                .map(FileName)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// What kind of file a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeType {
    /// A regular file (hard links are files with `links > 1`).
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A Unix domain socket.
    Socket,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
}

/// One extended attribute.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Xattr {
    /// Attribute name (e.g. `user.comment`).
    pub name: FileName,
    /// Attribute value, serialised as lower-case hex.
    #[serde(with = "hex_bytes")]
    pub value: Vec<u8>,
}

mod hex_bytes {
    pub(super) fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        hex::decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// One directory entry and its metadata.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Node {
    /// File name within the directory.
    pub name: FileName,
    /// What kind of file this is.
    #[serde(rename = "type")]
    pub node_type: NodeType,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner user ID.
    pub uid: u32,
    /// Owner group ID.
    pub gid: u32,
    /// Owner user name, if it resolved at backup time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Owner group name, if it resolved at backup time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Access time, nanoseconds since the Unix epoch.
    pub atime_ns: i64,
    /// Status change time, nanoseconds since the Unix epoch.
    pub ctime_ns: i64,
    /// Size in bytes (files: content length; others as reported by `lstat`).
    pub size: u64,
    /// Inode number (for hard-link detection and change detection).
    pub inode: u64,
    /// Device ID of the file system holding the file.
    pub device: u64,
    /// Hard-link count.
    pub links: u64,
    /// Device number for character and block devices, else 0.
    #[serde(default)]
    pub rdev: u64,
    /// Symlink target (symlinks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target: Option<FileName>,
    /// Extended attributes, sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
    /// Content IDs of the file's data blobs, in order (files only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<Id>,
    /// Tree blob of the directory's listing (directories only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Id>,
}

/// A directory listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tree {
    /// The entries, sorted by name bytes, names unique.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// A tree of `nodes`, sorted by name.
    pub fn new(mut nodes: Vec<Node>) -> Self {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Tree { nodes }
    }

    /// The JSON encoding (deterministic for equal trees).
    ///
    /// # Panics
    /// In debug builds, if the nodes are not sorted by name (use [`Tree::new`]).
    pub fn encode(&self) -> Vec<u8> {
        debug_assert!(
            self.nodes.windows(2).all(|w| w[0].name < w[1].name),
            "tree nodes must be sorted and unique"
        );
        serde_json::to_vec(self).expect("trees always serialise")
    }

    /// Parses and validates a tree (untrusted input).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let tree: Tree = serde_json::from_slice(bytes).map_err(|e| Error::corrupt("tree", e))?;
        tree.validate()?;
        Ok(tree)
    }

    fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::corrupt("tree", reason));
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.name.is_valid_component() {
                return bad(format!(
                    "node name {:?} is not a single path component",
                    node.name
                ));
            }
            if i > 0 && self.nodes[i - 1].name >= node.name {
                return bad(format!(
                    "node {:?} is out of order or duplicated",
                    node.name
                ));
            }
            let is_dir = node.node_type == NodeType::Dir;
            if is_dir != node.subtree.is_some() {
                return bad(format!(
                    "node {:?}: only directories have a subtree, and all do",
                    node.name
                ));
            }
            if node.node_type != NodeType::File && !node.content.is_empty() {
                return bad(format!("node {:?}: only files have content", node.name));
            }
        }
        Ok(())
    }
}
