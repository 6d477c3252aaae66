//! Docs match the binary: every command in README.md and device-firmware/README.md is run, so
//! neither can drift from what `otaforge` does.
//!
//! The rules the docs are written to (a failing rule names the file and line):
//! - a fenced block of shell commands is ```` ```sh ````: this test runs it, command by command
//!   (`\` continues a line, a trailing `# comment` is dropped), in document order, each file in a
//!   fresh project of its own (`OTAFORGE_DIR`) with a fresh working directory holding a copy of
//!   `device-firmware/`;
//! - a block that cannot run here (a toolchain, real hardware) is ```` ```sh no-run ```` and its
//!   first line is a comment saying what runs it, or why nothing can (`# needs arduino-cli`);
//! - output and file trees are ```` ```text ````; any other block (`bash`, `console`, `shell`, or
//!   none) fails, and so does a non-shell block (`c`, `ini`, …) holding a command line;
//! - a command shown failing ends with `# fails: TEXT`: it must fail, saying TEXT;
//! - the values a reader replaces (their port, their host, their own builds) are made real by the
//!   tables below, each entry with its reason.
//!
//! Long-running commands (`serve`, `monitor`, `flash --monitor`, `sim serial`) run in the
//! background until they print the line that shows they are up; `serve` then keeps running to
//! the end of its block (the commands after it talk to it), the others are stopped at once, as
//! with Ctrl-C, and must stop cleanly.

mod flags;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use otaforge_firmware::{Chip, ImageBuilder};
use otaforge_sim::serial::{self as sim, SimOptions, VirtualSerialDevice};

/// How long one command may take (a flash through the ROM included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a long-running command may take to show it is up, and to stop after Ctrl-C.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The section of README.md another engineer keeps (install commands), and its lines this test
/// does not run, each with why. Only lines starting with `cargo ` or `scripts/` may be listed.
const RUN_IT: &str = "Run it";
const NOT_RUN: &[(&str, &str)] = &[(
    "cargo run --release -- demo",
    "a release build takes minutes here; `otaforge demo` itself is run by virtual_devices::demo",
)];

/// Values in the docs that stand for the reader's own, and what stands for them here.
const PLACEHOLDERS: &[(&str, &str)] = &[
    (
        "/dev/ttyUSB0",
        "the pty of a virtual ESP8266 this test starts with the project (and registers in it, so the commands that find the port themselves find this one); before each command it is reset into its bootloader, as a USB adapter's reset lines do (a pty has none)",
    ),
    (
        "/dev/ttyACM0",
        "the pty of a virtual ESP32-C3, started for the command naming it alone (so the commands that find the port themselves still find one board)",
    ),
    (
        "ota.lan",
        "this machine's first network address, as `otaforge hosts` lists it: the example name does not resolve here, and `hosts --check` and `check` resolve it",
    ),
    (DOC_MAC, "a device put in the inventory before the first command naming it, as if it had checked in"),
    (
        "`serve`, `check` (port 3443)",
        "run with `--port P`, a port free on this machine: 3443 may be taken where tests run side by side",
    ),
];
const DOC_MAC: &str = "18:FE:34:A1:B2:C3";

/// Files the docs assume the reader has (their builds, their secrets): made in the working
/// directory before the first command naming them.
fn fixture(name: &str) -> Option<(Vec<u8>, &'static str)> {
    Some(match name {
        "reference.bin" | "otaforge_esp8266.ino.bin" => (
            otaforge_sim::device::reference_image(Chip::Esp8266, "1.0.0", 128 * 1024),
            "the reference firmware built for an ESP8266: the simulator's stand-in (`otaforge sim reference-image`), which runs on virtual boards only",
        ),
        "build/sketch.bin" => {
            (ImageBuilder::arduino_esp8266().target_size(160_000).seed(1).build(), "an ESP8266 sketch build")
        }
        "build/sketch.ino.bin" => (
            ImageBuilder::arduino_esp8266().target_size(160_000).seed(2).build(),
            "the next build of that sketch",
        ),
        "fw-c3.bin" => (
            ImageBuilder::esp32_app(Chip::Esp32C3).version("1.0.0").target_size(150_000).seed(3).build(),
            "an ESP32-C3 build (it carries its version)",
        ),
        "wifi.txt" => (
            b"correct horse battery staple\n".to_vec(),
            "the reader's Wi-Fi password, in a file only they can read",
        ),
        "pw.txt" => {
            (b"a channel password\n".to_vec(), "a channel password, in a file only its owner can read")
        }
        _ => return None,
    })
}

