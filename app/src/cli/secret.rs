//! Reading a secret (a Wi-Fi or channel password) the ways that keep it off the command line,
//! where every user of the machine can read it in the process list: a file, an environment
//! variable, or the terminal with echo off.

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The secret and where it came from ("from wifi.txt", "from $VAR", "as typed"); `None` when
/// there is no file, `env` is unset and standard input is not a terminal. A file's first line is
/// taken (`echo pw > file` adds a newline that is not part of it); `-` is standard input.
pub(super) fn read_secret(
    file: Option<&Path>,
    env: &str,
    prompt: &str,
    confirm: bool,
) -> Result<Option<(String, String)>> {
    if let Some(file) = file {
        let text = if file == Path::new("-") {
            std::io::read_to_string(std::io::stdin())
                .context("cannot read the password from standard input")?
        } else {
            std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
        };
        return Ok(Some((text.lines().next().unwrap_or("").to_string(), format!("from {}", file.display()))));
    }
    if let Ok(value) = std::env::var(env) {
        return Ok(Some((value, format!("from ${env}"))));
    }
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let first = prompt_hidden(prompt)?;
    if confirm && prompt_hidden("The same again: ")? != first {
        bail!("the two entries differ: nothing was changed");
    }
    Ok(Some((first, "as typed".into())))
}

/// Reads a line from the terminal without echoing it.
fn prompt_hidden(prompt: &str) -> Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("cannot read the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("cannot switch off echo")?;
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    eprintln!();
    read.context("cannot read the password")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
