//! The layer's settings: `SYNCFILE_WSI_*` environment variables and the same
//! `KEY=value` lines in settings files. Read once per instance. A setting
//! the layer cannot use never fails anything: it gives one warning that
//! names it and the default used.
//!
//! Where a value comes from, the first that has it winning:
//!
//! 1. the environment variable;
//! 2. the files ([`lookup`]): the one `SYNCFILE_WSI_CONFIG` names, and no
//!    other, if it is set; otherwise the executable's own
//!    `$XDG_CONFIG_HOME/syncfile-wsi/<exe>.conf`, then the global
//!    `$XDG_CONFIG_HOME/syncfile-wsi/syncfile-wsi.conf`; within a file, the
//!    last line with the key;
//! 3. the default.
//!
//! Then `SYNCFILE_WSI_DISABLE_FOR`, wherever it came from, turns the layer
//! into pure pass-through (`SYNCFILE_WSI_PLATFORMS=none`) for the
//! executables it names, whatever `SYNCFILE_WSI_PLATFORMS` says. Every
//! value remembers its [`Source`] ([`Settings::sources`]); a value that
//! was bad is the default's.

use std::fmt;
use std::path::{Path, PathBuf};

use tracing_subscriber::EnvFilter;

pub const LOG: &str = "SYNCFILE_WSI_LOG";
pub const PLATFORMS: &str = "SYNCFILE_WSI_PLATFORMS";
pub const SYNC: &str = "SYNCFILE_WSI_SYNC";
pub const STATS: &str = "SYNCFILE_WSI_STATS";
/// A directory: presented frames are written there as PNG files (see
/// `capture.rs`).
pub const CAPTURE: &str = "SYNCFILE_WSI_CAPTURE";
/// N >= 1: only every Nth frame is captured (default 1, every frame).
pub const CAPTURE_EVERY: &str = "SYNCFILE_WSI_CAPTURE_EVERY";
/// Hz, 1..=1000: the headless backend's virtual refresh rate, which paces
/// FIFO and FIFO_RELAXED swapchains (default 60).
pub const HEADLESS_REFRESH: &str = "SYNCFILE_WSI_HEADLESS_REFRESH";
/// `driver` or `consumer`: who allocates the headless consumer's images
/// (default `driver`, exported; `consumer`: from the system dma-heap, the
/// consumer's own, imported into Vulkan).
pub const HEADLESS_BUFFERS: &str = "SYNCFILE_WSI_HEADLESS_BUFFERS";

/// The KMS devices whose outputs the display platform offers as displays:
/// a device node (`/dev/dri/card0`), or a driver's name (`vkms`, `amdgpu`)
/// for every card it drives (default: every card with connectors).
pub const DISPLAY_DEVICE: &str = "SYNCFILE_WSI_DISPLAY_DEVICE";

/// A file that replaces the lookup of settings files ([`lookup`]); only
/// the environment can name it.
pub const CONFIG: &str = "SYNCFILE_WSI_CONFIG";
/// Executables' base names, comma-separated, for which the layer passes
/// everything through (as with `SYNCFILE_WSI_PLATFORMS=none`).
pub const DISABLE_FOR: &str = "SYNCFILE_WSI_DISABLE_FOR";

/// Every setting, in the README's order (which [`Settings::sources`] keeps).
pub const KEYS: [&str; 11] = [
    LOG,
    PLATFORMS,
    SYNC,
    STATS,
    CAPTURE,
    CAPTURE_EVERY,
    HEADLESS_REFRESH,
    HEADLESS_BUFFERS,
    DISPLAY_DEVICE,
    CONFIG,
    DISABLE_FOR,
];

/// Variables of the project that share the prefix but are not settings: the
/// test guest's marker and the test builds' fault injection.
const NOT_SETTINGS: [&str; 2] = ["SYNCFILE_WSI_VM", "SYNCFILE_WSI_FAULT"];

const PREFIX: &str = "SYNCFILE_WSI_";

pub const DEFAULT_LOG: &str = "warn";
/// Every presented frame is captured unless told otherwise: a user who asks
/// for captures wants to find the frame they are looking for.
pub const DEFAULT_CAPTURE_EVERY: u64 = 1;
/// The headless backend's virtual display refreshes at 60 Hz, the common
/// monitor rate, unless told otherwise.
pub const DEFAULT_HEADLESS_REFRESH: u32 = 60;
/// Refresh rates beyond this are not displays any more; below 1 Hz nothing
/// would ever be shown in FIFO mode.
const MAX_HEADLESS_REFRESH: u32 = 1000;
/// Warnings quote at most this many characters of a value or line, so
/// that a huge line in a file gives a readable warning.
const MAX_QUOTED: usize = 80;

pub mod lookup;
#[cfg(test)]
mod tests;

/// Where the value of a setting in force came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The layer's default: nothing set it, or what set it was bad.
    Default,
    /// The environment variable of the setting's name.
    Environment,
    /// A settings file, at this line (from 1).
    File { path: PathBuf, line: usize },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Environment => f.write_str("environment"),
            Source::File { path, line } => write!(f, "{}:{line}", path.display()),
        }
    }
}

