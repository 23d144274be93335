//! The layer against a compositor that misbehaves ([`crate::compositor`]):
//! one that never releases buffers, one that never answers frame
//! callbacks, one that keeps reading every buffer after it released it
//! (a pending read fence), one that refuses the layer's dma-bufs and one
//! that hangs up mid-frame. Each run is a child process of this binary (a
//! small Vulkan application through the layer, [`child`]) on the
//! compositor's own socket; none may hang, crash or draw into a buffer the
//! compositor still reads.

use std::sync::Mutex;
use std::time::Instant;

use ash::vk;
use libtest_mimic::{Completion, Failed};
use serde_json::{json, Value};
use syncfile::sources::Source;

use crate::app::App;
use crate::apps::{self, number, Layer, RUN_LIMIT};
use crate::common::child::Result as ChildResult;
use crate::compositor::{Compositor, Fault, Seen};
use crate::vulkan::{Chain, Newer, Vk};
use crate::{check, missing, this_binary, Outcome, CHILD_VAR, MODE_VAR};

/// The child's frames to present at most.
const FRAMES_VAR: &str = "SYNCFILE_TEST_FRAMES";
/// The child's acquire timeout, in ms (none: it waits for ever).
const TIMEOUT_VAR: &str = "SYNCFILE_TEST_ACQUIRE_TIMEOUT_MS";
/// Set: the child's swapchain defers its images' memory to their first
/// acquire (`VK_EXT_swapchain_maintenance1`).
const DEFERRED_VAR: &str = "SYNCFILE_TEST_DEFERRED";
const SIZE: u32 = 64;
pub const MODES: [&str; 3] = ["fifo", "mailbox", "immediate"];

/// Frame `n`'s clear colour, and the first pixel the compositor reads of
/// it: B8G8R8A8, exact in UNORM, different for each of the first 128.
pub fn colour(n: u64) -> [f32; 4] {
    let [r, g, b] = channels(n);
    [r as f32 / 255.0, g as f32 / 255.0, b as f32 / 255.0, 1.0]
}

fn channels(n: u64) -> [u8; 3] {
    [
        ((n * 50 + 30) % 256) as u8,
        ((n * 80 + 60) % 256) as u8,
        ((n * 110 + 90) % 256) as u8,
    ]
}

/// `AR24`/`XR24` in memory: B, G, R, A; the alpha is left out.
fn pixel(n: u64) -> u32 {
    let [r, g, b] = channels(n);
    (r as u32) << 16 | (g as u32) << 8 | b as u32
}

/// A child's run against `fault`: its report, the layer's statistics, its
/// standard error and what the compositor saw.
struct Run {
    report: Value,
    stats: Value,
    stderr: String,
    seen: Seen,
}

impl Run {
    fn results(&self) -> Vec<&str> {
        let r = self.report["results"].as_array().into_iter().flatten();
        r.filter_map(Value::as_str).collect()
    }

    fn presented(&self) -> usize {
        self.results().iter().filter(|r| **r == "SUCCESS").count()
    }

    /// The layer logged the compositor's refusal exactly once.
    fn refusal_logged_once(&self) -> Result<(), Failed> {
        let said = self
            .stderr
            .matches("zwp_linux_buffer_params_v1.failed")
            .count();
        check(said == 1, || {
            format!("said {said} times: {}", self.context())
        })
    }

    fn context(&self) -> String {
        format!(
            "report {}; compositor {:?}; stderr: {}",
            self.report,
            self.seen,
            apps::tail(self.stderr.as_bytes())
        )
    }
}

pub fn prerequisites(needs: &[Source]) -> Option<String> {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").unwrap_or_default();
    if !std::path::Path::new(&runtime).is_dir() {
        return Some("XDG_RUNTIME_DIR is not a directory".into());
    }
    needs.iter().find_map(|s| s.missing())
}

fn run(fault: Fault, mode: &str, frames: u64, timeout_ms: Option<u64>) -> Result<Run, Failed> {
    run_with(fault, mode, frames, timeout_ms, &[])
}

