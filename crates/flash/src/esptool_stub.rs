//! Espressif's ESP8266 flasher stub, taken at run time from the esptool the user has installed.
//!
//! esptool 5.3 and newer ship builds of esp-flasher-stub (MIT/Apache-2.0) as
//! `esptool/targets/stub_flasher/2/<chip>.json`. OTA Forge carries none of it: it finds esptool
//! the way the user's shell would (`$ESPTOOL`, else `esptool` / `esptool.py` on `PATH`), finds
//! its Python package beside the script (a venv, pipx, `pip install --user`) or by asking the
//! script's interpreter, and reads, decodes and checks `esp8266.json` from there. Every error
//! names what it looked at, so the user can fix it; the flash then goes through the ROM.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;

/// How to get the faster ESP8266 path, for output that had to use the ROM.
pub const HOW_TO_GET: &str = "For faster ESP8266 flashing (compressed, at the full baud rate, verified by MD5), install esptool 5.3 or newer (pip install --upgrade esptool), or point ESPTOOL at one (ESPTOOL=/path/to/esptool).";

/// The stub file inside an esptool package.
pub const STUB_FILE: &str = "targets/stub_flasher/2/esp8266.json";

/// The ESP8266's instruction RAM (the upper 32 KiB serves as cache once the firmware runs, but
/// is free while the ROM bootloader does).
const IRAM: std::ops::Range<u64> = 0x4010_0000..0x4011_0000;
/// The ESP8266's data RAM.
const DRAM: std::ops::Range<u64> = 0x3FFE_8000..0x4000_0000;
/// Larger than any stub could be: the file is not read past this.
const MAX_FILE: u64 = 1 << 20;
/// How long the script's interpreter may take to say where esptool is.
const ASK_PYTHON: Duration = Duration::from_secs(10);

/// Where an ESP8266 flash takes its flasher stub from (the choice travels with the request, so a
/// test or the user can pick one without touching the process environment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StubSource {
    /// The esptool the user's shell finds (`$ESPTOOL`, else `esptool` / `esptool.py` on PATH);
    /// the ROM alone when there is none.
    #[default]
    Installed,
    /// This esptool: its script, or its Python package directory.
    Esptool(PathBuf),
    /// No stub: the ROM alone (esptool's `--no-stub`).
    None,
}

/// What the search looks at, taken from the process environment by [`SearchEnv::from_process`]
/// (and made up in tests).
#[derive(Debug, Clone, Default)]
pub struct SearchEnv {
    /// `$ESPTOOL`.
    pub esptool: Option<OsString>,
    /// `$PATH`.
    pub path: Option<OsString>,
}

impl SearchEnv {
    /// `ESPTOOL` and `PATH` as this process has them (empty values count as unset).
    pub fn from_process() -> SearchEnv {
        let get = |k| std::env::var_os(k).filter(|v| !v.is_empty());
        SearchEnv { esptool: get("ESPTOOL"), path: get("PATH") }
    }
}

/// An esptool installation whose package directory is known.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Esptool {
    /// The script or directory it was found as.
    pub found_as: PathBuf,
    /// The `esptool` Python package directory.
    pub package: PathBuf,
    /// Its version (`__version__`), when the package says.
    pub version: Option<String>,
}

impl Esptool {
    /// "esptool 5.6.0 (/home/me/.venv/bin/esptool)".
    pub fn describe(&self) -> String {
        match &self.version {
            Some(v) => format!("esptool {v} ({})", self.found_as.display()),
            None => format!("esptool ({})", self.found_as.display()),
        }
    }
}

/// The ESP8266 stub, decoded and checked: two segments to load into RAM and where to start it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stub {
    /// Code, loaded at `text_start` (IRAM).
    pub text: Vec<u8>,
    /// Where the code goes.
    pub text_start: u32,
    /// Initialised data, loaded at `data_start` (DRAM); may be empty.
    pub data: Vec<u8>,
    /// Where the data goes.
    pub data_start: u32,
    /// The address MEM_END jumps to.
    pub entry: u32,
    /// The file it came from.
    pub file: PathBuf,
    /// The installation it came from.
    pub esptool: Esptool,
    /// The esp-flasher-stub release, when the directory's README names it ("v1.4.1").
    pub release: Option<String>,
}

