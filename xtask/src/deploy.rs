//! Checks of `deploy/` with the real tools that read it: `promtool` (from
//! Debian's `prometheus` package) validates the alerting rules and runs their
//! unit tests, so every alert is proven to fire and to stay quiet.

use std::process::Command;

use crate::process::{self, project_root};

/// `promtool check rules` and `promtool test rules` over `deploy/monitoring`,
/// installing promtool first where it is missing.
pub(crate) fn check() -> anyhow::Result<()> {
    process::ensure_debian_packages(&[(&["promtool", "--version"], "prometheus")])?;
    let monitoring = project_root().join("deploy/monitoring");
    process::run(Command::new("promtool").current_dir(&monitoring).args([
        "check",
        "rules",
        "rules.yaml",
    ]))?;
    process::run(Command::new("promtool").current_dir(&monitoring).args([
        "test",
        "rules",
        "rules_test.yaml",
    ]))
}
