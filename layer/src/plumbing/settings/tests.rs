//! The settings' plain unit tests: values, warnings, and the lookup of
//! files with its precedence (`lookup`), through fake environments and
//! file readers.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::lookup::{
    config_dir, exe_name, files, load, read_capped, Candidate, Inputs, MAX_FILE_LEN,
};
use super::*;

fn env(pairs: &[(&'static str, &'static str)]) -> (Settings, Vec<String>) {
    Settings::parse(pairs.iter().copied(), &[])
}

/// The values alone, without where they came from.
fn values(mut s: Settings) -> Settings {
    s.sources = Settings::default().sources;
    s
}

#[test]
fn the_display_device_is_a_node_or_a_driver() {
    let (s, w) = Settings::parse([(DISPLAY_DEVICE, "vkms")], &[]);
    assert_eq!((s.display_device.as_deref(), w.len()), (Some("vkms"), 0));
    let (s, _) = Settings::parse([(DISPLAY_DEVICE, "/dev/dri/card2")], &[]);
    assert_eq!(s.display_device.as_deref(), Some("/dev/dri/card2"));
    let (s, _) = Settings::parse([(DISPLAY_DEVICE, "")], &[]);
    assert_eq!(s.display_device, None);
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
    assert_eq!(values(s), Settings::default());
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
    let text = "# comment\n\nSYNCFILE_WSI_SYNC = implicit\nSYNCFILE_WSI_PLATFORMS=\"wayland\"\n\
                SYNCFILE_WSI_STATS=stderr\nSYNCFILE_WSI_COLOUR=red\nnonsense\n";
    let (s, w) = Settings::parse(
        [(SYNC, "explicit")],
        &[(Path::new("/c/syncfile-wsi.conf"), text)],
    );
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
fn config_dir_follows_xdg() {
    assert_eq!(
        config_dir(Some("/x"), Some("/h")),
        Some(PathBuf::from("/x/syncfile-wsi"))
    );
    assert_eq!(
        config_dir(Some("relative"), Some("/h")),
        Some(PathBuf::from("/h/.config/syncfile-wsi"))
    );
    assert_eq!(config_dir(None, None), None);
}

/// A machine: its environment, its executable and its files (a path
/// missing from `files` does not exist; an error kind is a file that
/// cannot be read).
struct Machine {
    env: BTreeMap<String, String>,
    exe: Option<&'static str>,
    files: BTreeMap<PathBuf, Content>,
}

/// A file's bytes, or why it cannot be read.
type Content = Result<Vec<u8>, io::ErrorKind>;

const DIR: &str = "/home/u/.config/syncfile-wsi";

impl Machine {
    fn new(exe: Option<&'static str>) -> Self {
        Machine {
            env: BTreeMap::new(),
            exe,
            files: BTreeMap::new(),
        }
    }

    fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.to_owned(), value.to_owned());
        self
    }

    fn file(mut self, path: &str, content: Result<&[u8], io::ErrorKind>) -> Self {
        self.files
            .insert(PathBuf::from(path), content.map(<[u8]>::to_vec));
        self
    }

    fn text(self, path: &str, text: &str) -> Self {
        self.file(path, Ok(text.as_bytes()))
    }

    fn load(&self) -> (Settings, Vec<String>) {
        let read = |path: &Path| match self.files.get(path) {
            Some(Ok(bytes)) => Ok(bytes.clone()),
            Some(Err(kind)) => Err(io::Error::from(*kind)),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        };
        load(&Inputs {
            env: &self.env,
            exe: self.exe,
            config_dir: Some(Path::new(DIR)),
            read: &read,
        })
    }
}

fn in_file(path: &str, line: usize) -> Source {
    Source::File {
        path: PathBuf::from(path),
        line,
    }
}

