//! Soak on Wayland: many swapchains created and destroyed and many frames
//! presented on one surface of a compositor that behaves (the test
//! compositor, [`crate::compositor`], which answers at once where weston
//! in the emulated guest would take seconds per frame), in every present
//! mode, on the sync_file path and on the fallback
//! (`SYNCFILE_WSI_SYNC=cpu`): the process's descriptors come back to their
//! number, its resident memory levels off, every swapchain the layer made
//! it destroyed, and every frame reached the compositor.
//!
//! Every run has the short form; `scripts/test --soak` (which sets
//! [`SOAK_VAR`] to `long`) runs the long one: 10 002 swapchains and
//! 100 020 presents in all.

use std::time::{Duration, Instant};

use ash::vk;
use libtest_mimic::Completion;
use serde_json::{json, Value};
use syncfile::sources::Source;

use crate::app::App;
use crate::apps::{self, number, Layer};
use crate::common::child::Result as ChildResult;
use crate::compositor::{Compositor, Fault};
use crate::misbehaving::{prerequisites, MODES};
use crate::vulkan::{Chain, Vk};
use crate::{check, fds, missing, this_binary, Outcome, CHILD_VAR, MODE_VAR};

/// `long` for the long form.
pub const SOAK_VAR: &str = "SYNCFILE_TEST_SOAK";
/// The child's swapchains and presents on each: `CYCLES:PRESENTS`.
const CYCLES_VAR: &str = "SYNCFILE_TEST_CYCLES";
/// Per present mode and sync path: (swapchains, presents on each).
const SHORT: (u32, u32) = (10, 10);
/// 6 combinations × 1667 swapchains × 10 presents.
const LONG: (u32, u32) = (1667, 10);
/// Resident memory may grow by this much over a run (the allocator's
/// arenas and the driver's caches, made once).
const RSS_BOUND_KIB: u64 = 64 * 1024;
/// Swapchains made before the counts start: caches warm up.
const WARM_UP: u32 = 3;

pub fn every_mode_and_path() -> Outcome {
    if let Some(why) = prerequisites(&[Source::Udmabuf]) {
        return missing(why);
    }
    let long = std::env::var(SOAK_VAR).is_ok_and(|v| v == "long");
    let (cycles, presents) = if long { LONG } else { SHORT };
    let limit = Duration::from_secs(if long { 7200 } else { 600 });
    let exe = this_binary()?;
    let mut report = Vec::new();
    for mode in MODES {
        for sync in ["auto", "cpu"] {
            let name = format!("{mode}/{sync}");
            let compositor = Compositor::start(Fault::Nothing)?;
            let layer = Layer::new(&format!("soak_{mode}_{sync}"))?;
            let counts = format!("{cycles}:{presents}");
            let env = [
                (CHILD_VAR, "soak"),
                (MODE_VAR, mode),
                (CYCLES_VAR, counts.as_str()),
                ("SYNCFILE_WSI_SYNC", sync),
            ];
            let started = Instant::now();
            let child = layer
                .command(&compositor.socket, true, &exe, &[], &env)
                .spawn()?;
            let out = apps::finish(child, limit)?;
            let took = started.elapsed();
            let committed = compositor.seen().committed;
            compositor.stop()?;
            apps::succeeded(&out).map_err(|e| format!("{name}: {e:?}"))?;
            let text = String::from_utf8_lossy(&out.stdout);
            let r: Value = serde_json::from_str(text.lines().last().ok_or("no report")?)?;
            let stats = layer.stats()?;
            let n = |k: &str| r[k].as_u64().unwrap_or(u64::MAX);
            check(n("fds_after") == n("fds_before"), || {
                format!("{name}: descriptors leaked: {r}")
            })?;
            check(
                n("rss_kib_after") <= n("rss_kib_before") + RSS_BOUND_KIB,
                || format!("{name}: resident memory grew by more than {RSS_BOUND_KIB} KiB: {r}"),
            )?;
            let made = number(&stats, &["swapchains", "created"]);
            let gone = number(&stats, &["swapchains", "destroyed"]);
            let all = u64::from((cycles + WARM_UP) * presents);
            check(made == gone && made == u64::from(cycles + WARM_UP), || {
                format!("{name}: {made} swapchains made, {gone} destroyed: {stats}")
            })?;
            check(committed == all, || {
                format!("{name}: the compositor got {committed} commits of {all}: {stats}")
            })?;
            if sync == "cpu" {
                check(
                    number(&stats, &["fallbacks", "forced_cpu"]) >= u64::from(cycles),
                    || format!("{name}: not on the fallback: {stats}"),
                )?;
            }
            report.push(format!(
                "{name}: fds {}->{}, VmRSS {}->{} KiB (by quarters {}), {:.0} s",
                r["fds_before"],
                r["fds_after"],
                r["rss_kib_before"],
                r["rss_kib_after"],
                r["rss_kib_quarters"],
                took.as_secs_f64()
            ));
        }
    }
    println!(
        "wayland soak ({}, {cycles} swapchains x {presents} presents per mode and path): {}",
        if long { "long" } else { "short" },
        report.join("; ")
    );
    Ok(Completion::Completed)
}

/// The child: [`CYCLES_VAR`] swapchains, one after the other, each
/// presenting its frames; counts after a warm-up of [`WARM_UP`].
pub fn child() -> ChildResult<Value> {
    let app = App::for_child()?;
    let mode = crate::child_mode();
    let counts = std::env::var(CYCLES_VAR)?;
    let (cycles, presents) = counts.split_once(':').ok_or("CYCLES:PRESENTS")?;
    let (cycles, presents): (u32, u32) = (cycles.parse()?, presents.parse()?);
    // SAFETY: the application's display and surface outlive `vk`, which is
    // dropped first.
    let vk = unsafe { Vk::new(app.display_ptr(), app.surface_ptr())? };
    let lock = std::sync::Mutex::new(());
    let run = |cycles: u32| -> ChildResult<()> {
        let mut present_us = Vec::new();
        for _ in 0..cycles {
            let mut chain = Chain::new(&vk, mode, 32)?;
            for _ in 0..presents {
                match chain.frame([0.2, 0.4, 0.6, 1.0], &lock, &mut present_us)? {
                    vk::Result::SUCCESS => {}
                    r => return Err(format!("a frame: {r:?}").into()),
                }
            }
            present_us.clear();
        }
        Ok(())
    };
    run(WARM_UP)?;
    let (fds_before, rss_before) = (fds::count()?, fds::vm_rss_kib()?);
    // The resident memory after each quarter: levelling off, or growing.
    let mut quarters = Vec::new();
    for _ in 0..4 {
        run(cycles / 4)?;
        quarters.push(fds::vm_rss_kib()?);
    }
    run(cycles % 4)?;
    let (fds_after, rss_after) = (fds::count()?, fds::vm_rss_kib()?);
    drop(vk);
    Ok(json!({
        "fds_before": fds_before,
        "fds_after": fds_after,
        "rss_kib_before": rss_before,
        "rss_kib_after": rss_after,
        "rss_kib_quarters": quarters,
    }))
}