impl Stub {
    /// The segments in upload order: (load address, bytes).
    pub fn segments(&self) -> impl Iterator<Item = (u32, &[u8])> {
        [(self.text_start, &self.text[..]), (self.data_start, &self.data[..])]
            .into_iter()
            .filter(|(_, d)| !d.is_empty())
    }

    /// "the flasher stub of esptool 5.6.0 (/path/bin/esptool; esp-flasher-stub v1.4.1)".
    pub fn describe(&self) -> String {
        let release = self.release.as_deref().map(|r| format!("; esp-flasher-stub {r}")).unwrap_or_default();
        let e = &self.esptool;
        match &e.version {
            Some(v) => format!("the flasher stub of esptool {v} ({}{release})", e.found_as.display()),
            None => format!("the flasher stub of the esptool at {}{release}", e.found_as.display()),
        }
    }
}

/// Why no stub could be had: each says what was looked at.
#[allow(missing_docs)] // each variant's message is its documentation
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StubError {
    #[error("No esptool was found (ESPTOOL is not set, and there is no esptool or esptool.py on PATH).")]
    NotInstalled,
    #[error("ESPTOOL is set to {0}, which does not exist.")]
    EnvMissing(PathBuf),
    #[error("There is no esptool at {0}.")]
    Missing(PathBuf),
    #[error("The esptool at {script} is not one whose files OTA Forge can read: {why}.")]
    NoPackage { script: PathBuf, why: String },
    #[error("{esptool} has no ESP8266 flasher stub ({file} is missing): esptool ships it since version 5.3.")]
    TooOld { esptool: String, file: PathBuf },
    #[error("Cannot read the flasher stub {file}: {why}.")]
    Unreadable { file: PathBuf, why: String },
    #[error("The flasher stub {file} is not usable: {why}.")]
    Invalid { file: PathBuf, why: String },
}

/// Finds esptool for `source` and loads its ESP8266 stub. `Ok(None)` when the request asks for
/// no stub.
pub fn for_source(source: &StubSource, env: &SearchEnv) -> Result<Option<Stub>, StubError> {
    let esptool = match source {
        StubSource::None => return Ok(None),
        StubSource::Installed => find(env)?,
        StubSource::Esptool(p) => {
            if !p.exists() {
                return Err(StubError::Missing(p.clone()));
            }
            installation(p, env)?
        }
    };
    load(&esptool).map(Some)
}

/// Finds esptool as a shell would: `$ESPTOOL` if set (and only it, so a stale value is noticed),
/// else `esptool`, then `esptool.py`, in each `PATH` directory in turn.
pub fn find(env: &SearchEnv) -> Result<Esptool, StubError> {
    if let Some(p) = &env.esptool {
        let p = PathBuf::from(p);
        if !p.exists() {
            return Err(StubError::EnvMissing(p));
        }
        return installation(&p, env);
    }
    let script = on_path(env, &["esptool", "esptool.py"]).ok_or(StubError::NotInstalled)?;
    installation(&script, env)
}

