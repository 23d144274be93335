//! The modern swapchain extensions judged: what the child (`modern.rs`)
//! observed held against the spec, with the validation layer below and
//! above, and the "2" versions without it.

use libtest_mimic::{Completion, Failed};
use serde_json::Value;
use VkLayer_syncfile_wsi::manifest::ENABLE_ENV;

use crate::child::PARAM;
use crate::common::validation::{check_canary, in_order, stack};
use crate::common::{check, child_json, run_ok, stat, Outcome};
use crate::stats_keys;
use crate::support::{baseline, Machine, Scratch};

/// The virtual display's refresh in these tests: 50 ms a frame, so that
/// FIFO's pacing is far above the guest's scheduling noise.
const REFRESH_HZ: u64 = 20;
const PERIOD_NS: u64 = 1_000_000_000 / REFRESH_HZ;

fn layer_only() -> Option<Outcome> {
    baseline().then(|| {
        Ok(Completion::ignored_with(
            "the layer's extensions; lavapipe's headless WSI lacks most of them",
        ))
    })
}

/// Runs the child, with the validation layer below or above when asked.
fn run(validation: Option<bool>, param: &str) -> Result<(Value, Scratch), Failed> {
    let go = |env_layers: &str, app_layers: &str| {
        let s = Scratch::new("modern")?;
        let mut c = s.child("modern")?;
        c.env(PARAM, param)
            .env("SYNCFILE_WSI_HEADLESS_REFRESH", REFRESH_HZ.to_string());
        let out = if env_layers.is_empty() && app_layers.is_empty() {
            run_ok(&mut c)?
        } else {
            c.env_remove(ENABLE_ENV).env_remove("XDG_DATA_HOME");
            run_ok(stack(&mut c, s.path("explicit"), env_layers, app_layers))?
        };
        Ok::<_, Failed>((out, s))
    };
    let (out, s) = match validation {
        Some(below) => in_order(below, go)?,
        None => go("", "")?,
    };
    Ok((child_json(&out)?, s))
}

fn is(v: &Value, expected: &str) -> bool {
    v.as_str() == Some(expected)
}

/// Present ids and waits in every mode, present fences, mode switching,
/// image release, display timing; with the validation layer on one side.
fn judge(m: &Machine, below: bool) -> Outcome {
    if let Some(skip) = m.lacks(&[&m.vulkan, &m.validation]).or_else(layer_only) {
        return skip;
    }
    let (r, s) = run(Some(below), "")?;
    check_canary(&r["canary_errors"], &r)?;
    check(r["errors"] == 0, || {
        format!("validation reported errors: {:#}", r["messages"])
    })?;
    let f = &r["features"];
    check(
        f["present_id"] == true && f["present_wait"] == true && f["swapchain_maintenance1"] == true,
        || format!("the features are not reported: {f}"),
    )?;
    let modes = r["modes"].as_object().ok_or("no modes")?;
    check(modes.len() == 5, || {
        format!("five present modes expected: {:?}", r["offered"])
    })?;
    for (mode, x) in modes {
        for (k, frame) in x["frames"].as_array().into_iter().flatten().enumerate() {
            check(is(&frame["wait"], "SUCCESS"), || {
                format!("{mode}: wait for id {}: {frame}", k + 1)
            })?;
            check(frame["rendered_when_wait_returned"] == true, || {
                format!(
                    "{mode}: id {} was reported shown before its render finished: {frame}",
                    k + 1
                )
            })?;
            check(
                is(&frame["present_fence"], "SUCCESS")
                    && frame["rendered_when_present_fence_signalled"] == true,
                || {
                    format!("{mode}: the present fence of id {} signalled before the present's wait: {frame}", k + 1)
                },
            )?;
        }
        check(
            is(&x["burst_first"], "SUCCESS") && is(&x["burst_last"], "SUCCESS"),
            || format!("{mode}: a frame replaced or passed must count as done: {x}"),
        )?;
        check(
            is(&x["never_zero"], "TIMEOUT") && is(&x["never_finite"], "TIMEOUT"),
            || format!("{mode}: a wait for an id never presented must time out: {x}"),
        )?;
        check(x["never_finite_ms"].as_f64() >= Some(30.0), || {
            format!("{mode}: the 30 ms wait returned early: {x}")
        })?;
    }
    let sw = &r["switching"];
    let compatible = sw["compatible_with_fifo"].as_array().map_or(0, Vec::len);
    check(compatible == 5, || {
        format!("FIFO must be compatible with all five modes: {sw}")
    })?;
    for (mode, p) in sw["phases"].as_object().into_iter().flatten() {
        check(is(&p["last_wait"], "SUCCESS"), || {
            format!("switching to {mode}: {p}")
        })?;
    }
    for mode in ["fifo", "fifolatestready"] {
        // Five frames on five refresh ticks: at least four periods apart.
        let ns = sw["phases"][mode]["ns"].as_u64().unwrap_or(0);
        check(ns >= 4 * PERIOD_NS, || {
            format!("after switching to {mode}, five frames took {ns} ns, less than four refresh periods: {sw}")
        })?;
    }
    let rel = &r["release"];
    check(
        is(&rel["refusal"], "NOT_READY")
            && rel["held"] == rel["images"]
            && is(&rel["release"], "SUCCESS")
            && rel["reacquired"] == rel["released"]
            && is(&rel["release_all"], "SUCCESS"),
        || format!("a released image must be acquirable again: {rel}"),
    )?;
    judge_deferred(&r["deferred"])?;
    judge_timing(&r["timing"])?;
    let stats = s.stats()?;
    check(stat(&stats, stats_keys::SWAPCHAINS) >= 8, || {
        format!("the layer did not own the swapchains: {stats}")
    })?;
    println!(
        "modern ({}): 5 modes × 6 waited frames + bursts, switching FIFO {:.0} ms / latest-ready {:.0} ms for 5 frames at {REFRESH_HZ} Hz, past timings {}, deferred allocation: {} of {} images bound, {} dma-bufs before the first acquire",
        if below { "validation below" } else { "validation above" },
        sw["phases"]["fifo"]["ns"].as_f64().unwrap_or(0.0) / 1e6,
        sw["phases"]["fifolatestready"]["ns"].as_f64().unwrap_or(0.0) / 1e6,
        r["timing"]["past"],
        r["deferred"]["acquired"],
        r["deferred"]["images"],
        r["deferred"]["created"],
    );
    Ok(Completion::Completed)
}

