//! The loader finds the layer through each of its manifests and turns it on
//! and off by the documented switches. "Active" is judged by the layer's own
//! statistics file, written only by a layer that took part in an instance.

use std::process::Output;

use libtest_mimic::{Completion, Failed};
use VkLayer_syncfile_wsi::manifest::LAYER_NAME;

use crate::common::{check, have_program, missing, run_ok, Outcome, Scratch};
use crate::support::Machine;

/// `None` when this machine can run the loader tests, else the outcome
/// saying why not.
pub fn needs_vulkan(m: &Machine) -> Option<Outcome> {
    if m.loader.is_none() {
        return Some(missing("no Vulkan loader (libvulkan.so.1)"));
    }
    if m.devices == 0 {
        return Some(missing(
            "the Vulkan loader reports no device (is lavapipe installed?)",
        ));
    }
    None
}

pub fn needs_vulkaninfo(m: &Machine) -> Option<Outcome> {
    needs_vulkan(m)
        .or_else(|| (!have_program("vulkaninfo")).then(|| missing("vulkaninfo is not installed")))
}

/// Runs `vulkaninfo --summary` in a fresh scratch with `env`; returns its
/// output and whether the layer was active.
fn vulkaninfo(env: &[(&str, &str)]) -> Result<(Output, bool), Failed> {
    let s = Scratch::new("discovery")?.with_manifests()?;
    let mut c = s.command("vulkaninfo");
    c.arg("--summary")
        .env("SYNCFILE_WSI_STATS", s.path("stats.json"));
    for &(k, v) in env {
        let v = v.replace("$SCRATCH", s.root.to_str().unwrap_or_default());
        c.env(k, v);
    }
    let out = run_ok(&mut c)?;
    let active = match s.stats()? {
        Some(stats) => stats["instances"]["created"].as_u64().unwrap_or(0) > 0,
        None => false,
    };
    Ok((out, active))
}

fn lists_layer(out: &Output) -> bool {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(LAYER_NAME))
}

/// The implicit manifest's switches, wherever the loader found it.
fn implicit_switches(location: (&str, &str)) -> Outcome {
    let (on_out, on) = vulkaninfo(&[location, ("ENABLE_SYNCFILE_WSI", "1")])?;
    check(on, || {
        "ENABLE_SYNCFILE_WSI=1: the layer was not active".into()
    })?;
    check(lists_layer(&on_out), || {
        "ENABLE_SYNCFILE_WSI=1: vulkaninfo does not list the layer".into()
    })?;
    let (_, disabled) = vulkaninfo(&[
        location,
        ("ENABLE_SYNCFILE_WSI", "1"),
        ("DISABLE_SYNCFILE_WSI", "1"),
    ])?;
    check(!disabled, || {
        "DISABLE_SYNCFILE_WSI=1 did not turn the layer off".into()
    })?;
    let (_, by_default) = vulkaninfo(&[location])?;
    check(!by_default, || {
        "the layer was active without ENABLE_SYNCFILE_WSI=1".into()
    })?;
    let (_, other_value) = vulkaninfo(&[location, ("ENABLE_SYNCFILE_WSI", "0")])?;
    check(!other_value, || {
        "ENABLE_SYNCFILE_WSI=0 turned the layer on".into()
    })?;
    Ok(Completion::Completed)
}

pub fn implicit_via_xdg_data_home(m: &Machine) -> Outcome {
    if let Some(skip) = needs_vulkaninfo(m) {
        return skip;
    }
    implicit_switches(("XDG_DATA_HOME", "$SCRATCH/data"))
}

pub fn implicit_via_add_implicit_layer_path(m: &Machine) -> Outcome {
    if let Some(skip) = needs_vulkaninfo(m) {
        return skip;
    }
    if !m.loader_knows("VK_ADD_IMPLICIT_LAYER_PATH") {
        return missing(format!(
            "the loader {} predates VK_ADD_IMPLICIT_LAYER_PATH (discovery::implicit_via_xdg_data_home covers implicit loading)",
            m.loader.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
        ));
    }
    implicit_switches(("VK_ADD_IMPLICIT_LAYER_PATH", "$SCRATCH/implicit"))
}

pub fn explicit_via_instance_layers(m: &Machine) -> Outcome {
    if let Some(skip) = needs_vulkaninfo(m) {
        return skip;
    }
    let path = ("VK_ADD_LAYER_PATH", "$SCRATCH/explicit");
    let (out, on) = vulkaninfo(&[path, ("VK_INSTANCE_LAYERS", LAYER_NAME)])?;
    check(on, || "VK_INSTANCE_LAYERS: the layer was not active".into())?;
    check(lists_layer(&out), || {
        "vulkaninfo does not list the layer".into()
    })?;
    let (_, off) = vulkaninfo(&[path])?;
    check(!off, || {
        "the explicit layer was active without being asked for".into()
    })?;
    Ok(Completion::Completed)
}