#[test]
fn environment_then_the_executables_file_then_the_global_file_then_the_default() {
    let global = format!("{DIR}/syncfile-wsi.conf");
    let own = format!("{DIR}/vkcube.conf");
    let (s, w) = Machine::new(Some("vkcube"))
        .env(SYNC, "cpu")
        .text(&global, "SYNCFILE_WSI_SYNC=implicit\nSYNCFILE_WSI_CAPTURE_EVERY=3\nSYNCFILE_WSI_HEADLESS_REFRESH=30\n")
        .text(&own, "SYNCFILE_WSI_SYNC=explicit\nSYNCFILE_WSI_CAPTURE_EVERY=5\n")
        .load();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(s.sync, SyncMode::Cpu);
    assert_eq!(s.capture_every, 5);
    assert_eq!(s.headless_refresh, 30);
    assert_eq!(s.source(SYNC), Some(&Source::Environment));
    assert_eq!(s.source(CAPTURE_EVERY), Some(&in_file(&own, 2)));
    assert_eq!(s.source(HEADLESS_REFRESH), Some(&in_file(&global, 3)));
    assert_eq!(s.source(LOG), Some(&Source::Default));
    assert_eq!(s.source("SYNCFILE_WSI_COLOUR"), None);
    assert_eq!(s.sources().count(), KEYS.len());
    assert_eq!(in_file(&own, 2).to_string(), format!("{own}:2"));
}

#[test]
fn another_executables_file_is_not_read() {
    let (s, _) = Machine::new(Some("vkmark"))
        .text(&format!("{DIR}/vkcube.conf"), "SYNCFILE_WSI_SYNC=cpu\n")
        .load();
    assert_eq!(s.sync, SyncMode::Auto);
}

#[test]
fn the_files_looked_for() {
    let env = BTreeMap::new();
    let dir = Path::new(DIR);
    let none = |_: &Path| Err(io::Error::from(io::ErrorKind::NotFound));
    let inputs = |exe| Inputs {
        env: &env,
        exe,
        config_dir: Some(dir),
        read: &none,
    };
    let global = Candidate {
        path: dir.join("syncfile-wsi.conf"),
        named: false,
    };
    let own = Candidate {
        path: dir.join("vkcube.conf"),
        named: false,
    };
    assert_eq!(files(&inputs(Some("vkcube"))), [global.clone(), own]);
    // Unknown executable, or one that shares the global file's name.
    assert_eq!(files(&inputs(None)), std::slice::from_ref(&global));
    assert_eq!(files(&inputs(Some("syncfile-wsi"))), [global]);
    let homeless = Inputs {
        config_dir: None,
        ..inputs(Some("vkcube"))
    };
    assert!(files(&homeless).is_empty());
}

#[test]
fn a_named_file_replaces_the_lookup() {
    let (s, w) = Machine::new(Some("vkcube"))
        .env(CONFIG, "/etc/sfw.conf")
        .text("/etc/sfw.conf", "SYNCFILE_WSI_SYNC=cpu\n")
        .text(&format!("{DIR}/vkcube.conf"), "SYNCFILE_WSI_LOG=debug\n")
        .text(
            &format!("{DIR}/syncfile-wsi.conf"),
            "SYNCFILE_WSI_STATS=stderr\n",
        )
        .load();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        (s.sync, s.log.as_str(), &s.stats),
        (SyncMode::Cpu, "warn", &None)
    );
    assert_eq!(s.config, Some(PathBuf::from("/etc/sfw.conf")));
    assert_eq!(s.source(CONFIG), Some(&Source::Environment));
    assert_eq!(s.source(SYNC), Some(&in_file("/etc/sfw.conf", 1)));

    // Named but missing: a warning, and no other file instead.
    let (s, w) = Machine::new(None)
        .env(CONFIG, "/nowhere.conf")
        .text(
            &format!("{DIR}/syncfile-wsi.conf"),
            "SYNCFILE_WSI_SYNC=cpu\n",
        )
        .load();
    assert_eq!(s.sync, SyncMode::Auto);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("/nowhere.conf: ignored: cannot read it"),
        "{w:?}"
    );
}

#[test]
fn only_the_environment_names_a_settings_file() {
    let global = format!("{DIR}/syncfile-wsi.conf");
    let (s, w) = Machine::new(None)
        .text(&global, "SYNCFILE_WSI_CONFIG=/etc/other.conf\n")
        .load();
    assert_eq!(
        (&s.config, s.source(CONFIG)),
        (&None, Some(&Source::Default))
    );
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with(&format!("{global}:1: ignoring {CONFIG}")),
        "{w:?}"
    );
}