/// A kind of surface the layer may own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    Headless,
    Wayland,
    X11,
    Display,
}

impl Platform {
    pub const ALL: [Platform; 4] = [
        Platform::Headless,
        Platform::Wayland,
        Platform::X11,
        Platform::Display,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Platform::Headless => "headless",
            Platform::Wayland => "wayland",
            Platform::X11 => "x11",
            Platform::Display => "display",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == word)
    }
}

/// Which surface types the layer may own; empty means pure pass-through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Platforms(u8);

impl Platforms {
    pub const NONE: Self = Self(0);
    pub const ALL: Self = Self(0b1111);

    pub fn contains(self, p: Platform) -> bool {
        self.0 & (1 << p as u8) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn with(self, p: Platform) -> Self {
        Self(self.0 | 1 << p as u8)
    }
}

impl fmt::Display for Platforms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = Platform::ALL
            .into_iter()
            .filter(|&p| self.contains(p))
            .map(Platform::name)
            .collect();
        f.write_str(&names.join(","))
    }
}

/// How presentation is synchronized with the consumer of an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// The best the consumer and the driver allow.
    Auto,
    /// Only the dma-buf's implicit fences.
    Implicit,
    /// An explicit-sync protocol on top of the implicit fences.
    Explicit,
    /// The fallback that waits on the CPU (in a present thread).
    Cpu,
}

impl SyncMode {
    pub const ALL: [SyncMode; 4] = [
        SyncMode::Auto,
        SyncMode::Implicit,
        SyncMode::Explicit,
        SyncMode::Cpu,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SyncMode::Auto => "auto",
            SyncMode::Implicit => "implicit",
            SyncMode::Explicit => "explicit",
            SyncMode::Cpu => "cpu",
        }
    }
}

/// Who allocates the images of a headless swapchain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buffers {
    /// The Vulkan driver, exported as dma-bufs.
    Driver,
    /// The consumer, from the system dma-heap, imported into Vulkan.
    Consumer,
}

impl Buffers {
    pub fn name(self) -> &'static str {
        match self {
            Buffers::Driver => "driver",
            Buffers::Consumer => "consumer",
        }
    }
}

/// Where statistics go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatsSink {
    Stderr,
    File(PathBuf),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The file `SYNCFILE_WSI_CONFIG` names, which replaced the lookup.
    pub config: Option<PathBuf>,
    /// The executables the layer passes through for (base names).
    pub disable_for: Vec<String>,
    /// This executable's name, when `disable_for` names it (and so
    /// `platforms` is none).
    pub disabled_as: Option<String>,
    /// A `tracing` filter directive, already checked to parse.
    pub log: String,
    pub platforms: Platforms,
    pub sync: SyncMode,
    pub stats: Option<StatsSink>,
    /// Where presented frames are written as PNG files, if anywhere.
    pub capture: Option<PathBuf>,
    /// Only frames whose number is a multiple of this are captured (>= 1).
    pub capture_every: u64,
    /// The headless backend's virtual refresh rate in Hz (1..=1000).
    pub headless_refresh: u32,
    pub headless_buffers: Buffers,
    /// The KMS devices the display platform uses, if named: a node's path
    /// or a driver's name.
    pub display_device: Option<String>,
    /// Where each value came from, by the index of its key in [`KEYS`].
    sources: [Source; KEYS.len()],
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            log: DEFAULT_LOG.to_owned(),
            platforms: Platforms::ALL,
            sync: SyncMode::Auto,
            stats: None,
            capture: None,
            capture_every: DEFAULT_CAPTURE_EVERY,
            headless_refresh: DEFAULT_HEADLESS_REFRESH,
            headless_buffers: Buffers::Driver,
            display_device: None,
            config: None,
            disable_for: Vec::new(),
            disabled_as: None,
            sources: std::array::from_fn(|_| Source::Default),
        }
    }
}

impl Settings {
    /// Where the value of `key` (one of [`KEYS`]) came from.
    pub fn source(&self, key: &str) -> Option<&Source> {
        Some(&self.sources[key_index(key)?])
    }

    /// Every setting's name with where its value came from, in [`KEYS`]'
    /// order: what a report of the settings in force prints beside them.
    pub fn sources(&self) -> impl Iterator<Item = (&'static str, &Source)> {
        KEYS.into_iter().zip(&self.sources)
    }

