//! `arca init`: create a repository.

use anyhow::Context as _;
use arca_chunk::ChunkerParams;
use arca_crypto::KdfParams;
use arca_repo::Repository;
use arca_repo::repository::InitOptions;

use crate::Exit;
use crate::context::{Context, hostname, username};
use crate::password::Purpose;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// zstd level for stored data: 0 = off, 1 (fast) to 22 (small) [default: 3]
    #[arg(long, value_name = "LEVEL")]
    compression: Option<i32>,
    /// Average chunk size in KiB, a power of two from 1 to 2048 [default: 256].
    /// Smaller chunks re-store less of a file changed in scattered places (a
    /// database); larger ones keep the in-memory index smaller (48 bytes per
    /// chunk). Fixed for the repository's life.
    #[arg(long, value_name = "KiB")]
    chunk_size: Option<u32>,
    #[command(flatten)]
    kdf: KdfArgs,
}

/// The cost of the key derivation that guards a new key file's password.
#[derive(Debug, clap::Args)]
pub(crate) struct KdfArgs {
    /// Memory the password's key derivation (Argon2id, 4 lanes) takes, in
    /// MiB, every time the repository is opened [default: 64]. Less suits
    /// machines or pods with little memory, but makes guessing the password
    /// from a stolen key file cheaper.
    #[arg(long, value_name = "MiB", env = "ARCA_KDF_MEMORY")]
    kdf_memory: Option<u32>,
    /// Passes the key derivation makes over that memory [default: 3]
    #[arg(long, value_name = "N", env = "ARCA_KDF_ITERATIONS")]
    kdf_iterations: Option<u32>,
}

impl KdfArgs {
    /// The parameters asked for, the defaults for what was not.
    pub(crate) fn params(&self) -> anyhow::Result<KdfParams> {
        let default = KdfParams::default();
        let memory_kib = match self.kdf_memory {
            None => default.m_cost_kib,
            Some(mib) => mib
                .checked_mul(1024)
                .ok_or_else(|| anyhow::anyhow!("--kdf-memory {mib} MiB is too large"))?,
        };
        let iterations = self.kdf_iterations.unwrap_or(default.t_cost);
        KdfParams::new(memory_kib, iterations, default.p_cost)
            .context("invalid --kdf-memory or --kdf-iterations")
    }
}

pub(crate) async fn run(args: Args, context: &Context) -> anyhow::Result<Exit> {
    let mut options = InitOptions {
        hostname: hostname(),
        username: username(),
        kdf: args.kdf.params()?,
        ..InitOptions::default()
    };
    if let Some(level) = args.compression {
        options.compression_level = level;
    }
    if let Some(kib) = args.chunk_size {
        let avg = kib
            .checked_mul(1024)
            .ok_or_else(|| anyhow::anyhow!("chunk size {kib} KiB is too large"))?;
        options.chunker =
            ChunkerParams::with_average(avg).with_context(|| format!("chunk size {kib} KiB"))?;
    }
    let location = context.location()?;
    let store = context.open_store()?;
    let password = context.password(Purpose::Create).await?;
    let repository = Repository::init(store.backend, password.as_bytes(), options).await?;
    context.audit.opened(&repository, &store.requests);
    let id = repository.config().id;
    let output = context.output;
    if output.is_json() {
        output.json(
            &serde_json::json!({"message_type": "initialized", "id": id, "repository": location}),
        )?;
    } else {
        output.info(format_args!(
            "created arca repository {} at {location}",
            id.short()
        ))?;
        output.info(
            "\nKnowledge of the password is required to access the repository.\n\
             Losing the password means the data in it is irrecoverably lost.",
        )?;
    }
    Ok(Exit::Success)
}