#[test]
fn disable_for_passes_the_named_executables_through() {
    let global = format!("{DIR}/syncfile-wsi.conf");
    let machine = |exe| {
        Machine::new(exe)
            .env(PLATFORMS, "headless")
            .text(&global, "SYNCFILE_WSI_DISABLE_FOR = steam, vkcube ,,\n")
    };
    let (s, w) = machine(Some("vkcube")).load();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(s.disable_for, ["steam", "vkcube"]);
    assert!(s.platforms.is_empty());
    assert_eq!(s.disabled_as.as_deref(), Some("vkcube"));
    assert_eq!(s.source(PLATFORMS), Some(&in_file(&global, 1)));
    assert_eq!(s.source(DISABLE_FOR), Some(&in_file(&global, 1)));

    for exe in [Some("vkmark"), Some("vkcub"), None] {
        let (s, _) = machine(exe).load();
        assert_eq!(s.platforms.to_string(), "headless", "{exe:?}");
        assert_eq!(s.disabled_as, None, "{exe:?}");
        assert_eq!(s.source(PLATFORMS), Some(&Source::Environment));
    }
    // The environment's empty list clears the file's.
    let (s, _) = machine(Some("vkcube")).env(DISABLE_FOR, "").load();
    assert!(s.disable_for.is_empty() && !s.platforms.is_empty());
}

#[test]
fn files_that_cannot_be_used_are_ignored_with_one_warning_each() {
    let global = format!("{DIR}/syncfile-wsi.conf");
    let own = format!("{DIR}/vkcube.conf");
    let cases: [(&str, Content, &str); 4] = [
        (
            &global,
            Err(io::ErrorKind::PermissionDenied),
            "cannot read it",
        ),
        (
            &global,
            Ok(b"SYNCFILE_WSI_SYNC=cpu\n\xff\xfe\n".to_vec()),
            "not UTF-8 text (byte 22)",
        ),
        (&own, Ok(vec![b'#'; MAX_FILE_LEN + 1]), "larger than"),
        (&own, Err(io::ErrorKind::IsADirectory), "cannot read it"),
    ];
    for (path, content, why) in cases {
        let (s, w) = Machine::new(Some("vkcube"))
            .env(CAPTURE_EVERY, "7")
            .file(path, content.as_deref().map_err(|e| *e))
            .load();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(&format!("{path}: ignored: {why}")),
            "{w:?}"
        );
        assert_eq!((s.sync, s.capture_every), (SyncMode::Auto, 7));
    }
    // Missing files that nobody named are no news.
    assert_eq!(
        Machine::new(Some("vkcube")).load(),
        (Settings::default(), vec![])
    );
}

#[test]
fn warnings_quote_a_huge_line_short() {
    let line = format!("{SYNC}={}", "x".repeat(100_000));
    let (_, w) = Settings::parse([], &[(Path::new("/c"), &line)]);
    assert_eq!(w.len(), 1);
    assert!(w[0].len() < 300, "{}", w[0].len());
    let (_, w) = Settings::parse([], &[(Path::new("/c"), &"é".repeat(1000))]);
    assert!(w[0].contains("...") && w[0].len() < 300, "{w:?}");
}

#[test]
fn the_executable_is_procs_unless_there_is_no_proc() {
    let proc_exe = Some(Path::new("/usr/bin/vkcube-wayland"));
    let argv0 = Some(Path::new("vkcube"));
    assert_eq!(exe_name(proc_exe, argv0).as_deref(), Some("vkcube-wayland"));
    assert_eq!(exe_name(None, argv0).as_deref(), Some("vkcube"));
    let replaced = Some(Path::new("/opt/game/game.x86_64 (deleted)"));
    assert_eq!(exe_name(replaced, None).as_deref(), Some("game.x86_64"));
    assert_eq!(exe_name(Some(Path::new("/")), None), None);
    assert_eq!(exe_name(None, None), None);
}

#[test]
fn the_reader_takes_regular_files_only_and_never_waits() {
    let dir = std::env::temp_dir().join(format!("sfw-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo.conf");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        0,
    )
    .unwrap();
    let big = dir.join("big.conf");
    std::fs::write(&big, vec![b'#'; MAX_FILE_LEN + 10]).unwrap();
    let fifo_error = read_capped(&fifo).map(|_| ()).map_err(|e| e.kind());
    let dir_error = read_capped(&dir).map(|_| ()).map_err(|e| e.kind());
    let big_len = read_capped(&big).map(|b| b.len());
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(fifo_error, Err(io::ErrorKind::InvalidInput));
    assert_eq!(dir_error, Err(io::ErrorKind::InvalidInput));
    assert_eq!(big_len.unwrap(), MAX_FILE_LEN + 1);
}