/// A fenced block.
struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    info: String,
    /// The `## ` heading it is under.
    section: String,
    /// Its lines, with their 1-based line numbers, the fence's indentation removed.
    lines: Vec<(usize, String)>,
    /// A closing fence was found.
    closed: bool,
}

fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut open: Option<(Block, usize)> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        let indent = raw.len() - trimmed.len();
        match open.take() {
            None if trimmed.starts_with("```") => {
                let info = trimmed.trim_start_matches('`').trim().to_string();
                open = Some((
                    Block { line: i + 1, info, section: section.clone(), lines: Vec::new(), closed: false },
                    indent,
                ));
            }
            None => {
                if let Some(h) = raw.strip_prefix("## ") {
                    section = h.trim().to_string();
                }
            }
            Some((mut block, _)) if trimmed.trim_end() == "```" => {
                block.closed = true;
                out.push(block);
            }
            Some((mut block, indent)) => {
                let strip = raw.len() - raw.trim_start_matches(' ').len();
                block.lines.push((i + 1, raw[strip.min(indent)..].to_string()));
                open = Some((block, indent));
            }
        }
    }
    if let Some((block, _)) = open {
        out.push(block);
    }
    out
}

/// What a block is, by its info string.
enum Kind {
    Run,
    NoRun,
    Other,
}

const SHELL_INFOS: &[&str] = &["bash", "shell", "console", "zsh", "sh-session", "shell-session", "terminal"];

/// Looks like a command line (in a block that is neither `sh` nor `text`).
fn looks_like_command(line: &str) -> bool {
    let l = line.trim_start().trim_start_matches("$ ");
    ["otaforge ", "cargo ", "scripts/", "arduino-cli ", "pio ", "esptool", "cd "]
        .iter()
        .any(|p| l.starts_with(p))
}

/// The block's kind, or why it breaks the rules.
fn kind(file: &str, b: &Block) -> Result<Kind, String> {
    let at = format!("{file}:{}", b.line);
    if !b.closed {
        return Err(format!("{at}: this fenced block is never closed: everything after it is inside it"));
    }
    let first_word = b.info.split_whitespace().next().unwrap_or("");
    match b.info.as_str() {
        "sh" => Ok(Kind::Run),
        "text" => Ok(Kind::Other),
        "sh no-run" => match b.lines.first().map(|(_, l)| l.trim()) {
            Some(l) if l.starts_with('#') && l.trim_start_matches('#').trim().len() > 3 => Ok(Kind::NoRun),
            _ => Err(format!(
                "{at}: a `sh no-run` block's first line must be a comment saying what runs it or why nothing can (e.g. `# needs arduino-cli and a board on USB`)"
            )),
        },
        "" => Err(format!(
            "{at}: a fenced block needs an info string: `sh` (commands this test runs), `sh no-run` (with a first-line comment saying what runs them) or `text` (output, file trees)"
        )),
        _ if SHELL_INFOS.contains(&first_word) || first_word == "sh" => Err(format!(
            "{at}: shell commands go in a `sh` block (run by this test) or a `sh no-run` one (with a first-line comment saying what runs them), not `{}`",
            b.info
        )),
        _ => match b.lines.iter().find(|(_, l)| looks_like_command(l)) {
            Some((n, l)) => Err(format!(
                "{file}:{n}: a command line in a `{}` block escapes this test: `{}` (put it in a `sh` or `sh no-run` block)",
                b.info,
                l.trim()
            )),
            None => Ok(Kind::Other),
        },
    }
}

