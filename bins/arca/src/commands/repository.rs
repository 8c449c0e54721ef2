//! `arca repository destroy`: make the whole repository unreadable (see
//! `arca_repo::destroy`).

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::bail;
use arca_repo::destroy::destroy;

use crate::Exit;
use crate::context::Context;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Delete every key file, keyring and the config: nothing opens the
    /// repository afterwards (its data stays, unreadable). Asks for the
    /// repository's full ID unless --confirm gives it
    Destroy {
        /// The repository's full ID (`arca cat config` shows it), for scripts
        #[arg(long, value_name = "REPOSITORY_ID")]
        confirm: Option<String>,
    },
}

pub(crate) async fn run(args: Args, context: &Context) -> anyhow::Result<Exit> {
    let Action::Destroy { confirm } = args.action;
    let opened = context.open_repository().await?;
    let repo = &opened.repository;
    let confirmation = match confirm {
        Some(confirmation) => confirmation,
        None => ask_for_id(&repo.config().id.to_hex()).await?,
    };
    let report = destroy(repo, &confirmation).await?;
    // The record could only be sealed under keys that no longer exist.
    context.audit.forget_repository();
    let output = context.output;
    if output.is_json() {
        output.json(&report)?;
    } else {
        output.result(format_args!(
            "destroyed repository {}: deleted {} key file(s), {} keyring(s) and the config; \
             its data can no longer be decrypted",
            repo.config().id.short(),
            report.key_files,
            report.keyrings
        ))?;
    }
    Ok(Exit::Success)
}

/// Asks on the terminal for the repository's ID; without a terminal the
/// caller must pass `--confirm`.
async fn ask_for_id(id: &str) -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("not destroying anything: pass --confirm <repository ID> (no terminal to ask on)");
    }
    let prompt = format!(
        "This deletes every key of repository {id}; nothing can read its data afterwards.\n\
         Type the repository ID to confirm: "
    );
    tokio::task::spawn_blocking(move || {
        let mut stderr = std::io::stderr().lock();
        stderr.write_all(prompt.as_bytes())?;
        stderr.flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok(line.trim().to_owned())
    })
    .await?
}