/// A deferred swapchain's images get their dma-bufs one by one, at each
/// one's first acquire, as many per image as an eager swapchain's have.
fn judge_deferred(d: &Value) -> Result<(), Failed> {
    let n = |k: &str| d[k].as_u64().unwrap_or(u64::MAX);
    let images = n("images");
    let per_image = n("eager") / images.max(1);
    check(
        images > 0 && per_image > 0 && n("eager") == per_image * images && n("left_by_eager") == 0,
        || format!("an eager swapchain's images must each have their dma-bufs, freed with it: {d}"),
    )?;
    check(n("created") == 0, || {
        format!("a deferred swapchain has dma-bufs before any acquire: {d}")
    })?;
    check(n("after_first") == per_image, || {
        format!("the first acquire must bind exactly one image: {d}")
    })?;
    check(n("after_frames") == per_image * n("acquired"), || {
        format!("each image acquired must be bound once, and only those: {d}")
    })?;
    Ok(())
}

/// The refresh is the virtual display's; every frame's past timing falls
/// between the child's clock readings around its present and wait, and
/// none before the time it desired.
fn judge_timing(t: &Value) -> Result<(), Failed> {
    check(t["refresh_ns"] == PERIOD_NS, || {
        format!("refresh duration: {t}")
    })?;
    let past = t["past"].as_array().ok_or("no past timings")?;
    for p in t["presented"].as_array().into_iter().flatten() {
        check(is(&p["wait"], "SUCCESS"), || format!("{p}"))?;
        let got = past
            .iter()
            .find(|q| q["id"] == p["id"])
            .ok_or_else(|| format!("no past timing for id {}: {t}", p["id"]))?;
        let actual = got["actual"].as_u64().unwrap_or(0);
        let within = p["before"].as_u64().unwrap_or(u64::MAX) <= actual
            && actual <= p["after"].as_u64().unwrap_or(0);
        check(within, || {
            format!(
                "id {}: shown at {actual}, outside its present and wait: {t}",
                p["id"]
            )
        })?;
        check(actual >= p["desired"].as_u64().unwrap_or(0), || {
            format!("id {} was shown before its desired time: {t}", p["id"])
        })?;
    }
    check(t["past_again"] == 0, || {
        format!("past timings are handed out once: {t}")
    })
}

pub fn with_validation_below(m: &Machine) -> Outcome {
    judge(m, true)
}

pub fn with_validation_above(m: &Machine) -> Outcome {
    judge(m, false)
}

/// `VK_KHR_present_id2` and `VK_KHR_present_wait2`, newer than the guest's
/// validation layer (which would report their structures as unknown).
pub fn present_id2_and_wait2(m: &Machine) -> Outcome {
    if let Some(skip) = m.lacks(&[&m.vulkan]).or_else(layer_only) {
        return skip;
    }
    let (r, _) = run(None, "2")?;
    let t = &r["two"];
    check(
        t["caps_present_id2"] == true && t["caps_present_wait2"] == true,
        || format!("the surface must report present id 2 and wait 2: {t}"),
    )?;
    for w in t["waits"].as_array().into_iter().flatten() {
        check(is(&w["wait"], "SUCCESS") && w["rendered"] == true, || {
            format!("vkWaitForPresent2KHR: {t}")
        })?;
    }
    check(is(&t["never_zero"], "TIMEOUT"), || format!("{t}"))?;
    Ok(Completion::Completed)
}
