//! `arca key`: list, add, remove and re-password the repository's key files.

use std::path::PathBuf;

use arca_crypto::{KdfParams, KeyAccess};
use arca_repo::keys::{self, NewKey};

use super::init::KdfArgs;
use crate::Exit;
use crate::context::{Context, hostname, username};
use crate::password::new_password;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// List the key files; the one in use is marked with *
    List,
    /// Add a key file: another password for the same repository
    Add(NewKeyArgs),
    /// Remove a key file (never the last one; the one in use only with --force)
    Remove {
        /// ID (or unique prefix) of the key file, as `arca key list` shows it
        id: String,
        /// Also remove the key the repository was opened with
        #[arg(long)]
        force: bool,
    },
    /// Change the password of the key in use (adds a new key file, then
    /// removes the old one)
    Passwd(PasswordArgs),
    /// Start a new data key: data written from now on is sealed with it,
    /// older data stays readable (nothing is re-encrypted unless
    /// --reencrypt; docs/FORMAT.md §20)
    Rotate {
        /// Then seal everything under the new key, as `key reencrypt` does
        /// (resume an interrupted run with `key reencrypt`)
        #[arg(long)]
        reencrypt: bool,
    },
    /// Seal every pack, index file, snapshot, hold record, deletion mark
    /// and the config still under an older data key again under the current
    /// one (old packs are deleted by a prune after the grace period). The
    /// audit trail and the old keys themselves are not rewritten yet
    /// (docs/FORMAT.md §20)
    Reencrypt,
}

#[derive(Debug, clap::Args)]
struct PasswordArgs {
    /// Read the new password from this file (else it is asked twice)
    #[arg(long, value_name = "FILE")]
    new_password_file: Option<PathBuf>,
    /// Host name to record in the new key file [default: this host]
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// User name to record in the new key file [default: this user]
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    #[command(flatten)]
    kdf: KdfArgs,
}

#[derive(Debug, clap::Args)]
struct NewKeyArgs {
    #[command(flatten)]
    password: PasswordArgs,
    /// The new key may back up, list and restore, but not forget, prune,
    /// change keys or release holds (enforce it with storage permissions too:
    /// see docs/FORMAT.md, "Append-only clients")
    #[arg(long)]
    append_only: bool,
}

pub(crate) async fn run(args: Args, context: &Context) -> anyhow::Result<Exit> {
    let opened = context.open_repository().await?;
    let repo = &opened.repository;
    let output = context.output;
    match args.action {
        Action::List => {
            let keys = keys::list(repo).await?;
            if output.is_json() {
                output.json(&keys)?;
                return Ok(Exit::Success);
            }
            output.result(format_args!(
                " {:<10}  {:<12}  {:<12}  {:<19}  Access",
                "ID", "User", "Host", "Created"
            ))?;
            output.result("-".repeat(72))?;
            for key in &keys {
                output.result(format_args!(
                    "{}{:<10}  {:<12}  {:<12}  {:<19}  {}",
                    if key.current { "*" } else { " " },
                    key.id.short(),
                    key.username,
                    key.hostname,
                    key.created.strftime("%Y-%m-%d %H:%M:%S"),
                    if key.append_only {
                        "append-only"
                    } else {
                        "full"
                    },
                ))?;
            }
        }
        Action::Add(add) => {
            let access = if add.append_only {
                KeyAccess::AppendOnly
            } else {
                KeyAccess::Full
            };
            let kdf = add.password.kdf.params()?;
            let new_password = new_password(add.password.new_password_file.as_deref())?;
            let id = keys::add(
                repo,
                new_key(&add.password, new_password.as_bytes(), access, kdf),
            )
            .await?;
            report(context, "key_added", id, "saved new key")?;
        }
        Action::Remove { id, force } => {
            let id = keys::find(repo, &id).await?;
            keys::remove(repo, &id, force).await?;
            report(context, "key_removed", id, "removed key")?;
        }
        Action::Passwd(password) => {
            let kdf = password.kdf.params()?;
            let new_password = new_password(password.new_password_file.as_deref())?;
            let id = keys::change_password(
                repo,
                new_key(&password, new_password.as_bytes(), repo.access(), kdf),
            )
            .await?;
            report(context, "password_changed", id, "saved new key")?;
        }
        Action::Rotate {
            reencrypt: then_reencrypt,
        } => {
            let (data_key, keyring) = keys::rotate(repo).await?;
            if output.is_json() {
                output.json(&serde_json::json!({
                    "message_type": "key_rotated", "data_key": data_key, "keyring": keyring,
                }))?;
            } else {
                output.info(format_args!(
                    "new data key {data_key:08x} in keyring {}; data written from now on uses it",
                    keyring.short()
                ))?;
            }
            if then_reencrypt {
                reencrypt(&repo.reload_keyrings().await?, output).await?;
            }
        }
        Action::Reencrypt => reencrypt(repo, output).await?,
    }
    Ok(Exit::Success)
}

/// `key reencrypt`, also the second half of `key rotate --reencrypt`.
async fn reencrypt(
    repo: &arca_repo::Repository,
    output: crate::output::Output,
) -> anyhow::Result<()> {
    let report = arca_repo::rekey::reencrypt_data(repo).await?;
    if output.is_json() {
        return output.json(&report);
    }
    output.result(format_args!(
        "checked {} packs: re-encrypted {} ({} blobs, {} bytes) under data key {:08x}, \
         resealed {} index files, {} snapshots (new IDs, {} holds moved), {} hold records, \
         {} deletion marks{}; the old packs are marked and a prune deletes them after the \
         grace period",
        report.packs_checked,
        report.packs_rewritten,
        report.blobs_rewritten,
        report.bytes_rewritten,
        report.data_key,
        report.index_files_resealed,
        report.snapshots.len(),
        report.holds_moved,
        report.hold_records_resealed,
        report.marks_resealed,
        if report.config_resealed {
            " and the config"
        } else {
            ""
        },
    ))
}

fn new_key<'a>(
    args: &PasswordArgs,
    password: &'a [u8],
    access: KeyAccess,
    kdf: KdfParams,
) -> NewKey<'a> {
    NewKey {
        password,
        hostname: args.host.clone().unwrap_or_else(hostname),
        username: args.user.clone().unwrap_or_else(username),
        access,
        kdf,
    }
}

fn report(
    context: &Context,
    message_type: &str,
    id: arca_repo::Id,
    text: &str,
) -> anyhow::Result<()> {
    let output = context.output;
    if output.is_json() {
        output.json(&serde_json::json!({"message_type": message_type, "id": id}))
    } else {
        output.info(format_args!("{text} {}", id.short()))
    }
}