/// The first executable file named one of `names` in `PATH`'s directories.
fn on_path(env: &SearchEnv, names: &[&str]) -> Option<PathBuf> {
    let path = env.path.as_ref()?;
    std::env::split_paths(path)
        .filter(|d| !d.as_os_str().is_empty())
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The installation `found` belongs to: a package directory itself, or a script whose package
/// lies beside it (`../lib/python3*/site-packages/esptool`) or that its interpreter can import.
fn installation(found: &Path, env: &SearchEnv) -> Result<Esptool, StubError> {
    let package = if found.is_dir() {
        if !found.join("__init__.py").is_file() {
            return Err(StubError::NoPackage {
                script: found.into(),
                why: "it is a directory, but not esptool's Python package (no __init__.py)".into(),
            });
        }
        found.to_path_buf()
    } else {
        package_of_script(found, env)?
    };
    let version = version(&package);
    Ok(Esptool { found_as: found.to_path_buf(), package, version })
}

fn package_of_script(script: &Path, env: &SearchEnv) -> Result<PathBuf, StubError> {
    let no = |why: String| StubError::NoPackage { script: script.into(), why };
    // A pipx or `pip install --user` script may be a symlink into its venv: look beside both.
    let real = std::fs::canonicalize(script).unwrap_or_else(|_| script.to_path_buf());
    for s in [script, real.as_path()] {
        if let Some(pkg) = s.parent().and_then(Path::parent).and_then(beside) {
            return Ok(pkg);
        }
    }
    let head = read_head(&real).map_err(|e| no(format!("it cannot be read ({e})")))?;
    if head.starts_with(b"\x7fELF") {
        return Err(no(
            "it is a standalone build, not a Python installation, and its stub is sealed inside it".into(),
        ));
    }
    let python = interpreter(&head, env).ok_or_else(|| no("it is not a Python script".into()))?;
    ask_python(&python)
        .map_err(|why| no(format!("{} could not say where esptool is ({why})", python.display())))
}

/// `<prefix>/lib*/python3*/{site,dist}-packages/esptool`, as venvs, pipx and pip lay it out.
fn beside(prefix: &Path) -> Option<PathBuf> {
    let mut libs: Vec<PathBuf> = std::fs::read_dir(prefix)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("lib")))
        .collect();
    libs.sort();
    for lib in libs {
        let Ok(entries) = std::fs::read_dir(&lib) else { continue };
        let mut pythons: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("python3")))
            .collect();
        // The newest Python first, as a venv has only one and a prefix's newest is the default.
        pythons.sort();
        pythons.reverse();
        for py in pythons {
            for packages in ["site-packages", "dist-packages"] {
                let pkg = py.join(packages).join("esptool");
                if pkg.join("__init__.py").is_file() {
                    return Some(pkg);
                }
            }
        }
    }
    None
}

fn read_head(p: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = vec![0u8; 512];
    let n = std::fs::File::open(p)?.read(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// The Python named by a script's `#!` line (`#!/usr/bin/env python3` looked up on PATH).
fn interpreter(head: &[u8], env: &SearchEnv) -> Option<PathBuf> {
    let line = head.strip_prefix(b"#!")?;
    let line =
        std::str::from_utf8(&line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())]).ok()?;
    let mut words = line.split_whitespace();
    let first = PathBuf::from(words.next()?);
    let python = if first.file_name().is_some_and(|n| n == "env") {
        let name = words.find(|w| !w.starts_with('-'))?;
        if name.contains('/') { PathBuf::from(name) } else { on_path(env, &[name])? }
    } else {
        first
    };
    python.file_name()?.to_str()?.starts_with("python").then_some(python)
}

/// Asks `python` where the `esptool` package is, without running esptool itself.
fn ask_python(python: &Path) -> Result<PathBuf, String> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let code = "import importlib.util as u; s = u.find_spec('esptool'); print(list(s.submodule_search_locations)[0] if s and s.submodule_search_locations else '')";
    let mut child = Command::new(python)
        .args(["-I", "-c", code])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if started.elapsed() > ASK_PYTHON {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no answer within {} s", ASK_PYTHON.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    let dir = PathBuf::from(out.trim());
    if !status.success() || out.trim().is_empty() || !dir.join("__init__.py").is_file() {
        return Err("it cannot import esptool".into());
    }
    Ok(dir)
}

/// `__version__ = "5.6.0"` from the package's `__init__.py`.
fn version(package: &Path) -> Option<String> {
    let text = std::fs::read_to_string(package.join("__init__.py")).ok()?;
    text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("__version__")?.trim_start().strip_prefix('=')?.trim();
        let v = rest.trim_matches(|c| c == '"' || c == '\'');
        (!v.is_empty() && v.len() < 40).then(|| v.to_string())
    })
}

/// The esp-flasher-stub release the stub directory's README names (`…/releases/tag/v1.4.1`).
fn release(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("README.md")).ok()?;
    let at = text.find("releases/tag/")? + "releases/tag/".len();
    let tag: String =
        text[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-')).collect();
    (!tag.is_empty()).then_some(tag)
}