/// One command of a `sh` block.
struct Cmd {
    line: usize,
    /// As written, comment dropped, continuations joined.
    text: String,
    argv: Vec<String>,
    /// `# fails: TEXT`: it must fail saying TEXT.
    fails: Option<String>,
}

/// Splits a logical line into the command and its trailing comment (a `#` at the start or after
/// whitespace, outside quotes).
fn split_comment(line: &str) -> (&str, Option<&str>) {
    let (mut single, mut double, mut prev_space) = (false, false, true);
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev_space => {
                return (line[..i].trim_end(), Some(line[i + 1..].trim()));
            }
            _ => {}
        }
        prev_space = c.is_whitespace();
    }
    (line.trim_end(), None)
}

/// Words as a POSIX shell splits them; shell syntax this test does not run (pipes,
/// redirections, variables, alternatives written `a | b`) is refused.
fn words(cmd: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = cmd.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    out.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("an unclosed ' quote".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err("an unclosed \" quote".into()),
                        },
                        Some(c @ ('$' | '`')) => {
                            return Err(format!("`{c}` inside quotes (the test runs no shell)"));
                        }
                        Some(c) => w.push(c),
                        None => return Err("an unclosed \" quote".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err("a trailing \\".into()),
            },
            '|' | ';' | '&' | '<' | '>' | '$' | '`' | '(' | ')' => {
                return Err(format!(
                    "shell syntax `{c}`: the test runs commands, not a shell; write one command per line (alternatives too)"
                ));
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    out.extend(word);
    Ok(out)
}

/// The commands of a `sh` block, or why one cannot be read.
fn commands(file: &str, b: &Block) -> (Vec<Cmd>, Vec<String>) {
    let (mut cmds, mut problems) = (Vec::new(), Vec::new());
    let mut pending: Option<(usize, String)> = None;
    for (n, raw) in &b.lines {
        let (start, mut text) = pending.take().unwrap_or((*n, String::new()));
        let line = raw.trim_end();
        if let Some(head) = line.strip_suffix('\\') {
            text.push_str(head);
            text.push(' ');
            pending = Some((start, text));
            continue;
        }
        text.push_str(line);
        let (cmd, comment) = split_comment(&text);
        if cmd.trim().is_empty() {
            continue;
        }
        let fails = comment.and_then(|c| c.strip_prefix("fails:")).map(|t| t.trim().to_string());
        let shown = cmd.split_whitespace().collect::<Vec<_>>().join(" ");
        match words(cmd) {
            Ok(argv) => cmds.push(Cmd { line: start, text: shown, argv, fails }),
            Err(why) => problems.push(format!("{file}:{start}: `{shown}`: {why}")),
        }
    }
    if let Some((start, text)) = pending {
        problems.push(format!("{file}:{start}: `{}` ends the block with a `\\`", text.trim()));
    }
    (cmds, problems)
}

/// A command still running in the background.
struct Background {
    what: String,
    child: Child,
    lines: mpsc::Receiver<(bool, String)>,
    seen: Vec<String>,
}

impl Drop for Background {
    /// Never left running, whatever happened to the test.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What shows a long-running command is up, and whether it keeps running to the end of its
/// block; `None` for a command that ends by itself.
fn long_running(argv: &[String]) -> Option<(&'static str, bool, bool)> {
    let has = |flag: &str| argv.iter().any(|a| a == flag);
    // (text to wait for, on stdout (else stderr), keep running to the end of the block)
    match argv.get(1).map(String::as_str) {
        Some("serve") => Some(("Serving updates on", true, true)),
        Some("monitor") => Some(("Monitoring ", false, false)),
        Some("flash") if has("--monitor") => Some(("Monitoring ", false, false)),
        Some("sim") if matches!(argv.get(2).map(String::as_str), Some("serial" | "board")) => {
            Some(("/", true, false))
        }
        _ => None,
    }
}

fn spawn_reader(stream: impl std::io::Read + Send + 'static, stdout: bool, tx: mpsc::Sender<(bool, String)>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send((stdout, line)).is_err() {
                break;
            }
        }
    });
}

