//! Reading the agent's result document (its Job's termination message, `docs/AGENT.md`) into
//! an [`AgentResult`].
//!
//! The document is written by a pod, so it is untrusted input: anything that is not the
//! document's JSON is an error, never a panic, and fields this version does not know are
//! ignored (the document only ever gains fields).

use jiff::SignedDuration;
use serde::Deserialize;

use super::observed::{AgentResult, DrillResult, ErrorClass, ReplicaResult, ReportResult};
use crate::Error;

/// The longest document read: Kubernetes keeps at most 4096 bytes of a termination message,
/// more means it did not come from there.
const MAX_DOCUMENT_BYTES: usize = 16 * 1024;

#[derive(Deserialize)]
struct Document {
    version: u32,
    outcome: Outcome,
    #[serde(default)]
    duration_seconds: Option<f64>,
    #[serde(default)]
    actions: Vec<ActionReport>,
    #[serde(default)]
    error_class: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    drill: Option<DrillResult>,
    #[serde(default)]
    replicas: Vec<ReplicaResult>,
    #[serde(default)]
    report: Option<ReportResult>,
}

#[derive(Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Success,
    Partial,
    Failed,
}

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum ActionReport {
    Backup(Backup),
    Restore(Restore),
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Backup {
    empty_source: bool,
    snapshot_id: Option<String>,
    files_new: Option<u64>,
    files_changed: Option<u64>,
    files_unmodified: Option<u64>,
    bytes_processed: Option<u64>,
    bytes_added: Option<u64>,
    repository_bytes: Option<u64>,
    files_unreadable: Option<u64>,
}

#[derive(Deserialize)]
struct Restore {
    outcome: RestoreOutcome,
    #[serde(default)]
    snapshot_id: Option<String>,
    #[serde(default)]
    files: Option<u64>,
    #[serde(default)]
    bytes_restored: Option<u64>,
}

#[derive(Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RestoreOutcome {
    Restored,
    NoSnapshot,
    NoRepository,
}

impl AgentResult {
    /// Reads the agent's result document. Errors name what is wrong with it; they never quote
    /// more than its first bytes (the agent never writes secrets there, but a broken pod might
    /// write anything).
    pub fn from_document(text: &str) -> Result<AgentResult, Error> {
        if text.len() > MAX_DOCUMENT_BYTES {
            return Err(Error::ResultDocument {
                reason: format!(
                    "{} bytes, more than a termination message holds",
                    text.len()
                ),
            });
        }
        let document: Document =
            serde_json::from_str(text.trim()).map_err(|e| Error::ResultDocument {
                reason: format!("not the agent's JSON: {}", e.classify_text()),
            })?;
        if document.version == 0 {
            return Err(Error::ResultDocument {
                reason: "version 0".to_owned(),
            });
        }
        let mut result = AgentResult {
            success: document.outcome != Outcome::Failed,
            partial: document.outcome == Outcome::Partial,
            error_class: (document.outcome == Outcome::Failed).then_some(
                match document.error_class.as_deref() {
                    // Retrying cannot help these until someone changes something.
                    Some("config" | "wrong_password" | "corrupt") => ErrorClass::Fatal,
                    _ => ErrorClass::Retryable,
                },
            ),
            message: document.error,
            duration: document
                .duration_seconds
                .filter(|s| s.is_finite() && *s >= 0.0)
                .and_then(|s| SignedDuration::try_from_secs_f64(s).ok()),
            drill: document.drill,
            replicas: document.replicas,
            report: document.report,
            ..AgentResult::default()
        };
        let mut files_unreadable = None;
        for action in document.actions {
            match action {
                ActionReport::Backup(backup) => {
                    result.snapshot_id = backup.snapshot_id;
                    result.source_empty = backup.empty_source;
                    result.files_new = backup.files_new;
                    result.files_changed = backup.files_changed;
                    result.files_unmodified = backup.files_unmodified;
                    result.bytes_processed = backup.bytes_processed;
                    result.bytes_added = backup.bytes_added;
                    result.repository_size = backup.repository_bytes.or(result.repository_size);
                    files_unreadable = backup.files_unreadable;
                }
                ActionReport::Restore(restore) => {
                    result.snapshot_id = match restore.outcome {
                        RestoreOutcome::Restored => restore.snapshot_id,
                        RestoreOutcome::NoSnapshot | RestoreOutcome::NoRepository => None,
                    };
                    result.files_restored = restore.files;
                    result.bytes_processed = restore.bytes_restored;
                }
                ActionReport::Other => {}
            }
        }
        // A failed replica also makes the run partial; `partial` is about the backup's own
        // files, and the replica's failure is in `replicas`.
        if result.replicas.iter().any(|r| r.error.is_some()) && files_unreadable == Some(0) {
            result.partial = false;
        }
        Ok(result)
    }
}