/// Reads, decodes and checks the ESP8266 stub of `esptool`.
pub fn load(esptool: &Esptool) -> Result<Stub, StubError> {
    let file = esptool.package.join(STUB_FILE);
    if !file.exists() {
        return Err(StubError::TooOld { esptool: esptool.describe(), file });
    }
    let unreadable = |why: String| StubError::Unreadable { file: file.clone(), why };
    let len = std::fs::metadata(&file).map_err(|e| unreadable(e.to_string()))?.len();
    if len > MAX_FILE {
        return Err(StubError::Invalid { file, why: format!("it is {len} bytes, far more than any stub") });
    }
    let text = std::fs::read_to_string(&file).map_err(|e| unreadable(e.to_string()))?;
    let mut stub = parse(&text, &file)?;
    stub.esptool = esptool.clone();
    stub.release = file.parent().and_then(release);
    Ok(stub)
}

/// The JSON as esptool writes it.
#[derive(serde::Deserialize)]
struct StubJson {
    entry: u64,
    text: String,
    text_start: u64,
    data: Option<String>,
    data_start: Option<u64>,
    bss_start: Option<u64>,
}

/// Decodes and checks a stub file's text (`file` only names it in errors).
pub fn parse(json: &str, file: &Path) -> Result<Stub, StubError> {
    let invalid = |why: String| StubError::Invalid { file: file.into(), why };
    let j: StubJson =
        serde_json::from_str(json).map_err(|e| invalid(format!("it is not stub JSON ({e})")))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let text = b64.decode(j.text.trim()).map_err(|e| invalid(format!("\"text\" is not base64 ({e})")))?;
    let data = match &j.data {
        Some(d) => b64.decode(d.trim()).map_err(|e| invalid(format!("\"data\" is not base64 ({e})")))?,
        None => Vec::new(),
    };
    let within = |what: &str, start: u64, len: usize, range: &std::ops::Range<u64>, mem: &str| {
        let end = start + len as u64;
        if start < range.start || end > range.end {
            Err(invalid(format!(
                "{what} (0x{start:x}..0x{end:x}) is not inside the ESP8266's {mem} (0x{:x}..0x{:x})",
                range.start, range.end
            )))
        } else {
            Ok(())
        }
    };
    if text.is_empty() {
        return Err(invalid("\"text\" is empty".into()));
    }
    within("the code", j.text_start, text.len(), &IRAM, "instruction RAM")?;
    let text_end = j.text_start + text.len() as u64;
    if !(j.text_start..text_end).contains(&j.entry) {
        return Err(invalid(format!(
            "the entry point 0x{:x} is not inside the code (0x{:x}..0x{text_end:x})",
            j.entry, j.text_start
        )));
    }
    let data_start = match (j.data_start, data.is_empty()) {
        (Some(s), _) => s,
        (None, true) => DRAM.start,
        (None, false) => return Err(invalid("it has \"data\" but no \"data_start\"".into())),
    };
    within("the data", data_start, data.len(), &DRAM, "data RAM")?;
    if let Some(bss) = j.bss_start {
        within("the bss", bss, 0, &DRAM, "data RAM")?;
    }
    Ok(Stub {
        text,
        text_start: j.text_start as u32,
        data,
        data_start: data_start as u32,
        entry: j.entry as u32,
        file: file.into(),
        esptool: Esptool { found_as: file.into(), package: PathBuf::new(), version: None },
        release: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up stub file (not Espressif's): 64 bytes of code, 16 of data.
    fn fake_json(text_start: u64, entry: u64, data_start: u64) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        format!(
            r#"{{"entry": {entry}, "text": "{}", "text_start": {text_start}, "data": "{}", "data_start": {data_start}, "bss_start": {}}}"#,
            b64.encode([0x11u8; 64]),
            b64.encode([0x22u8; 16]),
            DRAM.start + 0x100
        )
    }

    fn layout(dir: &Path, json: &str) -> PathBuf {
        let pkg = dir.join("lib/python3.12/site-packages/esptool");
        std::fs::create_dir_all(pkg.join("targets/stub_flasher/2")).unwrap();
        std::fs::write(pkg.join("__init__.py"), "__version__ = \"5.9.1\"\n").unwrap();
        std::fs::write(pkg.join(STUB_FILE), json).unwrap();
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        let script = dir.join("bin/esptool");
        std::fs::write(&script, "#!/nowhere/python3\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    #[test]
    fn a_good_file_decodes() {
        let s = parse(&fake_json(0x4010_C000, 0x4010_C004, 0x3FFF_A000), Path::new("x.json")).unwrap();
        assert_eq!((s.text.len(), s.data.len()), (64, 16));
        assert_eq!((s.text_start, s.entry, s.data_start), (0x4010_C000, 0x4010_C004, 0x3FFF_A000));
        assert_eq!(s.segments().count(), 2);
    }

    #[test]
    fn bad_files_are_named_and_explained() {
        let f = Path::new("/x/esp8266.json");
        let cases = [
            ("{ not json".to_string(), "is not stub JSON"),
            (
                fake_json(0x4010_C000, 0x4010_C004, 0x3FFF_A000).replace("\"text\": \"ER", "\"text\": \"!!"),
                "not base64",
            ),
            (fake_json(0x6000_0000, 0x6000_0004, 0x3FFF_A000), "not inside the ESP8266's instruction RAM"),
            (
                fake_json(0x4010_C000, 0x4010_0000, 0x3FFF_A000),
                "entry point 0x40100000 is not inside the code",
            ),
            (fake_json(0x4010_C000, 0x4010_C004, 0x1000), "not inside the ESP8266's data RAM"),
            (r#"{"entry": 1, "text_start": 2}"#.to_string(), "missing field `text`"),
        ];
        for (json, why) in cases {
            let e = parse(&json, f).unwrap_err();
            let text = e.to_string();
            assert!(text.starts_with("The flasher stub /x/esp8266.json is not usable: "), "{text}");
            assert!(text.contains(why), "{why}: {text}");
        }
    }

    #[test]
    fn esptool_env_wins_and_a_missing_one_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let script = layout(dir.path(), &fake_json(0x4010_C000, 0x4010_C004, 0x3FFF_A000));
        let env = SearchEnv { esptool: Some(script.clone().into()), path: None };
        let e = find(&env).unwrap();
        assert_eq!(e.package, dir.path().join("lib/python3.12/site-packages/esptool"));
        assert_eq!(e.version.as_deref(), Some("5.9.1"));
        let stub = load(&e).unwrap();
        assert!(stub.describe().starts_with("the flasher stub of esptool 5.9.1 ("), "{}", stub.describe());

        let env =
            SearchEnv { esptool: Some("/no/such/esptool".into()), path: Some(dir.path().join("bin").into()) };
        assert_eq!(find(&env), Err(StubError::EnvMissing("/no/such/esptool".into())));
    }

    #[test]
    fn path_is_searched_and_an_empty_one_finds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let script = layout(dir.path(), &fake_json(0x4010_C000, 0x4010_C004, 0x3FFF_A000));
        let path = std::env::join_paths([Path::new("/nonexistent"), &dir.path().join("bin")]).unwrap();
        let found = find(&SearchEnv { esptool: None, path: Some(path) }).unwrap();
        assert_eq!(found.found_as, script);
        let none = find(&SearchEnv { esptool: None, path: Some("/nonexistent:/also-not".into()) });
        assert_eq!(none, Err(StubError::NotInstalled));
    }

    #[test]
    fn an_esptool_without_the_new_stubs_is_too_old() {
        let dir = tempfile::tempdir().unwrap();
        let script = layout(dir.path(), "{}");
        std::fs::remove_file(dir.path().join("lib/python3.12/site-packages/esptool").join(STUB_FILE))
            .unwrap();
        let e = for_source(&StubSource::Esptool(script), &SearchEnv::default()).unwrap_err();
        assert!(matches!(e, StubError::TooOld { .. }), "{e:?}");
        assert!(e.to_string().contains("since version 5.3"), "{e}");
    }

    #[test]
    fn scripts_name_their_python() {
        let env = SearchEnv::default();
        assert_eq!(
            interpreter(b"#!/opt/v/bin/python3.11\nimport x", &env),
            Some("/opt/v/bin/python3.11".into())
        );
        assert_eq!(interpreter(b"#!/bin/sh\nexec x", &env), None);
        assert_eq!(interpreter(b"\x7fELF....", &env), None);
    }
}
