//! Soak: many swapchains created and destroyed and many frames presented,
//! in every present mode, on the sync_file path and on the fallback
//! (`SYNCFILE_WSI_SYNC=cpu`, a present thread per swapchain): the
//! process's descriptors come back to their number, its resident memory
//! levels off, and every swapchain the layer made it destroyed.
//!
//! Every run has the short form; `scripts/test --soak` (which sets
//! [`SOAK_VAR`] to `long`) runs the long one: 10 000 swapchains and
//! 100 000 presents in all.

use std::time::Instant;

use ash::vk;
use libtest_mimic::Completion;
use serde_json::{json, Value};

use crate::child::PARAM;
use crate::client::{mode_name, parse_mode, Chain, Vk, ALL_MODES};
use crate::common::child::Result as ChildResult;
use crate::common::{check, child_json, stat, Outcome};
use crate::fds;
use crate::stats_keys;
use crate::support::{baseline, run_ok_within, Machine, Scratch};

/// `long` for the long form.
pub const SOAK_VAR: &str = "SYNCFILE_TEST_SOAK";

/// Per present mode and sync path: (swapchains, presents on each).
const SHORT: (u32, u32) = (20, 10);
/// 8 combinations × 1250 swapchains × 10 presents: 10 000 and 100 000.
const LONG: (u32, u32) = (1250, 10);
/// Resident memory may grow by this much over a run (the allocator's
/// arenas and the driver's caches, made once: see `tests::no_leaks`).
const RSS_BOUND_KIB: u64 = 64 * 1024;

pub fn every_mode_and_path(m: &Machine) -> Outcome {
    if let Some(skip) = m.lacks(&[&m.vulkan]) {
        return skip;
    }
    if baseline() {
        return Ok(Completion::ignored_with(
            "the soak counts the layer's swapchains; tests::no_leaks covers Mesa's WSI",
        ));
    }
    let long = std::env::var(SOAK_VAR).is_ok_and(|v| v == "long");
    let (cycles, presents) = if long { LONG } else { SHORT };
    let mut report = Vec::new();
    for mode in ALL_MODES {
        for sync in ["auto", "cpu"] {
            let s = Scratch::new("soak")?;
            let mut c = s.child("soak")?;
            c.env(PARAM, format!("{}:{cycles}:{presents}", mode_name(mode)))
                .env("SYNCFILE_WSI_SYNC", sync)
                // FIFO at 1 kHz: the soak is about resources, not pacing.
                .env("SYNCFILE_WSI_HEADLESS_REFRESH", "1000");
            let start = Instant::now();
            let out = run_ok_within(
                &mut c,
                std::time::Duration::from_secs(if long { 3600 } else { 600 }),
            )?;
            let took = start.elapsed();
            let r = child_json(&out)?;
            let stats = s.stats()?;
            let name = format!("{}/{sync}", mode_name(mode));
            let n = |k: &str| r[k].as_u64().unwrap_or(u64::MAX);
            check(n("fds_after") == n("fds_before"), || {
                format!("{name}: descriptors leaked: {r}")
            })?;
            check(
                n("rss_kib_after") <= n("rss_kib_before") + RSS_BOUND_KIB,
                || format!("{name}: resident memory grew by more than {RSS_BOUND_KIB} KiB: {r}"),
            )?;
            let made = stat(&stats, stats_keys::SWAPCHAINS);
            let gone = stat(&stats, &["swapchains", "destroyed"]);
            check(made == gone && made > u64::from(cycles), || {
                format!("{name}: {made} swapchains made, {gone} destroyed: {stats}")
            })?;
            check(
                stat(&stats, stats_keys::PRESENTED) >= u64::from(cycles * presents),
                || format!("{name}: the layer presented too little: {stats}"),
            )?;
            if sync == "cpu" {
                check(
                    stat(&stats, stats_keys::FORCED_CPU) >= u64::from(cycles),
                    || format!("{name}: not on the fallback: {stats}"),
                )?;
            }
            report.push(format!(
                "{name}: fds {}->{}, VmRSS {}->{} KiB, {:.0} s",
                r["fds_before"],
                r["fds_after"],
                r["rss_kib_before"],
                r["rss_kib_after"],
                took.as_secs_f64()
            ));
        }
    }
    println!(
        "soak ({}, {cycles} swapchains x {presents} presents per mode and path): {}",
        if long { "long" } else { "short" },
        report.join("; ")
    );
    Ok(Completion::Completed)
}

/// The child: `PARAM` = `MODE:SWAPCHAINS:PRESENTS`; each swapchain
/// replaces the one before (`oldSwapchain`), as a resizing application's
/// do. Counts after a warm-up of 5.
pub fn child() -> ChildResult<Value> {
    let p = std::env::var(PARAM)?;
    let mut parts = p.split(':');
    let (Some(mode), Some(cycles), Some(presents)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("PARAM is MODE:SWAPCHAINS:PRESENTS".into());
    };
    let (mode, cycles, presents): (_, u32, u32) =
        (parse_mode(mode)?, cycles.parse()?, presents.parse()?);
    let vk = Vk::new(false)?;
    let run = |cycles: u32| -> ChildResult<()> {
        let mut old: Option<Chain> = None;
        for _ in 0..cycles {
            let handle = old
                .as_ref()
                .map_or(vk::SwapchainKHR::null(), |c| c.swapchain);
            let mut chain = Chain::new(&vk, mode, 32, 0, handle)?;
            drop(old.take());
            for _ in 0..presents {
                chain.frame()?;
            }
            old = Some(chain);
        }
        if let Some(chain) = &old {
            chain.wait_idle()?;
        }
        Ok(())
    };
    run(5)?;
    let (fds_before, rss_before) = (fds::count()?, fds::vm_rss_kib()?);
    run(cycles)?;
    let (fds_after, rss_after) = (fds::count()?, fds::vm_rss_kib()?);
    Ok(json!({
        "fds_before": fds_before,
        "fds_after": fds_after,
        "rss_kib_before": rss_before,
        "rss_kib_after": rss_after,
    }))
}