/// [`run`], the child's environment having `extra` as well.
fn run_with(
    fault: Fault,
    mode: &str,
    frames: u64,
    timeout_ms: Option<u64>,
    extra: &[(&str, &str)],
) -> Result<Run, Failed> {
    let compositor = Compositor::start(fault)?;
    let name = format!("misbehaving_{fault:?}_{mode}").replace(['(', ')'], "");
    let layer = Layer::new(&name)?;
    let frames = frames.to_string();
    let timeout = timeout_ms.map(|t| t.to_string()).unwrap_or_default();
    let mut env = vec![
        (CHILD_VAR, "misbehaving"),
        (MODE_VAR, mode),
        (FRAMES_VAR, frames.as_str()),
    ];
    if timeout_ms.is_some() {
        env.push((TIMEOUT_VAR, timeout.as_str()));
    }
    env.extend_from_slice(extra);
    let exe = this_binary()?;
    let child = layer
        .command(&compositor.socket, true, &exe, &[], &env)
        .spawn()?;
    let out = apps::finish(child, RUN_LIMIT);
    let stderr = match &out {
        Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
        Err(e) => e.message().unwrap_or_default().to_owned(),
    };
    let seen = std::mem::take(&mut *compositor.seen());
    compositor.stop()?;
    let out = out.map_err(|e| format!("{fault:?} {mode}: {e:?}; compositor {seen:?}"))?;
    apps::succeeded(&out).map_err(|e| format!("{fault:?} {mode}: {e:?}; compositor {seen:?}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().ok_or("the child printed nothing")?;
    Ok(Run {
        report: serde_json::from_str(last)?,
        stats: layer.stats()?,
        stderr,
        seen,
    })
}

/// (a) The compositor keeps every buffer: once all images are presented,
/// an acquire with a timeout ends with `VK_TIMEOUT` and one without with
/// `VK_NOT_READY`, in every mode.
pub fn never_released_acquire_times_out() -> Outcome {
    if let Some(why) = prerequisites(&[Source::Udmabuf]) {
        return missing(why);
    }
    for mode in MODES {
        let r = run(Fault::NoRelease, mode, 16, Some(200))?;
        let images = r.report["images"].as_u64().unwrap_or(0) as usize;
        let results = r.results();
        let tail = &results[results.len().saturating_sub(2)..];
        check(images > 0 && r.presented() == images, || {
            format!("{mode}: {images} images, {}", r.context())
        })?;
        check(tail == ["TIMEOUT", "NOT_READY"], || {
            format!("{mode}: {}", r.context())
        })?;
        check(
            r.seen.releases == 0 && r.seen.committed == images as u64,
            || format!("{mode}: {}", r.context()),
        )?;
        eprintln!(
            "{mode}: {images} images presented, then TIMEOUT after {} ms and NOT_READY",
            r.report["failed_acquire_ms"]
        );
    }
    Ok(Completion::Completed)
}

/// (b) No frame callback ever comes: FIFO waits for each at most the
/// layer's bound and goes on, MAILBOX and IMMEDIATE never wait; every
/// frame reaches the compositor.
pub fn no_frame_callbacks_never_freeze() -> Outcome {
    if let Some(why) = prerequisites(&[Source::Udmabuf]) {
        return missing(why);
    }
    for mode in MODES {
        let frames = if mode == "fifo" { 4 } else { 12 };
        let r = run(Fault::NoFrameCallbacks, mode, frames, Some(2000))?;
        check(r.presented() == frames as usize, || {
            format!("{mode}: {}", r.context())
        })?;
        check(
            r.seen.committed == frames && r.seen.frame_callbacks == 0,
            || format!("{mode}: {}", r.context()),
        )?;
        let timeouts = number(&r.stats, &["wayland", "frame_callback_timeouts"]);
        check(mode != "fifo" || timeouts > 0, || {
            format!("{mode}: FIFO never gave up waiting: {}", r.stats)
        })?;
        eprintln!("{mode}: {frames} frames committed with no frame callback; FIFO gave up {timeouts} times");
    }
    Ok(Completion::Completed)
}

/// (c) The compositor still reads each buffer after it released it (a
/// pending read fence): the next render into that image waits for the
/// fence, so the compositor's pixels stay the frame it committed until
/// the fence signals; each committed frame is whole once its writers are.
pub fn pending_read_fence_holds_the_next_render() -> Outcome {
    if let Some(why) = prerequisites(&[Source::Udmabuf, Source::Vgem]) {
        return missing(why);
    }
    for mode in ["fifo", "mailbox"] {
        let frames = 12;
        let r = run(Fault::PendingReadFence, mode, frames, None)?;
        check(r.presented() == frames as usize, || {
            format!("{mode}: {}", r.context())
        })?;
        check(r.seen.commits.len() == frames as usize, || {
            format!("{mode}: {}", r.context())
        })?;
        for (k, c) in r.seen.commits.iter().enumerate() {
            check(
                c.writers_done && c.pixel & 0xff_ffff == pixel(k as u64),
                || {
                    format!(
                        "{mode}: commit {k} read {:#x}, frame {k} is {:#x}: {}",
                        c.pixel,
                        pixel(k as u64),
                        r.context()
                    )
                },
            )?;
        }
        for f in &r.seen.fences {
            check(
                f.pixel_before_signal & 0xff_ffff == pixel(f.commit as u64),
                || {
                    format!(
                    "{mode}: buffer {} was drawn into under the read fence of commit {}: {:#x}: {}",
                    f.buffer,
                    f.commit,
                    f.pixel_before_signal,
                    r.context()
                )
                },
            )?;
        }
        // The layer's own count, beside the pixels: its frame path never
        // waited on the application's thread. (lavapipe's vkQueueSubmit
        // itself returns only once an imported sync_file it waits on has
        // signalled; the layer's acquire hands the image over at once.)
        for cause in apps::APP_FENCE_WAITS {
            let waits = number(&r.stats, &["cpu_waits", "app", cause, "count"]);
            check(waits == 0, || {
                format!(
                    "{mode}: the application thread waited ({cause}): {}",
                    r.stats
                )
            })?;
        }
        let held = renders_under_a_fence(&r);
        check(held > 0, || {
            format!(
                "{mode}: no render was made while a read fence was pending, so none was held: {}",
                r.context()
            )
        })?;
        eprintln!(
            "{mode}: {frames} frames; {held} renders were submitted while their image's read fence was pending and waited for it; {} fences checked",
            r.seen.fences.len()
        );
    }
    Ok(Completion::Completed)
}

/// How many frames were submitted while the read fence of their buffer's
/// previous commit was still pending: the renders the fence held.
fn renders_under_a_fence(r: &Run) -> usize {
    let called = r.report["submit_called_ns"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let commits = &r.seen.commits;
    (1..commits.len())
        .filter(|&k| {
            let before = r
                .seen
                .fences
                .iter()
                .filter(|f| f.buffer == commits[k].buffer && f.commit < k);
            let latest = before.max_by_key(|f| f.commit);
            let at = called.get(k).and_then(Value::as_u64);
            matches!((latest, at), (Some(f), Some(at)) if at < f.signalled_ns)
        })
        .count()
}

/// (d) The compositor answers the dma-buf imports with `failed`: the
/// swapchain is not made (`VK_ERROR_INITIALIZATION_FAILED`, said once),
/// before the application has one.
pub fn refused_buffers_fail_creation() -> Outcome {
    if let Some(why) = prerequisites(&[Source::Udmabuf]) {
        return missing(why);
    }
    let r = run(Fault::RefuseImportsFrom(1), "fifo", 4, None)?;
    check(r.report["created"] == json!(false), || r.context())?;
    let error = r.report["error"].as_str().unwrap_or_default();
    check(error.contains("ERROR_INITIALIZATION_FAILED"), || {
        r.context()
    })?;
    check(r.seen.refused > 0 && r.seen.committed == 0, || r.context())?;
    r.refusal_logged_once()?;
    check(
        number(&r.stats, &["wayland", "refused_buffers"]) == 1,
        || r.stats.to_string(),
    )?;
    Ok(Completion::Completed)
}

/// (d) with deferred memory: the compositor takes the buffer of the image
/// bound at creation and refuses the next, which the layer imports at
/// that image's first present. No other WSI can take the surface over
/// then, so it is lost: a later present or acquire answers
/// `VK_ERROR_SURFACE_LOST_KHR`, with one log line, and nothing hangs.
pub fn refused_deferred_buffer_loses_the_surface() -> Outcome {
    if let Some(why) = prerequisites(&[Source::Udmabuf]) {
        return missing(why);
    }
    let r = run_with(
        Fault::RefuseImportsFrom(2),
        "fifo",
        20,
        Some(5000),
        &[(DEFERRED_VAR, "1")],
    )?;
    check(r.report["created"] == json!(true), || r.context())?;
    let results = r.results();
    check(results.last() == Some(&"ERROR_SURFACE_LOST_KHR"), || {
        r.context()
    })?;
    check(r.presented() >= 1 && r.seen.refused == 1, || r.context())?;
    r.refusal_logged_once()?;
    // Created, so the refused import came after vkCreateSwapchainKHR's
    // roundtrip: an image bound at its first acquire.
    check(
        number(&r.stats, &["wayland", "lost"]) >= 1
            && number(&r.stats, &["swapchains", "images_bound_at_acquire"]) >= 1,
        || r.stats.to_string(),
    )?;
    eprintln!(
        "{} frames presented, then {:?}; {} commits shown, {} import refused",
        r.presented(),
        &results[r.presented()..],
        r.seen.committed,
        r.seen.refused
    );
    Ok(Completion::Completed)
}

/// (e) The compositor hangs up on its fifth commit: a later present or
/// acquire answers `VK_ERROR_SURFACE_LOST_KHR`, nothing hangs.
pub fn disconnect_mid_frame_is_lost() -> Outcome {
    if let Some(why) = prerequisites(&[Source::Udmabuf]) {
        return missing(why);
    }
    for mode in ["fifo", "mailbox"] {
        let r = run(Fault::DisconnectAt(5), mode, 200, Some(5000))?;
        let results = r.results();
        check(results.last() == Some(&"ERROR_SURFACE_LOST_KHR"), || {
            format!("{mode}: {}", r.context())
        })?;
        check(r.presented() >= 4 && r.seen.disconnected, || {
            format!("{mode}: {}", r.context())
        })?;
        eprintln!(
            "{mode}: {} frames presented, then {:?}",
            r.presented(),
            &results[r.presented()..]
        );
    }
    Ok(Completion::Completed)
}

/// The child: presents up to [`FRAMES_VAR`] frames in [`MODE_VAR`]'s mode,
/// frame `n` cleared to [`colour`]`(n)`, and stops at the first error or
/// `VK_NOT_READY`; after a `VK_TIMEOUT` it tries once more with a zero
/// timeout. Reports every frame's result.
pub fn child() -> ChildResult<Value> {
    let app = App::for_child()?;
    let mode = crate::child_mode();
    let frames: u64 = std::env::var(FRAMES_VAR)?.parse()?;
    // SAFETY: the application's display and surface outlive `vk`, which is
    // dropped first.
    let deferred = std::env::var_os(DEFERRED_VAR).is_some();
    let (newer, flags) = if deferred {
        (
            Newer::Maintenance1,
            vk::SwapchainCreateFlagsKHR::DEFERRED_MEMORY_ALLOCATION_EXT,
        )
    } else {
        (Newer::None, vk::SwapchainCreateFlagsKHR::empty())
    };
    let vk = unsafe { Vk::with(app.display_ptr(), app.surface_ptr(), newer)? };
    let mut chain = match Chain::with_flags(&vk, mode, SIZE, flags) {
        Ok(c) => c,
        Err(e) => return Ok(json!({ "created": false, "error": format!("{e:?}") })),
    };
    if let Ok(ms) = std::env::var(TIMEOUT_VAR) {
        chain.acquire_timeout = ms.parse::<u64>()? * 1_000_000;
    }
    let lock = Mutex::new(());
    let (mut results, mut called) = (Vec::new(), Vec::new());
    let mut present_us = Vec::new();
    let mut failed_acquire_ms = 0;
    let mut presented = 0;
    for _ in 0..frames {
        let started = Instant::now();
        let r = chain.frame(colour(presented), &lock, &mut present_us)?;
        results.push(format!("{r:?}"));
        match r {
            vk::Result::SUCCESS | vk::Result::SUBOPTIMAL_KHR => {
                presented += 1;
                called.push(chain.submit_called_ns);
            }
            vk::Result::TIMEOUT => {
                failed_acquire_ms = started.elapsed().as_millis() as u64;
                chain.acquire_timeout = 0;
            }
            _ => break,
        }
    }
    let images = chain.image_count();
    drop(chain);
    drop(vk);
    Ok(json!({
        "created": true,
        "images": images,
        "results": results,
        "submit_called_ns": called,
        "failed_acquire_ms": failed_acquire_ms,
    }))
}
