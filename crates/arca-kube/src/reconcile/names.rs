//! Names and labels of the objects the operator creates: VolSync's, so an object moved from
//! VolSync finds its cache volume where VolSync left it.

/// `app.kubernetes.io/created-by`, on everything the operator creates.
pub const CREATED_BY_LABEL: &str = "app.kubernetes.io/created-by";
/// The value of [`CREATED_BY_LABEL`].
pub const CREATED_BY_VALUE: &str = "arca";
/// Objects made for one sync carry this label with the owner's uid, and are deleted when the sync
/// completes (VolSync's label).
pub const CLEANUP_LABEL: &str = "volsync.backube/cleanup";
/// A VolumeSnapshot the user labelled to keep (VolSync's label): never deleted by the operator.
pub const DO_NOT_DELETE_LABEL: &str = "volsync.backube/do-not-delete";
/// The uid of the ReplicationSource/Destination an object was made for (for listing).
pub const OWNER_LABEL: &str = "arca.dev/owner-uid";
/// The finalizer that holds a deleted object until its temporary objects are gone.
pub const FINALIZER: &str = "arca.dev/cleanup";

/// Longest name of a Kubernetes object that may also be a label value.
const MAX_NAME: usize = 63;

/// VolSync's infix for a source's or a destination's objects.
fn role(source: bool) -> &'static str {
    if source { "src" } else { "dst" }
}

/// `prefix + name + suffix`, or, when that is longer than 63 characters, the name replaced by its
/// CRC-32 in hex (as VolSync does for long names).
fn bounded(prefix: &str, name: &str, suffix: &str) -> String {
    let full = format!("{prefix}{name}{suffix}");
    if full.len() <= MAX_NAME {
        full
    } else {
        format!("{prefix}{:08x}{suffix}", crc32(name.as_bytes()))
    }
}

/// CRC-32 (IEEE), bitwise: names are short and computed rarely.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The mover Job: `volsync-src-<name>` / `volsync-dst-<name>`.
pub fn job_name(source: bool, name: &str) -> String {
    bounded(&format!("volsync-{}-", role(source)), name, "")
}

/// The ConfigMap holding a source's compliance report: `<name>-arca-report`.
pub fn report_config_map_name(name: &str) -> String {
    bounded("", name, "-arca-report")
}

/// The mover's ServiceAccount, Role and RoleBinding: `volsync-src-<name>` / `volsync-dst-<name>`.
pub fn mover_account_name(source: bool, name: &str) -> String {
    job_name(source, name)
}

/// The cache PVC: `volsync-src-<name>-cache` / `volsync-dst-<name>-cache`.
pub fn cache_pvc_name(source: bool, name: &str) -> String {
    bounded(&format!("volsync-{}-", role(source)), name, "-cache")
}

/// A source's point-in-time copy (VolumeSnapshot and PVC): `volsync-<name>-src`.
pub fn copy_name(name: &str) -> String {
    bounded("volsync-", name, "-src")
}

/// A destination's provisioned PVC: `volsync-<name>-dest`.
pub fn destination_pvc_name(name: &str) -> String {
    bounded("volsync-", name, "-dest")
}

/// A destination's image snapshot after a restore: `<pvc>-<YYYYMMDDHHMMSS>` (VolSync's), from
/// the time the restore finished.
pub fn image_snapshot_name(pvc: &str, finished: jiff::Timestamp) -> String {
    let stamp = finished.strftime("%Y%m%d%H%M%S").to_string();
    bounded("", pvc, &format!("-{stamp}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volsync_names() {
        assert_eq!(job_name(true, "app"), "volsync-src-app");
        assert_eq!(job_name(false, "app"), "volsync-dst-app");
        assert_eq!(cache_pvc_name(true, "app"), "volsync-src-app-cache");
        assert_eq!(cache_pvc_name(false, "app"), "volsync-dst-app-cache");
        assert_eq!(copy_name("app"), "volsync-app-src");
        assert_eq!(destination_pvc_name("app"), "volsync-app-dest");
        let t: jiff::Timestamp = "2026-03-04T05:06:07Z".parse().unwrap();
        assert_eq!(
            image_snapshot_name("volsync-app-dest", t),
            "volsync-app-dest-20260304050607"
        );
    }

    #[test]
    fn long_names_are_hashed_and_bounded() {
        let long = "a".repeat(80);
        let name = cache_pvc_name(true, &long);
        assert!(name.len() <= MAX_NAME, "{name}");
        assert!(name.starts_with("volsync-src-") && name.ends_with("-cache"));
        assert_ne!(name, cache_pvc_name(true, &"b".repeat(80)));
        // The standard check value of CRC-32/IEEE.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
