//! The repository password, from the sources a non-interactive process has:
//! a command, a file, or the variable itself, in restic's order (command,
//! file, value), each `ARCA_*` variable winning over its `RESTIC_*` twin.
//!
//! Like restic, surrounding whitespace is trimmed, so a trailing newline in a
//! file or a command's output is not part of the password. The password never
//! appears in an error message, a log line or `Debug`. There is no prompt:
//! the CLI adds one on top of these sources.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use zeroize::Zeroizing;

use crate::{Error, Result};

/// A password, wiped from memory when dropped.
pub struct Password(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Password {
    /// The password in `raw` with surrounding ASCII whitespace removed.
    pub fn trimmed(raw: Vec<u8>) -> Self {
        let raw = Zeroizing::new(raw);
        Password(Zeroizing::new(raw.trim_ascii().to_vec()))
    }

    /// The password bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Where the password comes from.
#[derive(Clone)]
pub enum PasswordSource {
    /// Run this with `sh -c`; its standard output is the password.
    Command(String),
    /// Read this file.
    File(PathBuf),
    /// The password itself (from `ARCA_PASSWORD` / `RESTIC_PASSWORD`).
    Value(Zeroizing<String>),
}

impl std::fmt::Debug for PasswordSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The command line may embed a secret; say only that there is one.
            PasswordSource::Command(_) => f.write_str("PasswordSource::Command(..)"),
            PasswordSource::File(path) => {
                f.debug_tuple("PasswordSource::File").field(path).finish()
            }
            PasswordSource::Value(_) => f.write_str("PasswordSource::Value(..)"),
        }
    }
}

impl PasswordSource {
    /// Finds the configured source in `env`: `ARCA_PASSWORD_COMMAND` /
    /// `RESTIC_PASSWORD_COMMAND`, then `…_PASSWORD_FILE`, then `…_PASSWORD`.
    /// A command and a file together are refused, as restic does.
    pub fn from_env(env: &impl Fn(&str) -> Option<String>) -> Result<PasswordSource> {
        let lookup = |arca: &str, restic: &str| {
            [arca, restic]
                .into_iter()
                .find_map(|name| env(name).filter(|v| !v.is_empty()))
        };
        let command = lookup("ARCA_PASSWORD_COMMAND", "RESTIC_PASSWORD_COMMAND");
        let file = lookup("ARCA_PASSWORD_FILE", "RESTIC_PASSWORD_FILE");
        match (command, file) {
            (Some(_), Some(_)) => Err(Error::config(
                "RESTIC_PASSWORD_COMMAND",
                "both a password command and a password file are set; use only one",
            )),
            (Some(command), None) => Ok(PasswordSource::Command(command)),
            (None, Some(file)) => Ok(PasswordSource::File(PathBuf::from(file))),
            (None, None) => lookup("ARCA_PASSWORD", "RESTIC_PASSWORD")
                .map(|value| PasswordSource::Value(Zeroizing::new(value)))
                .ok_or_else(|| {
                    Error::config(
                        "RESTIC_PASSWORD",
                        "no password given: set RESTIC_PASSWORD (or ARCA_PASSWORD, \
                         a …_PASSWORD_FILE or a …_PASSWORD_COMMAND)",
                    )
                }),
        }
    }

    /// Reads the password. Blocks while a command runs: call it off the
    /// async runtime's worker threads.
    pub fn read(&self) -> Result<Password> {
        let password = match self {
            PasswordSource::Value(value) => Password::trimmed(value.as_bytes().to_vec()),
            PasswordSource::File(path) => {
                let bytes = std::fs::read(path).map_err(|err| Error::Password {
                    reason: format!("cannot read password file {}: {err}", path.display()),
                })?;
                Password::trimmed(bytes)
            }
            PasswordSource::Command(command) => {
                // stdin is closed: nobody is there to answer a prompt.
                let output = Command::new("sh")
                    .args(["-c", command])
                    .stdin(Stdio::null())
                    .stderr(Stdio::inherit())
                    .output()
                    .map_err(|err| Error::Password {
                        reason: format!("cannot run the password command: {err}"),
                    })?;
                let password = Password::trimmed(output.stdout);
                if !output.status.success() {
                    return Err(Error::Password {
                        reason: format!("the password command failed ({})", output.status),
                    });
                }
                password
            }
        };
        if password.as_bytes().is_empty() {
            return Err(Error::Password {
                reason: "the password is empty; an empty password cannot protect a repository"
                    .into(),
            });
        }
        Ok(password)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn sources_in_restic_order_arca_before_restic() {
        let read = |pairs: &[(&str, &str)]| {
            PasswordSource::from_env(&env_of(pairs))
                .and_then(|s| s.read())
                .map(|p| String::from_utf8(p.as_bytes().to_vec()).unwrap())
        };
        assert_eq!(read(&[("RESTIC_PASSWORD", " pw\n")]).unwrap(), "pw");
        assert_eq!(
            read(&[("RESTIC_PASSWORD", "restic"), ("ARCA_PASSWORD", "arca")]).unwrap(),
            "arca"
        );
        assert_eq!(
            read(&[("ARCA_PASSWORD", ""), ("RESTIC_PASSWORD", "restic")]).unwrap(),
            "restic",
            "an empty variable counts as unset"
        );
        assert_eq!(
            read(&[
                ("RESTIC_PASSWORD", "value"),
                ("RESTIC_PASSWORD_COMMAND", "printf 'from-cmd\\n'")
            ])
            .unwrap(),
            "from-cmd"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "  from-file\n").unwrap();
        let file = file.to_str().unwrap();
        assert_eq!(
            read(&[("RESTIC_PASSWORD", "value"), ("RESTIC_PASSWORD_FILE", file)]).unwrap(),
            "from-file"
        );
        let both = read(&[
            ("RESTIC_PASSWORD_FILE", file),
            ("ARCA_PASSWORD_COMMAND", "echo x"),
        ])
        .unwrap_err();
        assert!(both.to_string().contains("only one"), "{both}");
        let none = read(&[]).unwrap_err();
        assert!(none.to_string().contains("RESTIC_PASSWORD"), "{none}");
    }

    #[test]
    fn failures_and_debug_never_show_the_password() {
        let failing = PasswordSource::Command("echo hunter2; exit 3".into());
        let err = failing.read().unwrap_err().to_string();
        assert!(err.contains("password command failed"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let value = PasswordSource::Value(Zeroizing::new("hunter2".into()));
        assert!(!format!("{value:?}").contains("hunter2"));
        assert!(!format!("{failing:?}").contains("hunter2"));
        assert_eq!(format!("{:?}", value.read().unwrap()), "Password(..)");
        let empty = PasswordSource::Command("true".into()).read().unwrap_err();
        assert!(empty.to_string().contains("empty"), "{empty}");
    }
}