    /// The settings from `env` (the `SYNCFILE_WSI_*` variables) and the
    /// files' `(path, text)`, the one that wins last, and a warning for
    /// each entry not used.
    pub fn parse<'a>(
        env: impl IntoIterator<Item = (&'a str, &'a str)>,
        files: &[(&Path, &str)],
    ) -> (Self, Vec<String>) {
        let mut warnings = Vec::new();
        // Later entries win: the files first, then the environment.
        let mut entries: Vec<(String, String, Source)> = Vec::new();
        for (path, text) in files {
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let origin = Source::File {
                    path: path.to_path_buf(),
                    line: n + 1,
                };
                match line.split_once('=') {
                    Some((k, _)) if k.trim() == CONFIG => warnings.push(format!(
                        "{origin}: ignoring {CONFIG}: only the environment can name a settings file"
                    )),
                    Some((k, v)) => entries.push((k.trim().to_owned(), unquote(v.trim()), origin)),
                    None => warnings.push(format!(
                        "{origin}: ignoring '{}': not KEY=VALUE",
                        quoted(line)
                    )),
                }
            }
        }
        for (k, v) in env {
            if k.starts_with(PREFIX) && !NOT_SETTINGS.contains(&k) {
                entries.push((k.to_owned(), v.to_owned(), Source::Environment));
            }
        }

        let mut s = Settings::default();
        for (key, value, origin) in &entries {
            let mut used = true;
            let mut bad = |default: &str| {
                used = false;
                warnings.push(format!(
                    "{origin}: bad value '{}' for {key}; using the default {default}",
                    quoted(value)
                ));
            };
            match key.as_str() {
                LOG => match EnvFilter::try_new(value) {
                    Ok(_) => s.log = value.clone(),
                    Err(_) => {
                        bad(DEFAULT_LOG);
                        s.log = DEFAULT_LOG.to_owned();
                    }
                },
                PLATFORMS => match parse_platforms(value) {
                    Some(p) => s.platforms = p,
                    None => {
                        bad(&Platforms::ALL.to_string());
                        s.platforms = Platforms::ALL;
                    }
                },
                SYNC => match SyncMode::ALL.into_iter().find(|m| m.name() == value) {
                    Some(m) => s.sync = m,
                    None => {
                        bad(SyncMode::Auto.name());
                        s.sync = SyncMode::Auto;
                    }
                },
                STATS => {
                    s.stats = match value.as_str() {
                        "" => None,
                        "stderr" => Some(StatsSink::Stderr),
                        path => Some(StatsSink::File(PathBuf::from(path))),
                    }
                }
                CAPTURE => s.capture = (!value.is_empty()).then(|| PathBuf::from(value)),
                CAPTURE_EVERY => match value.trim().parse::<u64>() {
                    Ok(n) if n >= 1 => s.capture_every = n,
                    _ => {
                        bad(&DEFAULT_CAPTURE_EVERY.to_string());
                        s.capture_every = DEFAULT_CAPTURE_EVERY;
                    }
                },
                HEADLESS_REFRESH => match value.trim().parse::<u32>() {
                    Ok(hz) if (1..=MAX_HEADLESS_REFRESH).contains(&hz) => s.headless_refresh = hz,
                    _ => {
                        bad(&DEFAULT_HEADLESS_REFRESH.to_string());
                        s.headless_refresh = DEFAULT_HEADLESS_REFRESH;
                    }
                },
                HEADLESS_BUFFERS => match value.trim() {
                    "driver" => s.headless_buffers = Buffers::Driver,
                    "consumer" => s.headless_buffers = Buffers::Consumer,
                    _ => {
                        bad(Buffers::Driver.name());
                        s.headless_buffers = Buffers::Driver;
                    }
                },
                DISPLAY_DEVICE => s.display_device = (!value.is_empty()).then(|| value.clone()),
                CONFIG => s.config = (!value.is_empty()).then(|| PathBuf::from(value)),
                DISABLE_FOR => {
                    s.disable_for = value
                        .split(',')
                        .map(str::trim)
                        .filter(|name| !name.is_empty())
                        .map(str::to_owned)
                        .collect()
                }
                _ => {
                    used = false;
                    warnings.push(format!(
                        "{origin}: unknown setting {}; known ones are {}",
                        quoted(key),
                        KEYS.join(", ")
                    ))
                }
            }
            if let Some(index) = key_index(key) {
                s.sources[index] = if used {
                    origin.clone()
                } else {
                    Source::Default
                };
            }
        }
        (s, warnings)
    }

    /// Pass-through for an executable `SYNCFILE_WSI_DISABLE_FOR` names:
    /// no platform, and the platforms' source is the list's.
    fn disable_for_exe(&mut self, exe: Option<&str>) {
        if let Some(exe) = exe.filter(|exe| self.disable_for.iter().any(|name| name == exe)) {
            self.platforms = Platforms::NONE;
            self.disabled_as = Some(exe.to_owned());
            if let (Some(list), Some(platforms)) = (key_index(DISABLE_FOR), key_index(PLATFORMS)) {
                self.sources[platforms] = self.sources[list].clone();
            }
        }
    }
}

/// Where `key`'s source is kept, if it is a setting.
fn key_index(key: &str) -> Option<usize> {
    KEYS.iter().position(|&k| k == key)
}

/// At most [`MAX_QUOTED`] characters of `text`, for a warning.
fn quoted(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

fn unquote(v: &str) -> String {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner.to_owned();
        }
    }
    v.to_owned()
}

fn parse_platforms(value: &str) -> Option<Platforms> {
    let value = value.trim();
    if value == "none" {
        return Some(Platforms::NONE);
    }
    if value == "all" {
        return Some(Platforms::ALL);
    }
    value
        .split(',')
        .map(str::trim)
        .try_fold(Platforms::NONE, |acc, w| {
            Some(acc.with(Platform::parse(w)?))
        })
        .filter(|p| !p.is_empty())
}
