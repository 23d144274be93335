//! What applications see with the layer on: the same devices, the device
//! extensions it needs only where the driver has them, no validation error
//! with the Khronos layer above or below it, and no crash from bad settings
//! or a panic inside it.

use std::process::Command;

use libtest_mimic::{Completion, Failed};
use serde_json::Value;
use VkLayer_syncfile_wsi::manifest::{
    DEVICE_EXTENSIONS, INSTANCE_EXTENSIONS, REFUSED_DEVICE_EXTENSIONS,
};

use crate::child::CANARY;
use crate::common::validation::{check_canary, in_order, stack, VALIDATION};
use crate::common::{check, child_json, missing, run_ok, stat, Outcome, Scratch};
use crate::discovery::{needs_vulkan, needs_vulkaninfo};
use crate::support::{layer_lines, Machine};

/// The device extensions the layer needs, and the version making one unneeded.
const NEEDED: [(&str, Option<u32>); 6] = [
    ("VK_KHR_external_memory_fd", None),
    ("VK_EXT_external_memory_dma_buf", None),
    ("VK_EXT_image_drm_format_modifier", None),
    ("VK_KHR_image_format_list", Some(ash::vk::API_VERSION_1_2)),
    ("VK_KHR_external_semaphore_fd", None),
    ("VK_KHR_external_fence_fd", None),
];

/// Turns the implicit layer on for `c` (or only points the loader at it).
fn implicit(s: &Scratch, c: &mut Command, on: bool) {
    c.env("XDG_DATA_HOME", s.path("data"))
        .env("SYNCFILE_WSI_STATS", s.path("stats.json"));
    if on {
        c.env("ENABLE_SYNCFILE_WSI", "1");
    }
}

fn active(s: &Scratch) -> Result<Value, Failed> {
    let stats = s
        .stats()?
        .ok_or("the layer was not active (no statistics)")?;
    check(stat(&stats, &["instances", "created"]) > 0, || {
        format!("the layer saw no instance: {stats}")
    })?;
    Ok(stats)
}

