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

/// The form of a name that is not UTF-8.
#[derive(serde::Serialize, serde::Deserialize)]
struct RawName {
    raw: String,
}

impl serde::Serialize for FileName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => RawName {
                raw: hex::encode(&self.0),
            }
            .serialize(s),
        }
    }
}

impl<'de> serde::Deserialize<'de> for FileName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(FileNameVisitor)
    }
}

/// A name as text, or as a [`RawName`]. An untagged enum did the same but
/// buffered every name first, a name per file of a parent snapshot's trees
/// (issue 23).
struct FileNameVisitor;

impl<'de> serde::de::Visitor<'de> for FileNameVisitor {
    type Value = FileName;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a file name: a string, or {"raw": "<hex of its bytes>"}"#)
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> std::result::Result<FileName, E> {
        Ok(FileName::from(text))
    }

    fn visit_string<E: serde::de::Error>(self, text: String) -> std::result::Result<FileName, E> {
        Ok(FileName(text.into_bytes()))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        map: A,
    ) -> std::result::Result<FileName, A::Error> {
        let RawName { raw } =
            serde::Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        hex::decode(raw)
            .map(FileName)
            .map_err(serde::de::Error::custom)
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::testing::any_id;

    fn any_file_name() -> impl Strategy<Value = FileName> {
        prop_oneof![
            "[a-zA-Z0-9 ._ü-]{1,20}".prop_map(|s| FileName::from(s.as_str())),
            proptest::collection::vec(any::<u8>(), 1..20).prop_map(FileName::from_bytes),
        ]
        .prop_filter("single path component", FileName::is_valid_component)
    }

    fn any_node() -> impl Strategy<Value = Node> {
        let node_type = prop_oneof![
            Just(NodeType::File),
            Just(NodeType::Dir),
            Just(NodeType::Symlink),
            Just(NodeType::Fifo),
            Just(NodeType::Socket),
            Just(NodeType::CharDevice),
            Just(NodeType::BlockDevice),
        ];
        let ids = (proptest::collection::vec(any_id(), 0..4), any_id());
        let xattrs = proptest::collection::vec(
            (
                any_file_name(),
                proptest::collection::vec(any::<u8>(), 0..16),
            )
                .prop_map(|(name, value)| Xattr { name, value }),
            0..3,
        );
        let owners = (
            any::<u32>(),
            any::<u32>(),
            proptest::option::of("[a-z]{1,8}"),
            proptest::option::of("[a-z]{1,8}"),
        );
        let times = (any::<i64>(), any::<i64>(), any::<i64>());
        let numbers = (
            0u32..0o10000,
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        );
        (
            any_file_name(),
            node_type,
            ids,
            xattrs,
            owners,
            times,
            numbers,
            proptest::option::of(any_file_name()),
        )
            .prop_map(
                |(
                    name,
                    node_type,
                    (content, subtree),
                    xattrs,
                    (uid, gid, user, group),
                    (mtime_ns, atime_ns, ctime_ns),
                    (mode, size, inode, device, links, rdev),
                    link_target,
                )| {
                    Node {
                        name,
                        node_type,
                        mode,
                        uid,
                        gid,
                        user,
                        group,
                        mtime_ns,
                        atime_ns,
                        ctime_ns,
                        size,
                        inode,
                        device,
                        links,
                        rdev,
                        link_target,
                        xattrs,
                        content: if node_type == NodeType::File {
                            content
                        } else {
                            Vec::new()
                        },
                        subtree: (node_type == NodeType::Dir).then_some(subtree),
                    }
                },
            )
    }

    fn any_tree() -> impl Strategy<Value = Tree> {
        proptest::collection::vec(any_node(), 0..10).prop_map(|mut nodes| {
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
            nodes.dedup_by(|a, b| a.name == b.name);
            Tree { nodes }
        })
    }

    fn file_node(name: &str) -> Node {
        Node {
            name: name.into(),
            node_type: NodeType::File,
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            user: Some("alice".into()),
            group: None,
            mtime_ns: 1_700_000_000_123_456_789,
            atime_ns: 0,
            ctime_ns: -1,
            size: 3,
            inode: 42,
            device: 7,
            links: 1,
            rdev: 0,
            link_target: None,
            xattrs: vec![],
            content: vec![Id([1; 32])],
            subtree: None,
        }
    }

    #[test]
    fn file_names_serialise_as_text_or_raw_hex() {
        assert_eq!(
            serde_json::to_string(&FileName::from("süß.txt")).unwrap(),
            r#""süß.txt""#
        );
        let raw = FileName::from_bytes(vec![b'a', 0xff, b'b']);
        assert_eq!(serde_json::to_string(&raw).unwrap(), r#"{"raw":"61ff62"}"#);
        assert_eq!(
            serde_json::from_str::<FileName>(r#"{"raw":"61ff62"}"#).unwrap(),
            raw
        );
        assert_eq!(raw.as_os_str().as_bytes(), b"a\xffb");
        assert!(serde_json::from_str::<FileName>(r#"{"raw":"zz"}"#).is_err());
        assert!(serde_json::from_str::<FileName>("17").is_err());
        assert!(serde_json::from_str::<FileName>("{}").is_err());
        assert!(serde_json::from_str::<FileName>(r#"{"raw":"61","raw":"62"}"#).is_err());
        // Escaped text, which cannot be borrowed from the input, decodes too.
        assert_eq!(
            serde_json::from_str::<FileName>(r#""s\u00fc\u00df.txt""#).unwrap(),
            FileName::from("süß.txt")
        );
    }

    #[test]
    fn encoding_is_the_documented_json() {
        let tree = Tree::new(vec![file_node("b"), file_node("a")]);
        assert_eq!(tree.nodes[0].name, FileName::from("a"));
        let json: serde_json::Value = serde_json::from_slice(&tree.encode()).unwrap();
        let node = &json["nodes"][0];
        assert_eq!(node["type"], "file");
        assert_eq!(node["mtime_ns"], 1_700_000_000_123_456_789_i64);
        assert_eq!(node["content"][0], Id([1; 32]).to_hex());
        assert!(
            node.get("subtree").is_none(),
            "absent optional fields are omitted"
        );
        assert!(node.get("group").is_none());
    }

    #[test]
    fn decode_rejects_what_restore_must_not_trust() {
        let encode = |nodes: Vec<Node>| serde_json::to_vec(&Tree { nodes }).unwrap();
        for name in ["", ".", "..", "a/b", "nul\0"] {
            assert!(
                Tree::decode(&encode(vec![file_node(name)])).is_err(),
                "name {name:?}"
            );
        }
        assert!(
            Tree::decode(&encode(vec![file_node("b"), file_node("a")])).is_err(),
            "unsorted"
        );
        assert!(
            Tree::decode(&encode(vec![file_node("a"), file_node("a")])).is_err(),
            "duplicate"
        );
        let mut dir = file_node("d");
        dir.node_type = NodeType::Dir;
        dir.content.clear();
        assert!(
            Tree::decode(&encode(vec![dir.clone()])).is_err(),
            "dir without subtree"
        );
        dir.subtree = Some(Id([2; 32]));
        assert!(Tree::decode(&encode(vec![dir.clone()])).is_ok());
        let mut file_with_subtree = file_node("f");
        file_with_subtree.subtree = Some(Id([2; 32]));
        assert!(Tree::decode(&encode(vec![file_with_subtree])).is_err());
        let mut symlink_with_content = file_node("l");
        symlink_with_content.node_type = NodeType::Symlink;
        assert!(Tree::decode(&encode(vec![symlink_with_content])).is_err());
        assert!(Tree::decode(b"{").is_err());
    }

    proptest! {
        #[test]
        fn file_name_round_trips(name in proptest::collection::vec(any::<u8>(), 0..40)) {
            let name = FileName::from_bytes(name);
            let json = serde_json::to_string(&name).unwrap();
            prop_assert_eq!(serde_json::from_str::<FileName>(&json).unwrap(), name);
        }

        #[test]
        fn tree_round_trips(tree in any_tree()) {
            let encoded = tree.encode();
            prop_assert_eq!(Tree::decode(&encoded).unwrap(), tree.clone());
            prop_assert_eq!(Tree::decode(&encoded).unwrap().encode(), encoded, "encoding is deterministic");
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Tree::decode(&bytes);
        }
    }
}
