//! Finding the repository password, from restic's sources in restic's order:
//! password command, password file, `ARCA_PASSWORD`/`RESTIC_PASSWORD`, and
//! only on a terminal an interactive prompt.
//!
//! The password never appears in an error message, a log line or `Debug`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context, bail};
use nix::sys::termios::{LocalFlags, SetArg, Termios, tcgetattr, tcsetattr};
use zeroize::Zeroizing;

use crate::context::env_either;

/// What the password is for; a new repository's password is asked twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Open,
    Create,
    /// Opening the repository `copy` reads from (`ARCA_FROM_PASSWORD`).
    OpenSource,
}

/// A password, wiped from memory when dropped.
pub(crate) struct Password(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Password {
    /// The password with surrounding whitespace removed (as restic does, so a
    /// trailing newline in a file or command output is not part of it).
    fn trimmed(raw: Vec<u8>) -> Self {
        let raw = Zeroizing::new(raw);
        Password(Zeroizing::new(raw.trim_ascii().to_vec()))
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The configured non-interactive sources (flags or their environment variables).
#[derive(Debug, Clone)]
pub(crate) struct PasswordSources {
    pub(crate) file: Option<PathBuf>,
    pub(crate) command: Option<String>,
}

impl PasswordSources {
    pub(crate) fn read(&self, purpose: Purpose) -> anyhow::Result<Password> {
        let password = match (&self.command, &self.file) {
            (Some(_), Some(_)) => {
                bail!("both a password command and a password file are given; use only one")
            }
            (Some(command), None) => from_command(command)?,
            (None, Some(file)) => from_file(file)?,
            (None, None) => {
                let (arca, restic, flag) = if purpose == Purpose::OpenSource {
                    (
                        "ARCA_FROM_PASSWORD",
                        "RESTIC_FROM_PASSWORD",
                        "--from-password-file",
                    )
                } else {
                    ("ARCA_PASSWORD", "RESTIC_PASSWORD", "--password-file")
                };
                match env_either(arca, restic) {
                    Some(password) => Password::trimmed(password.into_bytes()),
                    None if std::io::stdin().is_terminal() => prompt(purpose)?,
                    None => bail!("no password given: set {arca} or {flag}"),
                }
            }
        };
        if password.as_bytes().is_empty() {
            bail!("the password is empty; an empty password cannot protect a repository");
        }
        Ok(password)
    }
}

/// A new password for `key add`/`key passwd`: from `file` (restic's
/// `--new-password-file`), else asked twice on the terminal. Never the
/// repository's own password sources: those hold the old password.
pub(crate) fn new_password(file: Option<&Path>) -> anyhow::Result<Password> {
    let password = match file {
        Some(file) => from_file(file)?,
        None if std::io::stdin().is_terminal() => prompt(Purpose::Create)?,
        None => bail!("no new password given: use --new-password-file"),
    };
    if password.as_bytes().is_empty() {
        bail!("the new password is empty; an empty password cannot protect a repository");
    }
    Ok(password)
}

fn from_file(path: &Path) -> anyhow::Result<Password> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read password file {}", path.display()))?;
    Ok(Password::trimmed(bytes))
}

/// Runs `command` with `sh -c`; stderr and stdin stay attached so tools like
/// `pass` can talk to the user. Its output is never echoed in errors.
fn from_command(command: &str) -> anyhow::Result<Password> {
    let output = Command::new("sh")
        .args(["-c", command])
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run the password command")?;
    let password = Password::trimmed(output.stdout);
    if !output.status.success() {
        bail!("the password command failed ({})", output.status);
    }
    Ok(password)
}

fn prompt(purpose: Purpose) -> anyhow::Result<Password> {
    let question = match purpose {
        Purpose::Create => "enter password for new repository: ",
        Purpose::Open => "enter password for repository: ",
        Purpose::OpenSource => "enter password for source repository: ",
    };
    let password = read_hidden(question)?;
    if purpose == Purpose::Create
        && read_hidden("enter password again: ")?.as_bytes() != password.as_bytes()
    {
        bail!("the passwords do not match");
    }
    Ok(password)
}

/// Terminal settings to put back if the process is interrupted while a
/// prompt has echo switched off.
static TERMINAL_TO_RESTORE: Mutex<Option<Termios>> = Mutex::new(None);

/// Switches terminal echo back on if a prompt was interrupted; called on exit.
pub(crate) fn restore_terminal() {
    let saved = TERMINAL_TO_RESTORE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(saved) = saved {
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, &saved);
    }
}

/// Reads one line from the terminal with echo switched off.
fn read_hidden(question: &str) -> anyhow::Result<Password> {
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("cannot read the terminal settings")?;
    let mut silent = saved.clone();
    silent.local_flags.remove(LocalFlags::ECHO);
    *TERMINAL_TO_RESTORE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(saved.clone());
    tcsetattr(&stdin, SetArg::TCSANOW, &silent).context("cannot switch terminal echo off")?;
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "{question}");
    let _ = stderr.flush();
    let mut line = Zeroizing::new(String::new());
    let read = stdin.lock().read_line(&mut line);
    let _ = writeln!(stderr);
    restore_terminal();
    read.context("cannot read the password from the terminal")?;
    Ok(Password::trimmed(line.as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_command_output_are_trimmed_like_restic() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "  s3cret\n").unwrap();
        let sources = PasswordSources {
            file: Some(file),
            command: None,
        };
        assert_eq!(sources.read(Purpose::Open).unwrap().as_bytes(), b"s3cret");

        let sources = PasswordSources {
            file: None,
            command: Some("printf 'from-cmd\\n'".into()),
        };
        assert_eq!(sources.read(Purpose::Open).unwrap().as_bytes(), b"from-cmd");
    }

    #[test]
    fn failures_never_show_the_password() {
        let sources = PasswordSources {
            file: None,
            command: Some("echo hunter2; exit 3".into()),
        };
        let err = format!("{:#}", sources.read(Purpose::Open).unwrap_err());
        assert!(err.contains("password command failed"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let sources = PasswordSources {
            file: Some(dir.path().join("missing")),
            command: Some("echo hunter2".into()),
        };
        assert!(sources.read(Purpose::Open).is_err());
        assert_eq!(
            format!("{:?}", Password::trimmed(b"hunter2".to_vec())),
            "Password(..)"
        );
    }

    #[test]
    fn empty_password_is_refused() {
        let sources = PasswordSources {
            file: None,
            command: Some("true".into()),
        };
        let err = sources.read(Purpose::Create).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }
}
