//! Tree blobs: a directory's nodes as restic's JSON, and their conversion
//! into Arca's [`arca_repo::tree::Node`] so listing and restoring share
//! Arca's types.
//!
//! restic quirks handled here: `name` is Go-quoted text (`strconv.Quote`
//! without the quotes, so a non-UTF-8 name arrives as `\xff` escapes);
//! `mode` is Go's `os.FileMode` (type bits high, setuid/setgid/sticky as bits
//! 23/22/20); times are RFC 3339 with the zone; `linktarget_raw` (base64)
//! replaces `linktarget` for targets that are not UTF-8; xattr values are
//! base64; `content` is `null` for everything but files.

use arca_repo::Id;
use arca_repo::tree::{FileName, Node, NodeType, Xattr};
use base64::Engine as _;

use crate::{Error, Result};

/// A decoded tree blob.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ResticTree {
    /// The directory's entries, sorted by name.
    pub nodes: Vec<ResticNode>,
}

/// One extended attribute as restic stores it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ResticXattr {
    /// Name.
    pub name: String,
    /// Value, standard base64.
    #[serde(default)]
    pub value: Option<String>,
}

/// One node as restic stores it (unknown fields are ignored).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ResticNode {
    /// Go-quoted name (see the module docs).
    pub name: String,
    /// `file`, `dir`, `symlink`, `dev`, `chardev`, `fifo`, `socket`.
    #[serde(rename = "type")]
    pub node_type: String,
    /// Go `os.FileMode`.
    #[serde(default)]
    pub mode: u32,
    /// Modification time.
    #[serde(default)]
    pub mtime: Option<String>,
    /// Access time.
    #[serde(default)]
    pub atime: Option<String>,
    /// Status change time.
    #[serde(default)]
    pub ctime: Option<String>,
    /// Owner.
    #[serde(default)]
    pub uid: u32,
    /// Group.
    #[serde(default)]
    pub gid: u32,
    /// Owner's name.
    #[serde(default)]
    pub user: String,
    /// Group's name.
    #[serde(default)]
    pub group: String,
    /// Inode number.
    #[serde(default)]
    pub inode: u64,
    /// `st_dev` of the file system.
    #[serde(default)]
    pub device_id: u64,
    /// Size (files).
    #[serde(default)]
    pub size: u64,
    /// Hard-link count.
    #[serde(default)]
    pub links: u64,
    /// Symlink target (UTF-8).
    #[serde(default)]
    pub linktarget: String,
    /// Symlink target bytes, base64, when not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linktarget_raw: Option<String>,
    /// Extended attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_attributes: Option<Vec<ResticXattr>>,
    /// `st_rdev` of a device node.
    #[serde(default)]
    pub device: u64,
    /// Data blobs of a file, in order.
    #[serde(default)]
    pub content: Option<Vec<Id>>,
    /// Tree of a directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Id>,
}

/// Go `os.FileMode` bits restic stores.
const GO_MODE_SETUID: u32 = 1 << 23;
const GO_MODE_SETGID: u32 = 1 << 22;
const GO_MODE_STICKY: u32 = 1 << 20;

impl ResticTree {
    /// Parses a tree blob's JSON (untrusted input).
    pub fn decode(json: &[u8]) -> Result<Self> {
        serde_json::from_slice(json).map_err(|e| Error::corrupt("tree", e))
    }

    /// The nodes as Arca's, validated as Arca validates its own trees: names
    /// are single path components, unique and sorted by bytes, and
    /// directories (only they) have a subtree, so nothing restored can land
    /// outside its directory.
    pub fn to_arca(&self) -> Result<Vec<Node>> {
        let mut nodes: Vec<Node> = Vec::with_capacity(self.nodes.len());
        for restic in &self.nodes {
            let node = restic.to_arca()?;
            if let Some(previous) = nodes.last()
                && previous.name >= node.name
            {
                return Err(Error::corrupt(
                    "tree",
                    format!("node {:?} is out of order or duplicated", node.name),
                ));
            }
            nodes.push(node);
        }
        Ok(nodes)
    }
}

