//! `scripts/install` and `--uninstall`, into a staging `DESTDIR`, a scratch
//! `PREFIX` and a scratch `--user` home, and the loader finding what it
//! installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use libtest_mimic::{Completion, Failed};
use serde_json::Value;
use VkLayer_syncfile_wsi::manifest::LIBRARY_NAME;

use crate::common::{check, child_json, library, run_ok, Outcome, Scratch};
use crate::discovery::needs_vulkan;
use crate::support::Machine;

const MANIFEST: &str = "VkLayer_syncfile_wsi.implicit.json";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install")
}

fn install(s: &Scratch, env: &[(&str, PathBuf)], args: &[&str]) -> Result<(), Failed> {
    let mut c: Command = s.command("bash");
    c.arg(script()).args(args).arg("--library").arg(library()?);
    c.envs(env.iter().map(|(k, v)| (*k, v)));
    run_ok(&mut c)?;
    Ok(())
}

fn library_path(manifest: &Path) -> Result<String, Failed> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(manifest)?)?;
    Ok(v["layer"]["library_path"]
        .as_str()
        .ok_or("no library_path")?
        .to_owned())
}

/// Whether a program with `ENABLE_SYNCFILE_WSI=1` and `env` runs with the layer.
fn loader_uses_it(s: &Scratch, env: &[(&str, PathBuf)]) -> Result<bool, Failed> {
    let stats = s.path("stats.json");
    let _ = std::fs::remove_file(&stats);
    let mut c = s.child("app")?;
    c.env("ENABLE_SYNCFILE_WSI", "1")
        .env("SYNCFILE_WSI_STATS", &stats);
    c.envs(env.iter().map(|(k, v)| (*k, v)));
    let out = run_ok(&mut c)?;
    let result = child_json(&out)?;
    check(result["device"] == "SUCCESS", || {
        format!("the program failed: {result}")
    })?;
    Ok(s.stats()?.is_some())
}

pub fn destdir_round_trip(m: &Machine) -> Outcome {
    if let Some(skip) = needs_vulkan(m) {
        return skip;
    }
    let s = Scratch::new("install")?;

    // Staged for a package: files under DESTDIR, paths without it.
    let staged = [
        ("DESTDIR", s.path("dest")),
        ("PREFIX", PathBuf::from("/opt/syncfile-wsi")),
    ];
    install(&s, &staged, &[])?;
    let lib = s.path("dest/opt/syncfile-wsi/lib").join(LIBRARY_NAME);
    let manifest = s
        .path("dest/opt/syncfile-wsi/share/vulkan/implicit_layer.d")
        .join(MANIFEST);
    check(lib.is_file() && manifest.is_file(), || {
        "DESTDIR install is missing files".into()
    })?;
    let path = library_path(&manifest)?;
    check(
        path == format!("/opt/syncfile-wsi/lib/{LIBRARY_NAME}"),
        || format!("library_path {path}"),
    )?;
    install(&s, &staged, &["--uninstall"])?;
    check(!lib.exists() && !manifest.exists(), || {
        "DESTDIR uninstall left files".into()
    })?;

    // Installed for real under a prefix the loader searches (XDG_DATA_DIRS).
    let prefix = s.path("prefix");
    install(&s, &[("PREFIX", prefix.clone())], &[])?;
    let manifest = prefix.join("share/vulkan/implicit_layer.d").join(MANIFEST);
    let path = library_path(&manifest)?;
    check(
        path == prefix.join("lib").join(LIBRARY_NAME).display().to_string(),
        || format!("library_path {path}"),
    )?;
    let system =
        std::env::var("XDG_DATA_DIRS").unwrap_or_else(|_| "/usr/local/share:/usr/share".into());
    let search = [(
        "XDG_DATA_DIRS",
        PathBuf::from(format!("{}:{system}", prefix.join("share").display())),
    )];
    check(loader_uses_it(&s, &search)?, || {
        "the loader did not load the installed layer".into()
    })?;
    install(&s, &[("PREFIX", prefix.clone())], &["--uninstall"])?;
    check(!manifest.exists(), || "uninstall left the manifest".into())?;
    check(!loader_uses_it(&s, &search)?, || {
        "the layer is still loaded after uninstalling".into()
    })?;
    Ok(Completion::Completed)
}

pub fn user_round_trip(m: &Machine) -> Outcome {
    if let Some(skip) = needs_vulkan(m) {
        return skip;
    }
    let s = Scratch::new("install-user")?;
    // Scratch::command sets HOME to the scratch home, and so the loader's
    // per-user search path.
    install(&s, &[], &["--user"])?;
    let home = s.path("home");
    let lib = home.join(".local/lib").join(LIBRARY_NAME);
    let manifest = home
        .join(".local/share/vulkan/implicit_layer.d")
        .join(MANIFEST);
    check(lib.is_file() && manifest.is_file(), || {
        "--user install is missing files".into()
    })?;
    let path = library_path(&manifest)?;
    check(path == lib.display().to_string(), || {
        format!("library_path {path}")
    })?;
    check(loader_uses_it(&s, &[])?, || {
        "the loader did not load the --user layer".into()
    })?;
    install(&s, &[], &["--user", "--uninstall"])?;
    check(!lib.exists() && !manifest.exists(), || {
        "--user uninstall left files".into()
    })?;
    check(!loader_uses_it(&s, &[])?, || {
        "the layer is still loaded after uninstalling".into()
    })?;
    Ok(Completion::Completed)
}