/// Whether the process has its own SIGINT handler yet (Linux: `SigCgt` in /proc/PID/status).
fn catches_ctrl_c(child: &Child) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let caught = status.lines().find_map(|l| l.strip_prefix("SigCgt:")).map(str::trim);
    caught.and_then(|hex| u64::from_str_radix(hex, 16).ok()).is_some_and(|mask| mask & (1 << (2 - 1)) != 0)
}

/// Ctrl-C, once the process is ready for it: the line a command prints may come before its
/// handler is in place, and a user would not press Ctrl-C within that microsecond.
fn interrupt(child: &mut Child) {
    let deadline = Instant::now() + STOP_TIMEOUT;
    while !catches_ctrl_c(child) && Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
}

/// Waits for `child` to end within `within`; kills it (and says so) when it does not.
fn wait_bounded(child: &mut Child, within: Duration) -> Result<std::process::ExitStatus, String> {
    let deadline = Instant::now() + within;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("still running after {} s: killed", within.as_secs()));
            }
        }
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(25);
    lines[from..].iter().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

/// One doc file's run: its project, working directory, boards and what went wrong.
struct DocRun {
    file: &'static str,
    project: tempfile::TempDir,
    work: tempfile::TempDir,
    esp8266: Option<VirtualSerialDevice>,
    /// What stands for ota.lan; `None` when this machine has no address but loopback.
    host: Option<String>,
    /// The port `serve` and `check` use here (3443 may be taken on a shared machine).
    port: u16,
    made: HashSet<String>,
    background: Vec<Background>,
    failures: Vec<String>,
    notes: Vec<String>,
    not_run_used: HashSet<&'static str>,
    ran: usize,
}

impl DocRun {
    fn new(file: &'static str) -> DocRun {
        let project = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        copy_dir(&repo().join("device-firmware"), &work.path().join("device-firmware"));
        let esp8266 = VirtualSerialDevice::spawn(SimOptions {
            chip: sim::Chip::Esp8266,
            registry_dir: Some(project.path().to_path_buf()),
            name: Some("docs-esp8266".into()),
            ..SimOptions::default()
        })
        .expect("a virtual ESP8266");
        let host = otaforge_pki::local::LocalHosts::discover()
            .addresses
            .iter()
            .find(|a| a.ip.is_ipv4())
            .map(|a| a.ip.to_string());
        let port = std::net::TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port();
        DocRun {
            file,
            project,
            work,
            esp8266: Some(esp8266),
            host,
            port,
            made: HashSet::new(),
            background: Vec::new(),
            failures: Vec::new(),
            notes: Vec::new(),
            not_run_used: HashSet::new(),
            ran: 0,
        }
    }