fn parse_time(what: &str, text: &Option<String>) -> Result<i64> {
    let Some(text) = text else { return Ok(0) };
    let time: jiff::Timestamp = text
        .parse()
        .map_err(|e| Error::corrupt(format!("{what} {text:?}"), e))?;
    // Go's zero time (year 1) and other far dates do not fit i64 nanoseconds.
    Ok(time
        .as_nanosecond()
        .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

fn base64_bytes(what: &str, text: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| Error::corrupt(what, e))
}

impl ResticNode {
    /// The name's bytes (Go-unquoted).
    pub fn name_bytes(&self) -> Result<Vec<u8>> {
        go_unquote(&self.name).ok_or_else(|| {
            Error::corrupt(
                "tree",
                format!("node name {:?} is not Go-quoted text", self.name),
            )
        })
    }

    /// The node as Arca's (see the module docs for the conversions).
    pub fn to_arca(&self) -> Result<Node> {
        let name = FileName::from_bytes(self.name_bytes()?);
        let bad = |reason: String| Error::corrupt("tree", reason);
        if !name.is_valid_component() {
            return Err(bad(format!(
                "node name {name:?} is not a single path component"
            )));
        }
        let node_type = match self.node_type.as_str() {
            "file" => NodeType::File,
            "dir" => NodeType::Dir,
            "symlink" => NodeType::Symlink,
            "dev" => NodeType::BlockDevice,
            "chardev" => NodeType::CharDevice,
            "fifo" => NodeType::Fifo,
            "socket" => NodeType::Socket,
            other => {
                return Err(Error::Unsupported {
                    what: format!("node {name:?}"),
                    reason: format!("restic node type {other:?}"),
                });
            }
        };
        if (node_type == NodeType::Dir) != self.subtree.is_some() {
            return Err(bad(format!(
                "node {name:?}: a subtree belongs to directories and only to them"
            )));
        }
        let mut mode = self.mode & 0o777;
        for (go, unix) in [
            (GO_MODE_SETUID, 0o4000),
            (GO_MODE_SETGID, 0o2000),
            (GO_MODE_STICKY, 0o1000),
        ] {
            if self.mode & go != 0 {
                mode |= unix;
            }
        }
        let link_target = match (&self.linktarget_raw, node_type) {
            (Some(raw), _) => Some(FileName::from_bytes(base64_bytes("linktarget_raw", raw)?)),
            (None, NodeType::Symlink) => Some(FileName::from(self.linktarget.as_str())),
            (None, _) => None,
        };
        let mut xattrs = Vec::new();
        for attr in self.extended_attributes.iter().flatten() {
            xattrs.push(Xattr {
                name: FileName::from(attr.name.as_str()),
                value: match &attr.value {
                    Some(value) => base64_bytes("extended attribute value", value)?,
                    None => Vec::new(),
                },
            });
        }
        xattrs.sort_by(|a, b| a.name.cmp(&b.name));
        let non_empty = |text: &str| (!text.is_empty()).then(|| text.to_owned());
        Ok(Node {
            name,
            node_type,
            mode,
            uid: self.uid,
            gid: self.gid,
            user: non_empty(&self.user),
            group: non_empty(&self.group),
            mtime_ns: parse_time("mtime", &self.mtime)?,
            atime_ns: parse_time("atime", &self.atime)?,
            ctime_ns: parse_time("ctime", &self.ctime)?,
            size: self.size,
            inode: self.inode,
            device: self.device_id,
            links: self.links,
            rdev: self.device,
            link_target,
            xattrs,
            content: self.content.clone().unwrap_or_default(),
            subtree: self.subtree,
        })
    }
}

/// Go's `strconv.Unquote` of `"` + `text` + `"`: the bytes a Go-quoted string
/// stands for, or `None` if an escape is malformed.
pub fn go_unquote(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let hex = |chars: &mut std::str::Chars<'_>, digits: usize| -> Option<u32> {
            let mut value = 0u32;
            for _ in 0..digits {
                value = value * 16 + chars.next()?.to_digit(16)?;
            }
            Some(value)
        };
        let push_char = |out: &mut Vec<u8>, code: u32| -> Option<()> {
            let mut buf = [0u8; 4];
            out.extend_from_slice(char::from_u32(code)?.encode_utf8(&mut buf).as_bytes());
            Some(())
        };
        match chars.next()? {
            'a' => out.push(0x07),
            'b' => out.push(0x08),
            'f' => out.push(0x0c),
            'n' => out.push(b'\n'),
            'r' => out.push(b'\r'),
            't' => out.push(b'\t'),
            'v' => out.push(0x0b),
            '\\' => out.push(b'\\'),
            '"' => out.push(b'"'),
            '\'' => out.push(b'\''),
            'x' => out.push(hex(&mut chars, 2)? as u8),
            'u' => push_char(&mut out, hex(&mut chars, 4)?)?,
            'U' => push_char(&mut out, hex(&mut chars, 8)?)?,
            first @ '0'..='7' => {
                let mut value = first.to_digit(8)?;
                for _ in 0..2 {
                    value = value * 8 + chars.next()?.to_digit(8)?;
                }
                out.push(u8::try_from(value).ok()?);
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn unquotes_what_go_quotes() {
        assert_eq!(go_unquote("plain").unwrap(), b"plain");
        assert_eq!(go_unquote(r"a\\b").unwrap(), b"a\\b");
        assert_eq!(go_unquote(r#"q\"q"#).unwrap(), b"q\"q");
        assert_eq!(go_unquote(r"\xff\xfe").unwrap(), [0xff, 0xfe]);
        assert_eq!(go_unquote(r"tab\tnl\n").unwrap(), b"tab\tnl\n");
        assert_eq!(go_unquote(r"\u00e9t\u00e9").unwrap(), "été".as_bytes());
        assert_eq!(go_unquote("été").unwrap(), "été".as_bytes());
        assert_eq!(go_unquote(r"\101").unwrap(), b"A");
        assert!(go_unquote(r"\x").is_none());
        assert!(go_unquote(r"\q").is_none());
        assert!(go_unquote("\\").is_none());
    }

    fn node_json(extra: &str) -> String {
        format!(
            r#"{{"name":"f","type":"file","mode":9437677,"mtime":"2026-01-02T03:04:05.5+01:00","atime":"2026-01-02T03:04:05+01:00","ctime":"0001-01-01T00:00:00Z","uid":1,"gid":2,"user":"u","inode":9,"device_id":3,"size":5,"links":2,"content":["{}"]{extra}}}"#,
            "cd".repeat(32)
        )
    }

    #[test]
    fn converts_restic_nodes() {
        // 9437677 = Go's ModeSetuid (1 << 23) | ModeSticky (1 << 20) | 0o755.
        let node: ResticNode = serde_json::from_str(&node_json("")).unwrap();
        let arca = node.to_arca().unwrap();
        assert_eq!(arca.mode, 0o5755);
        assert_eq!(arca.mtime_ns, 1_767_319_445_500_000_000);
        assert_eq!(arca.ctime_ns, i64::MIN, "Go's zero time clamps");
        assert_eq!(
            (arca.uid, arca.gid, arca.links, arca.device, arca.inode),
            (1, 2, 2, 3, 9)
        );
        assert_eq!(arca.user.as_deref(), Some("u"));
        assert_eq!(arca.group, None);
        assert_eq!(arca.content, [Id([0xcd; 32])]);
        let with_xattr = node_json(r#","extended_attributes":[{"name":"user.k","value":"dmFs"}]"#);
        let arca = serde_json::from_str::<ResticNode>(&with_xattr)
            .unwrap()
            .to_arca()
            .unwrap();
        assert_eq!(arca.xattrs[0].value, b"val");
        let bad_name = node_json("").replace(r#""name":"f""#, r#""name":"..""#);
        assert!(
            serde_json::from_str::<ResticNode>(&bad_name)
                .unwrap()
                .to_arca()
                .is_err()
        );
        let slash = node_json("").replace(r#""name":"f""#, r#""name":"a/b""#);
        assert!(
            serde_json::from_str::<ResticNode>(&slash)
                .unwrap()
                .to_arca()
                .is_err()
        );
        let dir_without_tree = node_json("").replace(r#""type":"file""#, r#""type":"dir""#);
        assert!(
            serde_json::from_str::<ResticNode>(&dir_without_tree)
                .unwrap()
                .to_arca()
                .is_err()
        );
    }

    #[test]
    fn trees_must_be_sorted_and_unique() {
        let node: ResticNode = serde_json::from_str(&node_json("")).unwrap();
        let mut second = node.clone();
        second.name = "g".into();
        assert!(
            ResticTree {
                nodes: vec![node.clone(), second.clone()]
            }
            .to_arca()
            .is_ok()
        );
        assert!(
            ResticTree {
                nodes: vec![second, node.clone()]
            }
            .to_arca()
            .is_err()
        );
        assert!(
            ResticTree {
                nodes: vec![node.clone(), node]
            }
            .to_arca()
            .is_err()
        );
    }

    proptest! {
        #[test]
        fn unquote_inverts_escaping(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            // Escape every byte as \xHH: always valid Go quoting.
            let quoted: String = bytes.iter().map(|b| format!("\\x{b:02x}")).collect();
            prop_assert_eq!(go_unquote(&quoted).unwrap(), bytes);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(tree) = ResticTree::decode(&bytes) {
                let _ = tree.to_arca();
            }
        }
    }
}
