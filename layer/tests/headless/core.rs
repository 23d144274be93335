//! The layer's core guarantees, judged from outside it: no handle of the
//! layer's reaches the driver (the validation layer below it sees every
//! call the driver gets, valgrind sees every access), one ownership
//! decision per physical device, and lifetimes the application gets wrong.

use std::process::Output;

use libtest_mimic::{Completion, Failed};
use serde_json::Value;
use VkLayer_syncfile_wsi::manifest::ENABLE_ENV;

use crate::child::PARAM;
use crate::common::validation::{check_canary, in_order, stack};
use crate::common::{check, child_json, run_ok, stat, Outcome};
use crate::objects::SWAPCHAIN_NAME;
use crate::support::{baseline, Machine, Scratch};

/// Tests of what only the layer does.
fn layer_only(m: &Machine, needs: &[&Result<(), String>]) -> Option<Outcome> {
    if baseline() {
        return Some(Ok(Completion::ignored_with(
            "checks the layer itself; not run against Mesa's WSI",
        )));
    }
    m.lacks(needs)
}

/// The child `scenario` (with `param`) through the layer, its JSON, its
/// stderr and the layer's statistics.
fn run(
    scenario: &str,
    param: Option<&str>,
    env: &[(&str, &str)],
) -> Result<(Value, String, Value), Failed> {
    let s = Scratch::new(scenario)?;
    let mut c = s.child(scenario)?;
    if let Some(p) = param {
        c.env(PARAM, p);
    }
    c.env("SYNCFILE_WSI_LOG", "info").envs(env.iter().copied());
    let out = run_ok(&mut c)?;
    let stats = s.stats_if_written()?.unwrap_or(Value::Null);
    Ok((child_json(&out)?, stderr(&out), stats))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A program that names its swapchain, keeps private data on it and reads
/// one of its images back through an aliasing image, with the Khronos
/// validation layer below the layer: it knows every handle the driver
/// gets, and reports none of the layer's (a swapchain handle reaching the
/// driver is `VUID-VkDebugUtilsObjectNameInfoEXT-objectType-02590`).
pub fn objects_with_validation_below(m: &Machine) -> Outcome {
    if let Some(skip) = layer_only(m, &[&m.vulkan, &m.validation]) {
        return skip;
    }
    let run = |env_layers: &str, app_layers: &str| -> Result<(Output, Scratch), Failed> {
        let s = Scratch::new("objects")?;
        let mut c = s.child("objects")?;
        c.env_remove(ENABLE_ENV)
            .env_remove("XDG_DATA_HOME")
            .env("SYNCFILE_WSI_LOG", "info");
        let out = run_ok(stack(&mut c, s.path("explicit"), env_layers, app_layers))?;
        Ok((out, s))
    };
    let (out, s) = in_order(true, run)?;
    let r = child_json(&out)?;
    check_canary(&r["canary_errors"], &r)?;
    check(r["errors"] == 0, || {
        format!(
            "validation below the layer reported errors: {:#}",
            r["messages"]
        )
    })?;
    check(r["named"] == "Ok(())", || {
        format!("naming the swapchain: {r}")
    })?;
    check(r["private_swapchain"] == 0x5eed_f00du64, || {
        format!("the swapchain's private data did not come back: {r}")
    })?;
    check(r["private_image"] == 7, || {
        format!("an image's private data (the driver's) did not come back: {r}")
    })?;
    check(r["alias_matches"] == true, || {
        format!("the aliasing image does not show the swapchain image's pixels: {r}")
    })?;
    let name = SWAPCHAIN_NAME.to_string_lossy();
    let log = stderr(&out);
    check(log.contains(&format!("swapchain '{name}'")), || {
        format!("the layer's log does not name the swapchain '{name}': {log}")
    })?;
    let stats = s.stats()?;
    check(stat(&stats, &["aliases_bound"]) == 1, || {
        format!("the alias was not bound by the layer: {stats}")
    })?;
    check(
        stat(&stats, &["ownership", "released"]) >= 10
            && stat(&stats, &["ownership", "taken_back"]) > 0,
        || format!("ownership transfers missing: {stats}"),
    )?;
    println!(
        "objects: named, private data kept, alias read back {} {}, {} ownership releases and {} take-backs, validation below quiet ({} driver false positives uncounted)",
        r["alias_first_pixel"],
        r["expected_pixel"],
        stat(&stats, &["ownership", "released"]),
        stat(&stats, &["ownership", "taken_back"]),
        r["excused"]
    );
    Ok(Completion::Completed)
}

/// The same program under valgrind: no error in the layer's code, nor one
/// whose memory the layer allocated.
pub fn objects_under_valgrind(m: &Machine) -> Outcome {
    if let Some(skip) = layer_only(m, &[&m.vulkan, &m.valgrind]) {
        return skip;
    }
    // valgrind takes a whole CPU for minutes: the display and X11 tests,
    // whose applications must get frames out within their run, wait.
    let _cpu = crate::display_tests::exclusive();
    let s = Scratch::new("valgrind")?;
    let log = s.path("valgrind.log");
    let mut c = s.command("valgrind");
    c.arg("--error-limit=no")
        .arg("--leak-check=no")
        .arg(format!("--log-file={}", log.display()))
        .arg(std::env::current_exe()?)
        .env("SYNCFILE_TEST_CHILD", "objects");
    let out = run_ok(&mut c)?;
    let r = child_json(&out)?;
    check(
        r["alias_matches"] == true && r["private_swapchain"] == 0x5eed_f00du64,
        || format!("the program misbehaved under valgrind: {r}"),
    )?;
    let text = std::fs::read_to_string(&log)?;
    let (all, ours) = valgrind_errors(&text);
    check(ours.is_empty(), || {
        format!(
            "valgrind reports {} error(s) in or through the layer:\n{}",
            ours.len(),
            ours.join("\n\n")
        )
    })?;
    println!("valgrind: {all} error report(s) in all, none in or through the layer");
    Ok(Completion::Completed)
}

/// Valgrind's error reports in `log` (how many), and those that are the
/// layer's: the faulting code is the layer's, or the memory involved was
/// allocated or freed by it. A driver's own error in the driver's memory
/// is not, though the driver was called through the layer (lavapipe 25.0's
/// `realloc()` of size 0 in vkCreateDevice is one, with or without the
/// layer).
fn valgrind_errors(log: &str) -> (usize, Vec<String>) {
    let mut reports: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    for line in log.lines() {
        let Some((_, body)) = line.split_once("== ") else {
            continue;
        };
        if body.trim().is_empty() {
            if !current.is_empty() {
                reports.push(std::mem::take(&mut current));
            }
        } else {
            current.push(body.to_owned());
        }
    }
    if !current.is_empty() {
        reports.push(current);
    }
    let errors: Vec<Vec<String>> = reports
        .into_iter()
        .filter(|r| r.iter().any(|l| l.trim_start().starts_with("at 0x")))
        .collect();
    let ours: Vec<String> = errors
        .iter()
        .filter(|r| is_the_layers(r))
        .map(|r| r.join("\n"))
        .collect();
    (errors.len(), ours)
}

fn in_layer(frame: &str) -> bool {
    frame.contains("VkLayer_syncfile_wsi")
}

/// Whether an error report blames the layer (see [`valgrind_errors`]).
fn is_the_layers(report: &[String]) -> bool {
    let frames = |from: usize| {
        report[from..]
            .iter()
            .take_while(|l| {
                let l = l.trim_start();
                l.starts_with("at 0x") || l.starts_with("by 0x")
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    let Some(first) = report
        .iter()
        .position(|l| l.trim_start().starts_with("at 0x"))
    else {
        return false;
    };
    if in_layer(&frames(first)[0]) {
        return true;
    }
    // The first frame past the allocator's own says who allocated (or
    // freed) the block an address is in.
    report.iter().enumerate().any(|(i, l)| {
        (l.contains("alloc'd") || l.contains("free'd"))
            && frames(i + 1)
                .iter()
                .find(|f| !is_allocator(f))
                .is_some_and(|f| in_layer(f))
    })
}

fn is_allocator(frame: &str) -> bool {
    [
        "vg_replace_malloc",
        "alloc::",
        "__rust_",
        "__rdl_",
        "std::alloc",
        "<alloc::",
    ]
    .iter()
    .any(|a| frame.contains(a))
}

/// An application that enables an extension the layer refuses (and hides)
/// never gets a swapchain made from the layer's answers. Loaders that
/// check device extensions against the list the layers report (1.4.309
/// does) refuse the device, as for any extension the device lacks; where a
/// loader lets it through, the layer passes the device through and the
/// driver answers every surface query of that physical device from then
/// on: Mesa's own WSI's answers, which differ from the layer's (so the
/// check can fail).
pub fn refused_extension_gets_the_drivers_answers(m: &Machine) -> Outcome {
    if let Some(skip) = layer_only(m, &[&m.vulkan]) {
        return skip;
    }
    let off = [("DISABLE_SYNCFILE_WSI", "1")];
    let (listed, _, _) = run("refusable", None, &off)?;
    let Some(name) = listed["listed"][0].as_str().map(str::to_owned) else {
        // Lavapipe (Mesa 25.0) lists none since the layer implements
        // swapchain maintenance itself.
        return Ok(Completion::ignored_with(
            "the driver lists none of the extensions the layer refuses, so no application can ask for one",
        ));
    };
    let loader_log = [("VK_LOADER_DEBUG", "error")];
    let (on, log, stats) = run("refused", Some(&name), &loader_log)?;
    let (off, _, _) = run("refused", Some(&name), &off)?;
    check(off["device"] == "SUCCESS", || {
        format!("the driver does not have the extension, so this test proves nothing: {off}")
    })?;
    check(on["before"] != off["before"], || {
        format!("the layer's answers equal the driver's, so this test proves nothing: {on}")
    })?;
    if on["device"] == "ERROR_EXTENSION_NOT_PRESENT" {
        check(log.contains(&format!("{name} not supported")), || {
            format!("the loader did not say it refused the extension: {log}")
        })?;
        check(stat(&stats, &["devices", "created"]) == 0, || {
            format!("{stats}")
        })?;
        println!(
            "refused: the loader refuses the hidden {name}, as for any extension the device lacks"
        );
        return Ok(Completion::Completed);
    }
    check(on["after"] == off["after"], || {
        format!(
            "after the refused extension, the answers are not the driver's:\nlayer: {}\ndriver: {}",
            on["after"], off["after"]
        )
    })?;
    check(on["swapchain"] == "SUCCESS", || format!("{on}"))?;
    check(
        stat(&stats, &["devices", "passed_through"]) == 1
            && stat(&stats, &["swapchains", "passed_through"]) == 1
            && stat(&stats, &["swapchains", "created"]) == 0,
        || format!("the device and its swapchain were not the driver's: {stats}"),
    )?;
    check(
        log.contains(&format!("{name}, which the layer refuses")),
        || format!("no log line says why: {log}"),
    )?;
    Ok(Completion::Completed)
}

pub fn device_destroyed_with_a_live_swapchain(m: &Machine) -> Outcome {
    if let Some(skip) = layer_only(m, &[&m.vulkan]) {
        return skip;
    }
    let (r, log, stats) = run("device_with_live_swapchain", None, &[])?;
    check(r["layer_threads_with_swapchain"].as_u64() > Some(0), || {
        format!("the swapchain started no thread of the layer's to count: {r}")
    })?;
    check(r["layer_threads_after"] == 0, || {
        format!("a thread of the layer's is left running: {r}")
    })?;
    check(stat(&stats, &["swapchains", "leaked"]) == 1, || {
        format!("{stats}")
    })?;
    check(
        log.matches("left 1 swapchain(s) alive").count() == 1,
        || format!("one log line must name the leak: {log}"),
    )?;
    Ok(Completion::Completed)
}

pub fn instance_destroyed_with_a_live_surface(m: &Machine) -> Outcome {
    if let Some(skip) = layer_only(m, &[&m.vulkan]) {
        return skip;
    }
    let (_, log, stats) = run("instance_with_live_surface", None, &[])?;
    check(stat(&stats, &["surfaces", "leaked"]) == 1, || {
        format!("{stats}")
    })?;
    check(log.matches("left 1 surface(s) alive").count() == 1, || {
        format!("one log line must name the leak: {log}")
    })?;
    Ok(Completion::Completed)
}

pub fn fork_without_exec(m: &Machine) -> Outcome {
    if let Some(skip) = layer_only(m, &[&m.vulkan]) {
        return skip;
    }
    let (r, _, stats) = run("fork", None, &[])?;
    check(
        r["child"]["exited"] == true && r["child"]["code"] == 0,
        || format!("the forked child did not exit cleanly: {r}"),
    )?;
    check(r["stats_unchanged"] == true, || {
        format!("the forked child wrote the parent's statistics file: {r}")
    })?;
    check(stat(&stats, &["frames", "presented"]) >= 10, || {
        format!("the parent did not go on presenting: {stats}")
    })?;
    Ok(Completion::Completed)
}

/// `vkDestroySwapchainKHR` while the last present's render does not finish
/// returns within the layer's bound (while the pending vgem fence the
/// render waits for is still unsignalled: the kernel's word, not a timer),
/// and says so.
pub fn destroy_while_a_render_never_finishes(m: &Machine) -> Outcome {
    if let Some(skip) = layer_only(m, &[&m.vulkan, &m.vgem]) {
        return skip;
    }
    for (path, env) in [
        ("direct", vec![]),
        ("cpu", vec![("SYNCFILE_WSI_SYNC", "cpu")]),
    ] {
        let (r, log, stats) = run("unfinished", Some(path), &env)?;
        check(r["pending_after_destroy"] == true, || {
            format!("{path}: vkDestroySwapchainKHR waited for the render: {r}")
        })?;
        check(log.contains("still runs"), || {
            format!("{path}: no log line says the render still runs: {log}")
        })?;
        check(
            stat(&stats, &["swapchains", "destroyed_unfinished"]) == 1,
            || format!("{path}: {stats}"),
        )?;
        println!(
            "destroy with an unfinished render ({path}): returned after {:.0} ms with the fence pending",
            r["destroy_ms"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(Completion::Completed)
}
