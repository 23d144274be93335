//! The committed manifests in `manifest/` are what `src/manifest.rs`
//! renders: regenerate them with
//! `cargo run -p syncfile-wsi --bin syncfile-wsi-manifest -- --write manifest`.

use std::path::Path;

use VkLayer_syncfile_wsi::manifest::{
    render, render_for_arch, Kind, LibraryArch, DISABLE_ENV, ENABLE_ENV, LAYER_NAME, LIBRARY_NAME,
};

fn committed(kind: Kind) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../manifest")
        .join(kind.file_name());
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn committed_manifests_are_up_to_date() {
    for kind in Kind::ALL {
        assert_eq!(
            committed(kind),
            render(kind, LIBRARY_NAME),
            "manifest/{} is stale: regenerate it with \
             `cargo run -p syncfile-wsi --bin syncfile-wsi-manifest -- --write manifest`",
            kind.file_name()
        );
    }
}

#[test]
fn the_generator_writes_the_same_files() {
    let dir = std::env::temp_dir().join(format!("syncfile-wsi-manifest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_syncfile-wsi-manifest"))
        .arg("--write")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    for kind in Kind::ALL {
        assert_eq!(
            std::fs::read_to_string(dir.join(kind.file_name())).unwrap(),
            committed(kind)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn implicit_and_explicit_differ_only_by_the_switches() {
    let implicit: serde_json::Value = serde_json::from_str(&committed(Kind::Implicit)).unwrap();
    let mut explicit: serde_json::Value = serde_json::from_str(&committed(Kind::Explicit)).unwrap();
    assert_eq!(implicit["layer"]["name"], LAYER_NAME);
    assert_eq!(implicit["layer"]["enable_environment"][ENABLE_ENV], "1");
    assert_eq!(implicit["layer"]["disable_environment"][DISABLE_ENV], "1");
    assert!(explicit["layer"].get("enable_environment").is_none());
    explicit["layer"]["enable_environment"] = implicit["layer"]["enable_environment"].clone();
    explicit["layer"]["disable_environment"] = implicit["layer"]["disable_environment"].clone();
    assert_eq!(implicit, explicit);
}

#[test]
fn an_arch_manifest_adds_only_the_word_size_and_its_format() {
    let path = "/usr/lib/x86_64-linux-gnu/libVkLayer_syncfile_wsi.so";
    for kind in Kind::ALL {
        let mut arch: serde_json::Value =
            serde_json::from_str(&render_for_arch(kind, path, LibraryArch::Bits64)).unwrap();
        let plain: serde_json::Value = serde_json::from_str(&render(kind, path)).unwrap();
        assert_eq!(arch["file_format_version"], "1.2.1");
        assert_eq!(arch["layer"]["library_arch"], "64");
        arch["file_format_version"] = plain["file_format_version"].clone();
        arch["layer"]
            .as_object_mut()
            .unwrap()
            .remove("library_arch");
        assert_eq!(arch, plain);
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_syncfile-wsi-manifest"))
        .args(["--library-path", path, "--library-arch", "32", "implicit"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        render_for_arch(Kind::Implicit, path, LibraryArch::Bits32)
    );
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_syncfile-wsi-manifest"))
        .args(["--library-arch", "16", "implicit"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