/// What kind of JSON error, without quoting the input.
trait ClassifyText {
    fn classify_text(&self) -> String;
}

impl ClassifyText for serde_json::Error {
    fn classify_text(&self) -> String {
        let kind = match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected shape",
            serde_json::error::Category::Eof => "truncated",
        };
        format!("{kind} at line {} column {}", self.line(), self.column())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKUP: &str = r#"{"version":1,"outcome":"success","exit_code":0,"started":"2026-01-02T02:00:00Z",
        "duration_seconds":12.5,"host":"volsync","actions":[
        {"action":"unlock","stale_locks_removed":0},
        {"action":"backup","empty_source":false,"repository_initialized":false,"snapshot_id":"ab12",
         "files_new":3,"files_changed":1,"files_unmodified":7,"files_unreadable":0,"dirs_new":1,
         "dirs_changed":0,"dirs_unmodified":2,"bytes_processed":1000,"bytes_added":400,"bytes_stored":300,
         "duration_seconds":10.0,"forget":{"kept":3,"removed":1},"repository_bytes":123456},
        {"action":"prune","packs_deleted":0,"bytes_freed":0,"packs_marked":0,"bytes_marked":0,"packs_repacked":0}]}"#;

    #[test]
    fn a_backup_document_reads_into_the_result() {
        let result = AgentResult::from_document(BACKUP).unwrap();
        assert!(result.success && !result.partial);
        assert_eq!(result.snapshot_id.as_deref(), Some("ab12"));
        assert_eq!(
            (
                result.files_new,
                result.files_changed,
                result.files_unmodified
            ),
            (Some(3), Some(1), Some(7))
        );
        assert_eq!(
            (result.bytes_processed, result.bytes_added),
            (Some(1000), Some(400))
        );
        assert_eq!(result.repository_size, Some(123456));
        assert_eq!(result.duration, Some(SignedDuration::from_millis(12_500)));
        assert_eq!(result.error_class, None);
    }

    #[test]
    fn failures_partials_and_restores() {
        let failed = r#"{"version":1,"outcome":"failed","exit_code":12,"started":"2026-01-02T02:00:00Z",
            "duration_seconds":1,"host":"volsync","actions":[],"failed_action":"backup",
            "error_class":"wrong_password","error":"the password opens no key"}"#;
        let result = AgentResult::from_document(failed).unwrap();
        assert!(!result.success);
        assert_eq!(result.error_class, Some(ErrorClass::Fatal));
        assert_eq!(result.message.as_deref(), Some("the password opens no key"));
        let retryable = failed.replace("wrong_password", "retryable");
        assert_eq!(
            AgentResult::from_document(&retryable).unwrap().error_class,
            Some(ErrorClass::Retryable)
        );

        let partial = BACKUP.replace(r#""outcome":"success""#, r#""outcome":"partial""#);
        let result = AgentResult::from_document(&partial).unwrap();
        assert!(result.success && result.partial);

        let restore = r#"{"version":1,"outcome":"success","actions":[{"action":"restore","outcome":"restored",
            "snapshot_id":"cd34","files":5,"dirs":1,"bytes_restored":777,"bytes_read":800,"deleted":0,
            "skipped":0,"duration_seconds":2.0}]}"#;
        let result = AgentResult::from_document(restore).unwrap();
        assert_eq!(result.snapshot_id.as_deref(), Some("cd34"));
        assert_eq!(
            (result.files_restored, result.bytes_processed),
            (Some(5), Some(777))
        );
        let nothing = restore.replace(r#""outcome":"restored""#, r#""outcome":"no_snapshot""#);
        assert_eq!(
            AgentResult::from_document(&nothing).unwrap().snapshot_id,
            None
        );
    }

    #[test]
    fn the_report_section_is_read_and_unjudged_figures_stay_absent() {
        // As the agent writes it after a failed drill: no policy, so no retention figure.
        let document = r#"{"version":1,"outcome":"failed","actions":[{"action":"report"}],
            "failed_action":"drill","error_class":"failed","error":"drill failed",
            "report":{"window_days":30,"compliant":false,"backups":2,"failures":0,
                "success_rate":1.0,"longest_gap_seconds":61.5,"rpo_met":true,
                "audit_intact":true,"holds":0,"key_age_days":0.5,"rotation_overdue":false,
                "repository_bytes":4096,"a_later_field":1}}"#;
        let result = AgentResult::from_document(document).unwrap();
        assert_eq!(
            result.report,
            Some(ReportResult {
                window_days: 30,
                compliant: false,
                backups: 2,
                failures: 0,
                success_rate: Some(1.0),
                longest_gap_seconds: Some(61.5),
                rpo_met: Some(true),
                retention_conforms: None,
                audit_intact: Some(true),
                holds: 0,
                key_age_days: Some(0.5),
                rotation_overdue: false,
                repository_bytes: 4096,
            })
        );
        assert_eq!(AgentResult::from_document(BACKUP).unwrap().report, None);
    }

    #[test]
    fn drill_and_replica_sections_are_read() {
        let drill = r#"{"version":1,"outcome":"failed","actions":[],"failed_action":"drill",
            "error_class":"failed","error":"drill failed: RTO missed",
            "drill":{"passed":false,"measured_seconds":42.5,"rto_seconds":30.0,
                "bytes_verified":2048,"files_verified":7,"snapshot":"ab12","reason":"RTO missed"}}"#;
        let result = AgentResult::from_document(drill).unwrap();
        assert_eq!(
            result.drill,
            Some(DrillResult {
                passed: false,
                measured_seconds: 42.5,
                rto_seconds: Some(30.0),
                bytes_verified: 2048,
                files_verified: 7,
                snapshot_id: Some("ab12".to_owned()),
                reason: Some("RTO missed".to_owned()),
            })
        );
        let replicated = BACKUP.replace(r#""outcome":"success""#, r#""outcome":"partial""#);
        let replicated = replicated.replace(
            r#""host":"volsync","#,
            r#""host":"volsync","replicas":[{"name":"dr","copied":1,"lag_snapshots":0,"lag_seconds":0.0},
                {"name":"nfs","copied":0,"error":"unreachable"}],"#,
        );
        let result = AgentResult::from_document(&replicated).unwrap();
        assert!(!result.partial, "all files were read");
        assert_eq!(result.replicas.len(), 2);
        assert_eq!(
            (result.replicas[0].copied, result.replicas[0].lag_snapshots),
            (1, Some(0))
        );
        assert_eq!(result.replicas[1].error.as_deref(), Some("unreachable"));
        assert_eq!(result.replicas[1].lag_seconds, None);
        assert!(
            AgentResult::from_document(BACKUP)
                .unwrap()
                .replicas
                .is_empty()
        );
    }

    #[test]
    fn broken_documents_are_errors_that_do_not_quote_them() {
        for text in [
            "",
            "{",
            "null",
            r#"{"version":1}"#,
            r#"{"version":0,"outcome":"success"}"#,
            "RESTIC_PASSWORD=hunter2",
        ] {
            let error = AgentResult::from_document(text).unwrap_err().to_string();
            assert!(!error.contains("hunter2"), "{error}");
        }
        assert!(AgentResult::from_document(&" ".repeat(MAX_DOCUMENT_BYTES + 1)).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,300}") {
            let _ = AgentResult::from_document(&text);
        }

        #[test]
        fn mangled_documents_never_panic(cut in 0usize..BACKUP.len(), byte in 0u8..128) {
            let mut bytes = BACKUP.as_bytes().to_vec();
            bytes[cut] = byte;
            if let Ok(text) = std::str::from_utf8(&bytes) {
                let _ = AgentResult::from_document(text);
            }
            let _ = AgentResult::from_document(&BACKUP[..cut]);
        }
    }
}
