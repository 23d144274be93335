//! The layer's settings: `SYNCFILE_WSI_*` environment variables and the same
//! keys in `$XDG_CONFIG_HOME/syncfile-wsi/syncfile-wsi.conf`, the environment
//! winning. Read once per instance. A setting the layer cannot use never
//! fails anything: it gives one warning that names it and the default used.

use std::fmt;
use std::path::PathBuf;

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

const KEYS: [&str; 9] = [
    LOG,
    PLATFORMS,
    SYNC,
    STATS,
    CAPTURE,
    CAPTURE_EVERY,
    HEADLESS_REFRESH,
    HEADLESS_BUFFERS,
    DISPLAY_DEVICE,
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
        }
    }
}

/// Where the configuration file is, by the XDG base-directory rules.
pub fn config_path(xdg_config_home: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    let base = match (xdg_config_home, home) {
        (Some(x), _) if x.starts_with('/') => PathBuf::from(x),
        (_, Some(h)) if !h.is_empty() => PathBuf::from(h).join(".config"),
        _ => return None,
    };
    Some(base.join("syncfile-wsi").join("syncfile-wsi.conf"))
}

impl Settings {
    /// Reads the settings from the process environment and the config file.
    pub fn from_process() -> (Self, Vec<String>) {
        let path = config_path(
            std::env::var("XDG_CONFIG_HOME").ok().as_deref(),
            std::env::var("HOME").ok().as_deref(),
        );
        let file = path.as_ref().and_then(|p| {
            std::fs::read_to_string(p)
                .ok()
                .map(|text| (p.display().to_string(), text))
        });
        let env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with(PREFIX))
            .collect();
        Self::parse(
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            file.as_ref().map(|(p, t)| (p.as_str(), t.as_str())),
        )
    }

    /// The settings from `env` (the `SYNCFILE_WSI_*` variables) and the
    /// config file's `(path, text)`, and a warning for each entry not used.
    pub fn parse<'a>(
        env: impl IntoIterator<Item = (&'a str, &'a str)>,
        file: Option<(&str, &str)>,
    ) -> (Self, Vec<String>) {
        let mut warnings = Vec::new();
        // Later entries win: the file first, then the environment.
        let mut entries: Vec<(String, String, String)> = Vec::new();
        if let Some((path, text)) = file {
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let origin = format!("{path}:{}", n + 1);
                match line.split_once('=') {
                    Some((k, v)) => entries.push((k.trim().to_owned(), unquote(v.trim()), origin)),
                    None => warnings.push(format!("{origin}: ignoring '{line}': not KEY=VALUE")),
                }
            }
        }
        for (k, v) in env {
            if k.starts_with(PREFIX) && !NOT_SETTINGS.contains(&k) {
                entries.push((k.to_owned(), v.to_owned(), "environment".to_owned()));
            }
        }

        let mut s = Settings::default();
        for (key, value, origin) in &entries {
            let mut bad = |default: &str| {
                warnings.push(format!(
                    "{origin}: bad value '{value}' for {key}; using the default {default}"
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
                _ => warnings.push(format!(
                    "{origin}: unknown setting {key}; known ones are {}",
                    KEYS.join(", ")
                )),
            }
        }
        (s, warnings)
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

#[cfg(test)]
mod tests {

    #[test]
    fn the_display_device_is_a_node_or_a_driver() {
        let (s, w) = Settings::parse([(DISPLAY_DEVICE, "vkms")], None);
        assert_eq!((s.display_device.as_deref(), w.len()), (Some("vkms"), 0));
        let (s, _) = Settings::parse([(DISPLAY_DEVICE, "/dev/dri/card2")], None);
        assert_eq!(s.display_device.as_deref(), Some("/dev/dri/card2"));
        let (s, _) = Settings::parse([(DISPLAY_DEVICE, "")], None);
        assert_eq!(s.display_device, None);
    }
    use super::*;

    fn env(pairs: &[(&'static str, &'static str)]) -> (Settings, Vec<String>) {
        Settings::parse(pairs.iter().copied(), None)
    }

    #[test]
    fn defaults() {
        let (s, w) = env(&[]);
        assert_eq!(s, Settings::default());
        assert!(w.is_empty());
        assert_eq!(s.platforms.to_string(), "headless,wayland,x11,display");
    }

    #[test]
    fn good_values() {
        let (s, w) = env(&[
            (LOG, "syncfile_wsi=debug,warn"),
            (PLATFORMS, "headless, wayland"),
            (SYNC, "cpu"),
            (STATS, "/tmp/stats.json"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(s.log, "syncfile_wsi=debug,warn");
        assert!(s.platforms.contains(Platform::Headless));
        assert!(s.platforms.contains(Platform::Wayland));
        assert!(!s.platforms.contains(Platform::X11));
        assert_eq!(s.sync, SyncMode::Cpu);
        assert_eq!(s.stats, Some(StatsSink::File("/tmp/stats.json".into())));
        assert_eq!(env(&[(STATS, "stderr")]).0.stats, Some(StatsSink::Stderr));
        assert_eq!(env(&[(STATS, "")]).0.stats, None);
    }

    #[test]
    fn capture_and_refresh() {
        let (s, w) = env(&[
            (CAPTURE, "/tmp/frames"),
            (CAPTURE_EVERY, "10"),
            (HEADLESS_REFRESH, "144"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(s.capture, Some(PathBuf::from("/tmp/frames")));
        assert_eq!(s.capture_every, 10);
        assert_eq!(s.headless_refresh, 144);
        let (s, w) = env(&[
            (CAPTURE, ""),
            (CAPTURE_EVERY, "0"),
            (HEADLESS_REFRESH, "1001"),
        ]);
        assert_eq!(s, Settings::default());
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains(CAPTURE_EVERY) && w[0].contains("default 1"));
        assert!(w[1].contains(HEADLESS_REFRESH) && w[1].contains("default 60"));
    }

    #[test]
    fn headless_buffers() {
        assert_eq!(Settings::default().headless_buffers, Buffers::Driver);
        let (s, w) = env(&[(HEADLESS_BUFFERS, "consumer")]);
        assert!(w.is_empty() && s.headless_buffers == Buffers::Consumer);
        let (s, w) = env(&[(HEADLESS_BUFFERS, "gpu")]);
        assert_eq!(s.headless_buffers, Buffers::Driver);
        assert!(
            w[0].contains(HEADLESS_BUFFERS) && w[0].contains("default driver"),
            "{w:?}"
        );
    }

    #[test]
    fn none_means_pass_through() {
        let (s, w) = env(&[(PLATFORMS, "none")]);
        assert!(w.is_empty());
        assert!(s.platforms.is_empty());
        assert_eq!(s.platforms.to_string(), "none");
    }

    #[test]
    fn bad_values_warn_once_with_the_default() {
        let (s, w) = env(&[
            (PLATFORMS, "headless,mars"),
            (SYNC, "sometimes"),
            (LOG, "[[["),
        ]);
        assert_eq!(s, Settings::default());
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains(PLATFORMS) && w[0].contains("headless,wayland,x11,display"));
        assert!(w[1].contains(SYNC) && w[1].contains("'sometimes'") && w[1].contains("auto"));
        assert!(w[2].contains(LOG) && w[2].contains(DEFAULT_LOG));
        assert!(env(&[(PLATFORMS, "")]).1[0].contains(PLATFORMS));
    }

    #[test]
    fn unknown_keys_warn_but_project_variables_do_not() {
        let (s, w) = env(&[
            ("SYNCFILE_WSI_PLATFORM", "none"),
            ("SYNCFILE_WSI_VM", "1"),
            ("SYNCFILE_WSI_FAULT", "x"),
        ]);
        assert_eq!(s, Settings::default());
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("SYNCFILE_WSI_PLATFORM;"), "{w:?}");
    }

    #[test]
    fn file_is_read_and_environment_wins() {
        let text =
            "# comment\n\nSYNCFILE_WSI_SYNC = implicit\nSYNCFILE_WSI_PLATFORMS=\"wayland\"\n\
                    SYNCFILE_WSI_STATS=stderr\nSYNCFILE_WSI_COLOUR=red\nnonsense\n";
        let (s, w) = Settings::parse([(SYNC, "explicit")], Some(("/c/syncfile-wsi.conf", text)));
        assert_eq!(s.sync, SyncMode::Explicit);
        assert_eq!(s.platforms.to_string(), "wayland");
        assert_eq!(s.stats, Some(StatsSink::Stderr));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w
            .iter()
            .any(|w| w.starts_with("/c/syncfile-wsi.conf:7") && w.contains("nonsense")));
        assert!(w
            .iter()
            .any(|w| w.starts_with("/c/syncfile-wsi.conf:6") && w.contains("COLOUR")));
    }

    #[test]
    fn config_path_follows_xdg() {
        assert_eq!(
            config_path(Some("/x"), Some("/h")),
            Some(PathBuf::from("/x/syncfile-wsi/syncfile-wsi.conf"))
        );
        assert_eq!(
            config_path(Some("relative"), Some("/h")),
            Some(PathBuf::from("/h/.config/syncfile-wsi/syncfile-wsi.conf"))
        );
        assert_eq!(config_path(None, None), None);
    }
}
