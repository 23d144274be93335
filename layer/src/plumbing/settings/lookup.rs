//! Which settings files are read, and the process's side of reading them.
//!
//! The lookup is pure: [`load`] takes everything outside the layer that
//! decides the settings as [`Inputs`] (the environment, the executable's
//! name, the configuration directory, a file reader), so tests give their
//! own; only [`Settings::from_process`] reads the real ones.
//!
//! The files, the later winning ([`files`]):
//!
//! * with `SYNCFILE_WSI_CONFIG=FILE` in the environment, `FILE` alone (a
//!   missing one is a warning: someone named it);
//! * otherwise `<dir>/syncfile-wsi.conf`, then `<dir>/<exe>.conf`, where
//!   `<dir>` is `$XDG_CONFIG_HOME/syncfile-wsi` (or `~/.config/...`) and
//!   `<exe>` the executable's base name ([`exe_name`]); either may be
//!   missing, silently.
//!
//! A file that cannot be read, is larger than [`MAX_FILE_LEN`] or is not
//! UTF-8 is ignored whole, with one warning; the environment's values then
//! still count.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{Settings, CONFIG, PREFIX};

/// A settings file is a few lines; one larger than this (1 MiB) is not one.
pub const MAX_FILE_LEN: usize = 1 << 20;

/// The global file's name in the configuration directory.
const GLOBAL: &str = "syncfile-wsi.conf";

/// Everything outside the layer that decides its settings.
pub struct Inputs<'a> {
    /// The process's environment (only `SYNCFILE_WSI_*` names are settings).
    pub env: &'a BTreeMap<String, String>,
    /// The executable's base name, if known.
    pub exe: Option<&'a str>,
    /// `$XDG_CONFIG_HOME/syncfile-wsi`, if there is a home to find it in.
    pub config_dir: Option<&'a Path>,
    /// Reads a whole file; only its first `MAX_FILE_LEN + 1` bytes are
    /// needed.
    pub read: &'a dyn Fn(&Path) -> io::Result<Vec<u8>>,
}

/// A file to read, and whether someone named it (so that missing is worth
/// a warning).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub path: PathBuf,
    pub named: bool,
}

/// The files to read, the one that wins last.
pub fn files(inputs: &Inputs<'_>) -> Vec<Candidate> {
    if let Some(config) = inputs.env.get(CONFIG).filter(|c| !c.is_empty()) {
        return vec![Candidate {
            path: PathBuf::from(config),
            named: true,
        }];
    }
    let Some(dir) = inputs.config_dir else {
        return Vec::new();
    };
    let mut files = vec![dir.join(GLOBAL)];
    // An executable called `syncfile-wsi` has the global file as its own.
    if let Some(exe) = inputs.exe.filter(|&e| format!("{e}.conf") != GLOBAL) {
        files.push(dir.join(format!("{exe}.conf")));
    }
    files
        .into_iter()
        .map(|path| Candidate { path, named: false })
        .collect()
}

/// The settings from `inputs`, with a warning for each file not used and
/// each entry not used, the files' own first.
pub fn load(inputs: &Inputs<'_>) -> (Settings, Vec<String>) {
    let mut warnings = Vec::new();
    let mut texts: Vec<(PathBuf, String)> = Vec::new();
    for Candidate { path, named } in files(inputs) {
        let shown = path.display();
        match (inputs.read)(&path) {
            Ok(bytes) if bytes.len() > MAX_FILE_LEN => warnings.push(format!(
                "{shown}: ignored: larger than {MAX_FILE_LEN} bytes, not a settings file"
            )),
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => texts.push((path, text)),
                Err(e) => warnings.push(format!(
                    "{shown}: ignored: not UTF-8 text (byte {})",
                    e.utf8_error().valid_up_to()
                )),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound && !named => {}
            Err(e) => warnings.push(format!("{shown}: ignored: cannot read it: {e}")),
        }
    }
    let files: Vec<(&Path, &str)> = texts
        .iter()
        .map(|(p, t)| (p.as_path(), t.as_str()))
        .collect();
    let env = inputs
        .env
        .iter()
        .filter(|(k, _)| k.starts_with(PREFIX))
        .map(|(k, v)| (k.as_str(), v.as_str()));
    let (mut settings, entry_warnings) = Settings::parse(env, &files);
    warnings.extend(entry_warnings);
    settings.disable_for_exe(inputs.exe);
    (settings, warnings)
}

/// The configuration directory, by the XDG base-directory rules (a
/// relative `XDG_CONFIG_HOME` is to be ignored).
pub fn config_dir(xdg_config_home: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    let base = match (xdg_config_home, home) {
        (Some(x), _) if x.starts_with('/') => PathBuf::from(x),
        (_, Some(h)) if !h.is_empty() => PathBuf::from(h).join(".config"),
        _ => return None,
    };
    Some(base.join("syncfile-wsi"))
}

/// The name an executable goes by in `SYNCFILE_WSI_DISABLE_FOR` and its
/// own settings file: the base name of `/proc/self/exe`, the file the
/// kernel runs, rather than `argv[0]`, which is whatever the launcher
/// wrote (a wrapper's `exec -a`, a path, a symlink's name); `argv[0]` only
/// where `/proc` is not mounted. (An interpreted program goes by its
/// interpreter's name, `python3.13`; a Wine game by `wine64-preloader`.)
pub fn exe_name(exe: Option<&Path>, argv0: Option<&Path>) -> Option<String> {
    let name = exe.or(argv0)?.file_name()?.to_str()?;
    // readlink(2) of a replaced or deleted executable says so.
    let name = name.strip_suffix(" (deleted)").unwrap_or(name);
    (!name.is_empty()).then(|| name.to_owned())
}

/// Reads at most `MAX_FILE_LEN + 1` bytes of a regular file, never waiting
/// (a FIFO named as the settings file must not hang the application).
pub(super) fn read_capped(path: &Path) -> io::Result<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_LEN as u64 + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

impl Settings {
    /// Reads the settings from the process: its environment, its
    /// executable's name and the files they lead to.
    pub fn from_process() -> (Self, Vec<String>) {
        let exe = exe_name(
            std::env::current_exe().ok().as_deref(),
            std::env::args_os().next().map(PathBuf::from).as_deref(),
        );
        Self::for_executable(exe.as_deref())
    }

    /// The settings an executable called `exe` would read with this
    /// process's environment: its own `<exe>.conf`, and whether
    /// `SYNCFILE_WSI_DISABLE_FOR` names it.
    pub fn for_executable(exe: Option<&str>) -> (Self, Vec<String>) {
        let env: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with(PREFIX) || k == "XDG_CONFIG_HOME" || k == "HOME")
            .collect();
        let dir = config_dir(
            env.get("XDG_CONFIG_HOME").map(String::as_str),
            env.get("HOME").map(String::as_str),
        );
        load(&Inputs {
            env: &env,
            exe,
            config_dir: dir.as_deref(),
            read: &read_capped,
        })
    }
}