    fn command(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_otaforge"));
        cmd.args(args)
            .current_dir(self.work.path())
            .env(otaforge_project::DIR_ENV, self.project.path())
            .env_remove("OTAFORGE_WIFI_PASSWORD")
            .env_remove("OTAFORGE_AUTH_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn fail(&mut self, cmd: &Cmd, why: String) {
        self.failures.push(format!("{}:{}: `{}`\n  {why}", self.file, cmd.line, cmd.text));
    }

    /// Makes what the command names real: fixture files, the example device.
    fn prepare(&mut self, cmd: &Cmd) {
        for arg in &cmd.argv[1..] {
            if self.made.contains(arg) {
                continue;
            }
            if let Some((bytes, _why)) = fixture(arg) {
                let path = self.work.path().join(arg);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                if !path.exists() {
                    std::fs::write(&path, bytes).unwrap();
                    if arg.ends_with(".txt") {
                        use std::os::unix::fs::PermissionsExt;
                        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
                    }
                }
                self.made.insert(arg.clone());
            } else if arg == DOC_MAC {
                let device = otaforge_store::Device::new(
                    DOC_MAC,
                    "ESP8266",
                    otaforge_protocol::DEFAULT_CHANNEL,
                    "10.0.0.7",
                    otaforge_store::now_unix(),
                );
                otaforge_store::Store::open(self.project.path())
                    .unwrap()
                    .save_devices(&[device], &[])
                    .unwrap();
                self.made.insert(arg.clone());
            }
        }
    }

    /// The command's words after `otaforge`, the placeholders replaced.
    fn substituted(&self, cmd: &Cmd, c3: Option<&VirtualSerialDevice>) -> Vec<String> {
        let mut argv: Vec<String> = cmd.argv[1..]
            .iter()
            .map(|a| match a.as_str() {
                "/dev/ttyUSB0" => self.esp8266.as_ref().unwrap().pty_path().display().to_string(),
                "/dev/ttyACM0" => c3.expect("started").pty_path().display().to_string(),
                "ota.lan" => self.host.clone().unwrap_or_else(|| a.clone()),
                _ => a.clone(),
            })
            .collect();
        let sub = argv.first().map(String::as_str);
        if matches!(sub, Some("serve" | "check")) && !argv.iter().any(|a| a == "--port") {
            argv.extend(["--port".to_string(), self.port.to_string()]);
        }
        argv
    }

    fn run_block(&mut self, block: &Block) {
        let (cmds, problems) = commands(self.file, block);
        self.failures.extend(problems);
        for cmd in &cmds {
            self.run_one(block, cmd);
        }
        self.stop_background();
    }

    fn run_one(&mut self, block: &Block, cmd: &Cmd) {
        if cmd.argv[0] != "otaforge" {
            let listed = NOT_RUN.iter().find(|(c, _)| *c == cmd.text);
            let allowed = block.section == RUN_IT
                && (cmd.text.starts_with("cargo ") || cmd.text.starts_with("scripts/"))
                && listed.is_some();
            match listed {
                Some((c, _)) if allowed => {
                    self.not_run_used.insert(c);
                }
                _ if block.section == RUN_IT => self.fail(
                    cmd,
                    format!(
                        "not an otaforge command, and not in this test's NOT_RUN list for \"{RUN_IT}\": put it in a \
                         `sh no-run` block whose first line says what runs it"
                    ),
                ),
                _ => self.fail(
                    cmd,
                    "not an otaforge command, so this test cannot run it: put it in a `sh no-run` block whose first line says what runs it".into(),
                ),
            }
            return;
        }
        let needs_address = matches!(cmd.argv.get(1).map(String::as_str), Some("check"))
            || (cmd.argv.get(1).is_some_and(|s| s == "hosts") && cmd.argv.iter().any(|a| a == "--check"));
        if needs_address && self.host.is_none() {
            self.notes.push(format!(
                "{}:{}: `{}` not run: this machine has no network address besides loopback, so no host leads here",
                self.file, cmd.line, cmd.text
            ));
            return;
        }
        self.prepare(cmd);
        if let Some(board) = &self.esp8266 {
            board.reset_to_bootloader();
        }
        let c3 = cmd.argv.iter().any(|a| a == "/dev/ttyACM0").then(|| {
            VirtualSerialDevice::spawn(SimOptions {
                chip: sim::Chip::Esp32c3,
                registry_dir: Some(self.project.path().to_path_buf()),
                name: Some("docs-esp32c3".into()),
                ..SimOptions::default()
            })
            .expect("a virtual ESP32-C3")
        });
        let argv = self.substituted(cmd, c3.as_ref());
        self.ran += 1;
        match long_running(&cmd.argv) {
            None => self.run_foreground(cmd, &argv),
            Some((text, on_stdout, keep)) => self.run_background(cmd, &argv, text, on_stdout, keep),
        }
        if let Some(board) = c3 {
            board.stop();
        }
    }

    fn run_foreground(&mut self, cmd: &Cmd, argv: &[String]) {
        let child = match self.command(argv).spawn() {
            Ok(c) => c,
            Err(e) => return self.fail(cmd, format!("could not start: {e}")),
        };
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(COMMAND_TIMEOUT) {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return self.fail(cmd, format!("could not wait for it: {e}")),
            Err(_) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                return self
                    .fail(cmd, format!("did not finish within {} s: killed", COMMAND_TIMEOUT.as_secs()));
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        match (&cmd.fails, out.status.success()) {
            (None, true) => {}
            (None, false) => self.fail(
                cmd,
                format!(
                    "exit status: {}\n  stderr:\n{}\n  stdout:\n{}",
                    out.status,
                    tail(&stderr),
                    tail(&stdout)
                ),
            ),
            (Some(text), false) if stderr.contains(text.as_str()) || stdout.contains(text.as_str()) => {}
            (Some(text), false) => self.fail(
                cmd,
                format!("failed as the doc says, but without saying {text:?}\n  stderr:\n{}", tail(&stderr)),
            ),
            (Some(text), true) => self.fail(
                cmd,
                format!("the doc says it fails ({text:?}), but it succeeded\n  stdout:\n{}", tail(&stdout)),
            ),
        }
    }

    fn run_background(&mut self, cmd: &Cmd, argv: &[String], text: &str, on_stdout: bool, keep: bool) {
        let mut child = match self.command(argv).spawn() {
            Ok(c) => c,
            Err(e) => return self.fail(cmd, format!("could not start: {e}")),
        };
        let (tx, rx) = mpsc::channel();
        spawn_reader(child.stdout.take().unwrap(), true, tx.clone());
        spawn_reader(child.stderr.take().unwrap(), false, tx);
        let mut bg = Background {
            what: format!("{}:{}: `{}`", self.file, cmd.line, cmd.text),
            child,
            lines: rx,
            seen: Vec::new(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let up = loop {
            match bg.lines.recv_timeout(Duration::from_millis(100)) {
                Ok((stdout, line)) => {
                    let hit = stdout == on_stdout && line.contains(text);
                    bg.seen.push(line);
                    if hit {
                        break Ok(());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Ok(Some(status)) = bg.child.try_wait() {
                        // Drain what it printed before it ended: the readers stop at the pipes' end.
                        let drained = Instant::now() + STOP_TIMEOUT;
                        while let Ok((_, l)) =
                            bg.lines.recv_timeout(drained.saturating_duration_since(Instant::now()))
                        {
                            bg.seen.push(l);
                        }
                        break Err(format!("ended before it was up (exit status: {status})"));
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    break Err(format!("printed no line with {text:?} within {} s", START_TIMEOUT.as_secs()));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = wait_bounded(&mut bg.child, STOP_TIMEOUT);
                    break Err(format!("ended before it was up (exit status: {status:?})"));
                }
            }
        };
        if let Err(why) = up {
            let _ = bg.child.kill();
            let _ = bg.child.wait();
            return self.fail(cmd, format!("{why}\n  output:\n{}", tail(&bg.seen.join("\n"))));
        }
        if keep {
            self.background.push(bg);
        } else {
            self.stop(bg);
        }
    }

    /// Ctrl-C, as a user stops it: it must end, cleanly, within [`STOP_TIMEOUT`].
    fn stop(&mut self, mut bg: Background) {
        interrupt(&mut bg.child);
        let status = wait_bounded(&mut bg.child, STOP_TIMEOUT);
        bg.seen.extend(bg.lines.try_iter().map(|(_, l)| l));
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => self.failures.push(format!(
                "{}\n  exit status after Ctrl-C: {s}\n  output:\n{}",
                bg.what,
                tail(&bg.seen.join("\n"))
            )),
            Err(why) => self.failures.push(format!("{}\n  after Ctrl-C: {why}", bg.what)),
        }
    }

    fn stop_background(&mut self) {
        while let Some(bg) = self.background.pop() {
            self.stop(bg);
        }
    }

    /// Runs the file; panics listing every command that failed.
    fn run_file(mut self) -> DocRun {
        let text = std::fs::read_to_string(repo().join(self.file)).unwrap();
        for block in blocks(&text) {
            match kind(self.file, &block) {
                Ok(Kind::Run) => self.run_block(&block),
                Ok(Kind::NoRun | Kind::Other) => {}
                Err(why) => self.failures.push(why),
            }
        }
        self
    }

    fn finish(mut self) {
        self.stop_background();
        if let Some(board) = self.esp8266.take() {
            board.stop();
        }
        for (cmd, why) in NOT_RUN {
            if !self.not_run_used.contains(cmd) && self.file == "README.md" {
                self.notes
                    .push(format!("NOT_RUN entry no longer in README.md's \"{RUN_IT}\": `{cmd}` ({why})"));
            }
        }
        for n in &self.notes {
            eprintln!("note: {n}");
        }
        assert!(self.ran > 0, "{}: no command ran", self.file);
        let mut stood_in: Vec<String> =
            PLACEHOLDERS.iter().map(|(what, why)| format!("  {what}: {why}")).collect();
        let mut made: Vec<&String> = self.made.iter().collect();
        made.sort();
        stood_in.extend(made.into_iter().filter_map(|f| fixture(f).map(|(_, why)| format!("  {f}: {why}"))));
        assert!(
            self.failures.is_empty(),
            "{} of the commands and blocks in {} do not match the binary:\n\n{}\n\n(each command ran with \
             {}={} in {}; what stood for the docs' placeholders:\n{})\n",
            self.failures.len(),
            self.file,
            self.failures.join("\n\n"),
            otaforge_project::DIR_ENV,
            self.project.path().display(),
            self.work.path().display(),
            stood_in.join("\n")
        );
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// The `[default: …]` clap shows for `flag` in `otaforge SUB --help`.
fn default_of(sub: &[&str], flag: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_otaforge")).args(sub).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let mut lines = help.lines().skip_while(|l| {
        let t = l.trim_start();
        !(t.starts_with(flag) || t.split(", ").nth(1).is_some_and(|f| f.starts_with(flag)))
    });
    let head =
        lines.next().unwrap_or_else(|| panic!("otaforge {} --help has no {flag}:\n{help}", sub.join(" ")));
    for l in std::iter::once(head).chain(lines.take_while(|l| !l.trim_start().starts_with('-'))) {
        if let Some(rest) = l.split("[default: ").nth(1) {
            return rest.trim_end().trim_end_matches(']').to_string();
        }
    }
    panic!("otaforge {} --help shows no default for {flag}", sub.join(" "))
}

/// What the docs' comments say about defaults, against the binary's `--help`.
fn claims(file: &str) -> Vec<String> {
    type Claim = (&'static str, &'static str, fn() -> String);
    let table: &[Claim] = &[
        ("README.md", "otaforge flash fleet-1.0.0.bin", || {
            format!("{} baud", default_of(&["flash"], "--baud"))
        }),
        ("README.md", "otaforge monitor", || {
            format!("sketches print at {}", default_of(&["monitor"], "--baud"))
        }),
        ("README.md", "otaforge serve", || {
            format!(
                "https://{}:{}{}",
                default_of(&["serve"], "--bind"),
                default_of(&["serve"], "--port"),
                default_of(&["serve"], "--path")
            )
        }),
        ("README.md", "otaforge publish build/sketch.ino.bin", || {
            format!("channel \"{}\"", default_of(&["publish"], "--channel"))
        }),
    ];
    let text = std::fs::read_to_string(repo().join(file)).unwrap();
    let mut problems = Vec::new();
    for (f, prefix, expected) in table.iter().filter(|(f, ..)| *f == file) {
        let found = text.lines().enumerate().find(|(_, l)| l.starts_with(prefix));
        let Some((n, line)) = found else {
            problems.push(format!("{f}: no line starts with `{prefix}` any more: update the claims table"));
            continue;
        };
        let want = expected();
        let comment = split_comment(line).1.unwrap_or("");
        if !comment.contains(&want) {
            problems.push(format!(
                "{f}:{}: the comment should say {want:?} (the binary's default): `{comment}`",
                n + 1
            ));
        }
    }
    problems
}

#[test]
fn readme_commands_run_as_written() {
    let started = Instant::now();
    let run = DocRun::new("README.md").run_file();
    let mut run = run;
    run.failures.extend(claims("README.md"));
    eprintln!("README.md: {} commands in {:.1} s", run.ran, started.elapsed().as_secs_f64());
    run.finish();
}

#[test]
fn device_firmware_readme_commands_run_as_written() {
    let started = Instant::now();
    let run = DocRun::new("device-firmware/README.md").run_file();
    eprintln!("device-firmware/README.md: {} commands in {:.1} s", run.ran, started.elapsed().as_secs_f64());
    run.finish();
}

/// The rules themselves, on small documents: a drift is caught, named by file and line.
#[test]
fn the_rules_catch_what_would_escape() {
    let doc = "## A\n```\notaforge ports\n```\n```bash\notaforge ports\n```\n```sh no-run\notaforge ports\n```\n\
               ```sh no-run\n# needs a board on USB\nesptool chip-id\n```\n```text\n$ otaforge ports\n```\n\
               ```c\n#include <x.h>\n```\n```ini\n  otaforge ports\n```\n";
    let verdicts: Vec<Result<(), String>> =
        blocks(doc).iter().map(|b| kind("doc.md", b).map(|_| ())).collect();
    let errs: Vec<String> = verdicts.iter().filter_map(|v| v.clone().err()).collect();
    assert_eq!(verdicts.iter().filter(|v| v.is_ok()).count(), 3, "{errs:#?}");
    assert!(errs[0].starts_with("doc.md:2:") && errs[0].contains("info string"), "{errs:#?}");
    assert!(errs[1].starts_with("doc.md:5:") && errs[1].contains("not `bash`"), "{errs:#?}");
    assert!(
        errs[2].starts_with("doc.md:8:") && errs[2].contains("first line must be a comment"),
        "{errs:#?}"
    );
    assert!(errs[3].starts_with("doc.md:22:") && errs[3].contains("escapes"), "{errs:#?}");

    let unclosed = blocks("## A\n```sh\notaforge ports\n");
    assert!(
        kind("doc.md", &unclosed[0]).is_err_and(|e| e.starts_with("doc.md:2:") && e.contains("never closed"))
    );

    let block = Block {
        line: 1,
        info: "sh".into(),
        section: "B".into(),
        closed: true,
        lines: [
            "otaforge cert new --host a.lan \\",
            "    --host b.lan     # two hosts",
            "# a comment line",
            "otaforge devices rename 18:FE:34:A1:B2:C3 \"Hall light\"  # quoted",
            "otaforge rollout --channel stabel   # fails: no channel \"stabel\"",
            "otaforge rollout --pause | --resume",
        ]
        .iter()
        .enumerate()
        .map(|(i, l)| (i + 2, l.to_string()))
        .collect(),
    };
    let (cmds, problems) = commands("doc.md", &block);
    assert_eq!(cmds[0].argv, ["otaforge", "cert", "new", "--host", "a.lan", "--host", "b.lan"]);
    assert_eq!(cmds[0].line, 2);
    assert_eq!(cmds[1].argv[4], "Hall light");
    assert_eq!(cmds[2].fails.as_deref(), Some("no channel \"stabel\""));
    assert_eq!(cmds.len(), 3);
    assert!(
        problems.len() == 1 && problems[0].starts_with("doc.md:7:") && problems[0].contains('|'),
        "{problems:?}"
    );
}
