//! `cargo xtask e2e`: builds the workspace's binaries as the test step does,
//! starts the local S3 server for the in-memory cluster and runs the
//! end-to-end driver, `arca-e2e` (crates/arca-e2e, where the scenario and
//! its options are documented), with the arguments given.

use crate::process::{self, project_root, target_dir};
use crate::services;

/// The local S3 server's bucket for the run's repositories.
const BUCKET: &str = "arca-e2e";

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let binaries = process::build_debug_binaries()?;
    let mut driver = std::process::Command::new(binaries.join("arca-e2e"));
    driver
        .arg("--work")
        .arg(target_dir().join("e2e"))
        .args(args);
    // The scenario on the in-memory cluster gets this machine's S3 server; a
    // real cluster reaches its own object store, and --scale stores nothing.
    let needs_no_s3 =
        |arg: &String| ["--kubeconfig", "--scale", "--help", "-h"].contains(&arg.as_str());
    let _s3 = if args.iter().any(needs_no_s3) {
        None
    } else {
        let s3 = services::start(&project_root())?;
        services::create_s3_bucket(&s3.endpoint, BUCKET)?;
        driver.arg("--s3").arg(format!("{}/{BUCKET}", s3.endpoint));
        Some(s3)
    };
    process::run(&mut driver)
}