/// vulkaninfo's text minus what the layer declares (the extensions its
/// manifests add, those it refuses with the feature and property blocks
/// vulkaninfo prints for them, and the counts) and what changes between
/// runs anyway.
fn without_manifest_additions(text: &str) -> String {
    let added: Vec<&str> = INSTANCE_EXTENSIONS
        .iter()
        .chain(DEVICE_EXTENSIONS)
        .map(|e| e.name)
        .chain(REFUSED_DEVICE_EXTENSIONS.iter().map(|(n, _)| *n))
        .collect();
    let counts_differ = !added.is_empty();
    let mut in_manifest_block = false;
    text.lines()
        .filter(|l| {
            if in_manifest_block {
                in_manifest_block = !l.trim().is_empty();
                return false;
            }
            in_manifest_block = manifest_block_header(l);
            !in_manifest_block
        })
        .filter(|l| !added.iter().any(|a| l.contains(a)))
        // VK_EXT_memory_budget's figures change from one run to the next.
        .filter(|l| {
            !["usage ", "budget "]
                .iter()
                .any(|w| l.trim_start().starts_with(w))
        })
        .filter(|l| !(counts_differ && l.contains("Extensions: count")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `line` starts vulkaninfo's block for the features or properties
/// structure of an extension the layer refuses or provides (such as
/// `VkPhysicalDevicePresentIdFeaturesKHR:` for VK_KHR_present_id), which
/// it prints only for the extensions a device lists.
fn manifest_block_header(line: &str) -> bool {
    let Some(name) = line
        .trim()
        .strip_prefix("VkPhysicalDevice")
        .and_then(|n| n.strip_suffix(':'))
    else {
        return false;
    };
    let name = name.to_ascii_lowercase();
    let names = REFUSED_DEVICE_EXTENSIONS
        .iter()
        .map(|(n, _)| *n)
        .chain(DEVICE_EXTENSIONS.iter().map(|e| e.name));
    names.into_iter().any(|ext| {
        let stem: String = ext
            .splitn(3, '_')
            .nth(2)
            .unwrap_or_default()
            .replace('_', "")
            .to_ascii_lowercase();
        name.strip_prefix(&stem)
            .is_some_and(|rest| rest.starts_with("features") || rest.starts_with("properties"))
    })
}

pub fn vulkaninfo_unchanged(m: &Machine) -> Outcome {
    if let Some(skip) = needs_vulkaninfo(m) {
        return skip;
    }
    let run = |on: bool| -> Result<String, Failed> {
        let s = Scratch::new("vulkaninfo")?.with_manifests()?;
        let mut c = s.command("vulkaninfo");
        implicit(&s, &mut c, on);
        let out = run_ok(&mut c)?;
        if on {
            active(&s)?;
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (without, with) = (run(false)?, run(true)?);
    let (without, with) = (
        without_manifest_additions(&without),
        without_manifest_additions(&with),
    );
    if without != with {
        let diff: Vec<String> = without
            .lines()
            .zip(with.lines())
            .filter(|(a, b)| a != b)
            .take(10)
            .map(|(a, b)| format!("- {a}\n+ {b}"))
            .collect();
        return Err(format!("vulkaninfo differs with the layer:\n{}", diff.join("\n")).into());
    }
    Ok(Completion::Completed)
}

/// The `describe` scenario's JSON, with the layer on or off, and the scratch
/// (for its statistics) and the layer's log lines.
fn describe(env: &[(&str, &str)], on: bool) -> Result<(Value, Scratch, Vec<String>), Failed> {
    let s = Scratch::new("describe")?.with_manifests()?;
    let mut c = s.child("describe")?;
    implicit(&s, &mut c, on);
    c.envs(env.iter().copied());
    let out = run_ok(&mut c)?;
    Ok((child_json(&out)?, s, layer_lines(&out.stderr)))
}

pub fn ash_program_unchanged(m: &Machine) -> Outcome {
    if let Some(skip) = needs_vulkan(m) {
        return skip;
    }
    let (mut without, _, _) = describe(&[], false)?;
    let (mut with, s, _) = describe(&[], true)?;
    active(&s)?;
    // The layer hides the device extensions it refuses from the devices it
    // serves (lavapipe's VK_EXT_swapchain_maintenance1, for one).
    let refused = |n: &str| REFUSED_DEVICE_EXTENSIONS.iter().any(|(r, _)| *r == n);
    for d in with["devices"].as_array().into_iter().flatten() {
        let shown: Vec<&str> = d["extensions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|n| refused(n))
            .collect();
        check(shown.is_empty(), || {
            format!("the layer shows extensions it refuses: {shown:?}")
        })?;
    }
    let strip = |list: &mut Value, gone: &dyn Fn(&str) -> bool| {
        if let Some(a) = list.as_array_mut() {
            a.retain(|e| !e.as_str().is_some_and(gone));
        }
    };
    let in_manifest = |list: &'static [VkLayer_syncfile_wsi::manifest::Extension]| {
        move |n: &str| list.iter().any(|x| x.name == n)
    };
    // The manifest's extensions may be the driver's too (VK_KHR_swapchain
    // is), so they are left out on both sides, as are the refused ones.
    for out in [&mut without, &mut with] {
        strip(
            &mut out["instance_extensions"],
            &in_manifest(INSTANCE_EXTENSIONS),
        );
        if let Some(devices) = out["devices"].as_array_mut() {
            for d in devices {
                let manifest = in_manifest(DEVICE_EXTENSIONS);
                strip(&mut d["extensions"], &|n| manifest(n) || refused(n));
            }
        }
    }
    check(without == with, || {
        format!("the program sees different devices:\nwithout: {without}\nwith: {with}")
    })?;
    Ok(Completion::Completed)
}

fn driver_has_all(device: &Value) -> bool {
    let version = device["api_version"].as_u64().unwrap_or(0) as u32;
    let listed = |n: &str| {
        device["extensions"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e == n))
    };
    version.min(ash::vk::API_VERSION_1_1) >= ash::vk::API_VERSION_1_1
        && NEEDED
            .iter()
            .all(|&(n, core)| listed(n) || core.is_some_and(|c| version >= c))
}

pub fn extensions_where_the_driver_has_them(m: &Machine) -> Outcome {
    if let Some(skip) = needs_vulkan(m) {
        return skip;
    }
    let (out, s, log) = describe(&[("SYNCFILE_WSI_LOG", "info")], true)?;
    let stats = active(&s)?;
    let devices = out["devices"]
        .as_array()
        .ok_or("no devices in the output")?;
    let ready = devices.iter().filter(|d| driver_has_all(d)).count() as u64;
    let lacking = devices.len() as u64 - ready;
    check(stat(&stats, &["devices", "owned"]) == ready, || {
        format!("{ready} devices have every extension, but the statistics say: {stats}")
    })?;
    check(
        stat(&stats, &["devices", "passed_through"]) == lacking,
        || format!("statistics: {stats}"),
    )?;
    let enabled = log
        .iter()
        .filter(|l| l.contains("owning its swapchains; enabled ["))
        .count() as u64;
    check(enabled == ready, || {
        format!("expected {ready} 'enabled' lines: {log:#?}")
    })?;
    let reported = log
        .iter()
        .filter(|l| l.contains("WARN") && l.contains("the driver lacks"))
        .count() as u64;
    check(reported == lacking, || {
        format!("expected {lacking} 'lacks' warnings: {log:#?}")
    })?;
    for d in devices {
        check(d["semaphore_fd_withheld"] == true, || {
            "the application got vkGetSemaphoreFdKHR without enabling its extension".into()
        })?;
        check(d["queues_retrieved"].as_u64() > Some(0), || {
            format!("no queue retrieved: {d}")
        })?;
    }
    check(stat(&stats, &["queues"]) > 0, || {
        format!("no queue counted: {stats}")
    })?;
    if syncfile::sources::in_vm() && ready == 0 {
        return Err("the guest's lavapipe should have every extension the layer needs (is /dev/udmabuf there?)".into());
    }
    Ok(Completion::Completed)
}

pub fn platforms_none_passes_through(m: &Machine) -> Outcome {
    if let Some(skip) = needs_vulkan(m) {
        return skip;
    }
    let (out, s, log) = describe(
        &[
            ("SYNCFILE_WSI_PLATFORMS", "none"),
            ("SYNCFILE_WSI_LOG", "info"),
        ],
        true,
    )?;
    let stats = active(&s)?;
    let n = out["devices"].as_array().map_or(0, Vec::len) as u64;
    check(
        stat(&stats, &["devices", "owned"]) == 0
            && stat(&stats, &["devices", "passed_through"]) == n,
        || format!("SYNCFILE_WSI_PLATFORMS=none, yet: {stats}"),
    )?;
    check(!log.iter().any(|l| l.contains("WARN")), || {
        format!("unexpected warnings: {log:#?}")
    })?;
    Ok(Completion::Completed)
}

/// Settings of the process's own: the executable's `<exe>.conf` is read
/// (its log level shows), and `SYNCFILE_WSI_DISABLE_FOR` in the global file
/// naming this executable passes every device through, whatever the
/// environment's `SYNCFILE_WSI_PLATFORMS` says; the log names the line.
pub fn disable_for_passes_this_executable_through(m: &Machine) -> Outcome {
    if let Some(skip) = needs_vulkan(m) {
        return skip;
    }
    let s = Scratch::new("disable-for")?.with_manifests()?;
    let exe = std::env::current_exe()?;
    let exe = exe
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("the test binary's name is not UTF-8")?;
    let dir = s.path("config").join("syncfile-wsi");
    std::fs::create_dir_all(&dir)?;
    let global = dir.join("syncfile-wsi.conf");
    std::fs::write(&global, format!("SYNCFILE_WSI_DISABLE_FOR=steam,{exe}\n"))?;
    std::fs::write(dir.join(format!("{exe}.conf")), "SYNCFILE_WSI_LOG=info\n")?;
    let mut c = s.child("describe")?;
    implicit(&s, &mut c, true);
    c.env("SYNCFILE_WSI_PLATFORMS", "headless");
    let out = run_ok(&mut c)?;
    let devices = child_json(&out)?["devices"].as_array().map_or(0, Vec::len) as u64;
    let log = layer_lines(&out.stderr);
    let stats = active(&s)?;
    check(
        stat(&stats, &["devices", "owned"]) == 0
            && stat(&stats, &["devices", "passed_through"]) == devices,
        || format!("{exe} is in SYNCFILE_WSI_DISABLE_FOR, yet: {stats}"),
    )?;
    let said = format!("platforms none ({}:1)", global.display());
    check(log.iter().any(|l| l.contains(&said)), || {
        format!("no INFO line with '{said}' (is {exe}.conf read?): {log:#?}")
    })?;
    check(!log.iter().any(|l| l.contains("WARN")), || {
        format!("unexpected warnings: {log:#?}")
    })?;
    Ok(Completion::Completed)
}

/// The `lifecycle` scenario with both layers enabled explicitly, this layer
/// below (nearer the driver) or above the validation layer.
fn with_validation(m: &Machine, below: bool) -> Outcome {
    if let Some(skip) = needs_vulkan(m) {
        return skip;
    }
    if !m.layers.contains_key(VALIDATION) {
        return missing(format!("{VALIDATION} is not installed"));
    }
    let (out, (s, mut c)) = in_order(below, |env_layers, app_layers| {
        let s = Scratch::new("validation")?.with_manifests()?;
        let mut c = s.child("lifecycle")?;
        stack(&mut c, s.path("explicit"), env_layers, app_layers)
            .env("SYNCFILE_WSI_STATS", s.path("stats.json"));
        Ok((run_ok(&mut c)?, (s, c)))
    })?;
    let result = child_json(&out)?;
    let stats = active(&s)?;
    let canary = child_json(&run_ok(c.env(CANARY, "1"))?)?;
    check_canary(&canary["errors"], &canary)?;
    check(result["errors"] == 0, || {
        format!("validation reported errors: {:#}", result["messages"])
    })?;
    check(result["devices"].as_u64() >= Some(4), || {
        format!("too few devices: {result}")
    })?;
    check(stat(&stats, &["panics_caught"]) == 0, || {
        format!("statistics: {stats}")
    })?;
    Ok(Completion::Completed)
}

pub fn below_validation(m: &Machine) -> Outcome {
    with_validation(m, true)
}

pub fn above_validation(m: &Machine) -> Outcome {
    with_validation(m, false)
}

pub fn bad_settings_warn(m: &Machine) -> Outcome {
    if let Some(skip) = needs_vulkan(m) {
        return skip;
    }
    let s = Scratch::new("settings")?.with_manifests()?;
    std::fs::create_dir_all(s.path("config/syncfile-wsi"))?;
    std::fs::write(
        s.path("config/syncfile-wsi/syncfile-wsi.conf"),
        "SYNCFILE_WSI_COLOUR=red\nthis is not a setting\nSYNCFILE_WSI_SYNC=cpu\n",
    )?;
    let mut c = s.child("app")?;
    implicit(&s, &mut c, true);
    c.env("SYNCFILE_WSI_SYNC", "sometimes")
        .env("SYNCFILE_WSI_PLATFORMS", "mars")
        .env("SYNCFILE_WSI_TYPO", "1");
    let out = run_ok(&mut c)?;
    let result = child_json(&out)?;
    check(
        result["instance"] == "SUCCESS" && result["device"] == "SUCCESS",
        || format!("{result}"),
    )?;
    let log = layer_lines(&out.stderr);
    for (what, words) in [
        (
            "the bad sync mode",
            &["SYNCFILE_WSI_SYNC", "'sometimes'", "default auto"][..],
        ),
        (
            "the bad platform",
            &[
                "SYNCFILE_WSI_PLATFORMS",
                "'mars'",
                "headless,wayland,x11,display",
            ],
        ),
        ("the unknown variable", &["SYNCFILE_WSI_TYPO"]),
        (
            "the unknown file key",
            &["syncfile-wsi.conf:1", "SYNCFILE_WSI_COLOUR"],
        ),
        (
            "the malformed line",
            &["syncfile-wsi.conf:2", "not KEY=VALUE"],
        ),
    ] {
        let n = log
            .iter()
            .filter(|l| l.contains("WARN") && words.iter().all(|w| l.contains(w)))
            .count();
        check(n == 1, || {
            format!("expected one warning about {what}, got {n}: {log:#?}")
        })?;
    }
    let stats = active(&s)?;
    check(stats["settings"]["sync"] == "auto", || {
        format!("the environment should win over the file: {stats}")
    })?;
    Ok(Completion::Completed)
}

pub fn injected_panics(m: &Machine) -> Outcome {
    if let Some(skip) = needs_vulkan(m) {
        return skip;
    }
    if !cfg!(debug_assertions) {
        return Ok(Completion::ignored_with(
            "fault injection is compiled into debug builds only",
        ));
    }
    // Each site, and what the application must see: an error code before
    // anything was created, the command's normal effect after (the layer
    // then keeps the object working).
    let sites: [(&str, &[(&str, Value)]); 7] = [
        (
            "create_instance",
            &[("instance", "ERROR_INITIALIZATION_FAILED".into())],
        ),
        (
            "instance_created",
            &[("instance", "SUCCESS".into()), ("device", "SUCCESS".into())],
        ),
        (
            "create_device",
            &[("device", "SUCCESS".into()), ("queue", true.into())],
        ),
        (
            "device_created",
            &[("device", "SUCCESS".into()), ("queue", true.into())],
        ),
        (
            "get_device_queue",
            &[("queue", true.into()), ("queue_wait_idle", "None".into())],
        ),
        ("destroy_device", &[("device", "SUCCESS".into())]),
        ("destroy_instance", &[("instance", "SUCCESS".into())]),
    ];
    for (site, expected) in sites {
        let s = Scratch::new("fault")?.with_manifests()?;
        let mut c = s.child("app")?;
        implicit(&s, &mut c, true);
        c.env("SYNCFILE_WSI_FAULT", site);
        let out = run_ok(&mut c)
            .map_err(|e| format!("fault at {site}: the process did not survive: {e:?}"))?;
        let result = child_json(&out)?;
        for (key, value) in expected {
            check(&result[key] == value, || {
                format!("fault at {site}: expected {key} = {value}, got {result}")
            })?;
        }
        check(result["second_instance"] == true, || {
            format!("fault at {site}: Vulkan broken afterwards: {result}")
        })?;
        let log = layer_lines(&out.stderr);
        let lines: Vec<_> = log
            .iter()
            .filter(|l| l.contains("internal error in"))
            .collect();
        check(
            lines.len() == 1 && lines[0].contains(&format!("fault injected at {site}")),
            || format!("fault at {site}: expected one log line about it: {log:#?}"),
        )?;
        check(
            !String::from_utf8_lossy(&out.stderr).contains("panicked at"),
            || format!("fault at {site}: the default panic message leaked"),
        )?;
    }
    Ok(Completion::Completed)
}
