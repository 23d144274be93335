//! The settings parser (`plumbing::settings`): whatever the environment
//! and the file hold, it gives settings and warnings, never a panic; every
//! line it cannot use is named in a warning; what it can use, it keeps;
//! and the environment wins over the file.

use proptest::prelude::*;

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
            Some(("/c/syncfile-wsi.conf", &text)),
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
            Some(("/c/f", &text)),
        );
        prop_assert!(warnings.is_empty(), "{:?}", warnings);
        prop_assert_eq!(s.sync, in_env);
        prop_assert_eq!(s.capture_every, every);
    }
}
