//! `arca init`: create a repository.

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
}

pub(crate) async fn run(args: Args, context: &Context) -> anyhow::Result<Exit> {
    let location = context.location()?;
    let store = context.open_store()?;
    let password = context.password(Purpose::Create).await?;
    let mut options = InitOptions {
        hostname: hostname(),
        username: username(),
        ..InitOptions::default()
    };
    if let Some(level) = args.compression {
        options.compression_level = level;
    }
    let repository = Repository::init(store.backend, password.as_bytes(), options).await?;
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
