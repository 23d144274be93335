//! The settings parser and lookup (`plumbing::settings`): whatever the
//! environment and the files hold (text, binary garbage, huge files, files
//! that cannot be read), they give settings and warnings, never a panic;
//! every line it cannot use is named in a warning; what it can use, it
//! keeps; and the environment wins over the files.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use proptest::prelude::*;

use crate::plumbing::settings::lookup::{self, Inputs, MAX_FILE_LEN};
use crate::plumbing::settings::{self, Settings, SyncMode};

/// Keys as an environment has them: the layer's, near misses, others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec![
            settings::LOG,
            settings::PLATFORMS,
            settings::SYNC,
            settings::STATS,
            settings::CAPTURE,
            settings::CAPTURE_EVERY,
            settings::HEADLESS_REFRESH,
            settings::HEADLESS_BUFFERS,
            settings::DISPLAY_DEVICE,
            settings::CONFIG,
            settings::DISABLE_FOR,
            "SYNCFILE_WSI_VM",
        ])
        .prop_map(str::to_owned),
        "SYNCFILE_WSI_[A-Z_]{0,12}",
        "[A-Za-z_]{1,8}",
    ]
}

/// Values: anything, numbers at the edges, and words the parser knows.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        any::<u64>().prop_map(|n| n.to_string()),
        "-?[0-9]{0,25}",
        proptest::sample::select(vec![
            "auto",
            "cpu",
            "none",
            "all",
            "headless,x11",
            ",,",
            "stderr",
            "driver",
            "consumer",
            "debug",
            "[[[",
            "0",
            "1000",
            "1001",
            "vkcube,steam",
        ])
        .prop_map(str::to_owned),
    ]
}

/// A file: lines of the layer's form, comments, blanks, and noise.
fn file() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        (key(), value()).prop_map(|(k, v)| format!("{k}={v}")),
        (key(), value()).prop_map(|(k, v)| format!("  {k} = \"{v}\"  ")),
        "#.*",
        any::<String>(),
    ];
    proptest::collection::vec(line, 0..24).prop_map(|l| l.join("\n"))
}

proptest! {
    #[test]
    fn any_input_gives_settings_and_named_warnings(
        env in proptest::collection::vec((key(), value()), 0..12),
        text in file(),
    ) {
        let (s, warnings) = Settings::parse(
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &[(Path::new("/c/syncfile-wsi.conf"), &text)],
        );
        prop_assert!(s.capture_every >= 1);
        prop_assert!((1..=1000).contains(&s.headless_refresh));
        for w in &warnings {
            prop_assert!(
                w.starts_with("/c/syncfile-wsi.conf:") || w.starts_with("environment:"),
                "a warning without its origin: {}", w
            );
        }
        // A non-blank, non-comment line without '=' is always named.
        for (n, line) in text.lines().enumerate() {
            let t = line.trim();
            if !t.is_empty() && !t.starts_with('#') && !t.contains('=') {
                let origin = format!("/c/syncfile-wsi.conf:{}:", n + 1);
                prop_assert!(warnings.iter().any(|w| w.starts_with(&origin)), "line {} unnamed", n + 1);
            }
        }
    }

    #[test]
    fn the_environment_wins_over_the_file(
        in_file in proptest::sample::select(SyncMode::ALL.to_vec()),
        in_env in proptest::sample::select(SyncMode::ALL.to_vec()),
        every in 1u64..,
    ) {
        let text = format!("{}={}\n{}={every}\n", settings::SYNC, in_file.name(), settings::CAPTURE_EVERY);
        let (s, warnings) = Settings::parse(
            [(settings::SYNC, in_env.name())],
            &[(Path::new("/c/f"), &text)],
        );
        prop_assert!(warnings.is_empty(), "{:?}", warnings);
        prop_assert_eq!(s.sync, in_env);
        prop_assert_eq!(s.capture_every, every);
    }

    #[test]
    fn any_files_give_settings_and_warnings_that_name_them(
        global in file_bytes(),
        own in file_bytes(),
        env in proptest::collection::vec((key(), value()), 0..6),
    ) {
        let env: BTreeMap<String, String> = env.into_iter().collect();
        let dir = Path::new("/c");
        let read = |path: &Path| {
            let content = if path == dir.join("syncfile-wsi.conf") { &global } else { &own };
            content.clone().map_err(io::Error::from)
        };
        let (s, warnings) = lookup::load(&Inputs {
            env: &env,
            exe: Some("app"),
            config_dir: Some(dir),
            read: &read,
        });
        prop_assert!(s.capture_every >= 1);
        for w in &warnings {
            prop_assert!(
                w.starts_with("/c/") || w.starts_with("environment:") || env.contains_key(settings::CONFIG),
                "a warning without its origin: {}", w
            );
        }
    }
}

/// A settings file's bytes as a reader gives them: text, garbage, a file
/// too large, or one that cannot be read.
fn file_bytes() -> impl Strategy<Value = Result<Vec<u8>, io::ErrorKind>> {
    prop_oneof![
        file().prop_map(|t| Ok(t.into_bytes())),
        proptest::collection::vec(any::<u8>(), 0..512).prop_map(Ok),
        Just(Ok(vec![b'x'; MAX_FILE_LEN + 1])),
        proptest::sample::select(vec![
            io::ErrorKind::NotFound,
            io::ErrorKind::PermissionDenied,
            io::ErrorKind::IsADirectory,
            io::ErrorKind::InvalidData,
        ])
        .prop_map(Err),
    ]
}
