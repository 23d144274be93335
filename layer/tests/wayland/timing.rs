//! Present ids, present waits and damage through the layer on weston, with
//! the wire as the oracle (`WAYLAND_DEBUG=client`): every wait for a frame
//! returns only after the compositor's `wp_presentation_feedback` for that
//! frame's commit said `presented` or `discarded`, and each frame's
//! `VkPresentRegionsKHR` rectangle is its commit's `damage_buffer` (the
//! whole buffer when it has none). And a wait for a frame that will never
//! be shown ends with `VK_ERROR_SURFACE_LOST_KHR` when weston dies.

use std::io::Write;
use std::sync::Mutex;

use ash::vk;
use libtest_mimic::{Completion, Failed};
use serde_json::{json, Value};

use crate::app::App;
use crate::apps::{self, number, Layer, OUTPUT, RUN_LIMIT};
use crate::common::child::Result as ChildResult;
use crate::vulkan::{Chain, Extras, Newer, Vk};
use crate::wire::{self, Message, Surface};
use crate::{check, missing, this_binary, Outcome, Weston, CHILD_VAR, MODE_VAR};

/// Frames waited for one by one; then a burst of three.
const FRAMES: u64 = 10;
const BURST: u64 = 3;
const SIZE: u32 = 64;
/// What the child writes on its standard error, between libwayland's
/// lines, when a wait returns.
const MARKER: &str = "syncfile-test: waited for ";
/// The rectangle even frames say changed.
const RECT: vk::RectLayerKHR = vk::RectLayerKHR {
    offset: vk::Offset2D { x: 4, y: 4 },
    extent: vk::Extent2D {
        width: 8,
        height: 8,
    },
    layer: 0,
};
const RECT_ON_THE_WIRE: &str = "4, 4, 8, 8";
/// The layer's damage for a frame without regions: the whole buffer.
const WHOLE: &str = "0, 0, 2147483647, 2147483647";
const WAIT_NS: u64 = 20_000_000_000;
/// What the child of the lost-compositor test writes just before it waits
/// for a frame that weston will never show.
const LOST_MARKER: &str = "syncfile-test: waiting for a frame never shown\n";
/// That wait's timeout: far beyond the test's own run, so that only the
/// lost connection can end it before the run limit.
const LOST_WAIT_NS: u64 = 3_600_000_000_000;

pub fn waits_follow_presentation_feedback() -> Outcome {
    if let Some(why) = apps::prerequisites(&[]) {
        return missing(why);
    }
    let weston = Weston::start(&OUTPUT)?;
    let layer = Layer::new("timing")?;
    let exe = this_binary()?;
    for mode in ["fifo", "mailbox"] {
        let env = [
            (CHILD_VAR, "timing"),
            (MODE_VAR, mode),
            ("WAYLAND_DEBUG", "client"),
        ];
        let path = layer.file(&format!("{mode}.stderr"));
        let mut command = layer.command(&weston.socket, true, &exe, &[], &env);
        command.stderr(std::fs::File::create(&path)?);
        let out = apps::finish(command.spawn()?, RUN_LIMIT);
        let log = std::fs::read_to_string(&path)?;
        let context = |e: Failed| {
            let m = e.message().unwrap_or_default();
            format!("{mode}: {m}; stderr: {}", apps::tail(log.as_bytes()))
        };
        let out = out.map_err(context)?;
        apps::succeeded(&out).map_err(context)?;
        let text = String::from_utf8_lossy(&out.stdout);
        let last = text.lines().last().ok_or("the child printed nothing")?;
        let report: Value = serde_json::from_str(last)?;
        let seen = judge(&report, &log).map_err(context)?;
        apps::owned_and_presented(&layer.stats()?, FRAMES + BURST, "explicit").map_err(context)?;
        eprintln!("{mode}: {seen}");
    }
    Ok(Completion::Completed)
}

fn judge(report: &Value, log: &str) -> Result<String, Failed> {
    for w in report["waits"].as_array().into_iter().flatten() {
        check(w["result"] == "SUCCESS", || {
            format!("a wait failed: {report}")
        })?;
    }
    // Messages with their line numbers, and where each wait returned.
    let mut messages: Vec<Message<'_>> = Vec::new();
    let mut lines = Vec::new();
    let mut returned = Vec::new();
    for (n, line) in log.lines().enumerate() {
        // Another thread's line may share this one (libwayland writes in
        // pieces): the marker's digits end at the first non-digit.
        let (text, marker) = match line.split_once(MARKER) {
            Some((before, after)) => {
                let digits =
                    after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                returned.push((after[..digits].parse::<u64>()?, n));
                (before, Some(&after[digits..]))
            }
            None => (line, None),
        };
        for m in wire::parse(text)
            .into_iter()
            .chain(marker.into_iter().flat_map(wire::parse))
        {
            messages.push(m);
            lines.push(n);
        }
    }
    let feedbacks: Vec<u32> = messages
        .iter()
        .filter(|m| m.request && m.is("wp_presentation", "feedback"))
        .filter_map(Message::new_id)
        .collect();
    let frames = (FRAMES + BURST) as usize;
    check(feedbacks.len() == frames, || {
        format!(
            "{} presentation feedbacks asked for {frames} frames",
            feedbacks.len()
        )
    })?;
    let settled = |id: u32| {
        messages.iter().zip(&lines).find_map(|(m, &n)| {
            let done = m.is("wp_presentation_feedback", "presented")
                || m.is("wp_presentation_feedback", "discarded");
            (!m.request && m.id == id && done).then_some((n, m.name))
        })
    };
    let mut discarded = 0;
    for &(k, at) in &returned {
        let id = feedbacks[(k - 1) as usize];
        let (n, how) = settled(id).ok_or_else(|| {
            format!("the wait for frame {k} returned, but its feedback (#{id}) never settled")
        })?;
        check(n < at, || {
            format!("the wait for frame {k} returned (line {at}) before its feedback #{id} said {how} (line {n})")
        })?;
        discarded += usize::from(how == "discarded");
    }
    check(returned.len() == FRAMES as usize + 2, || {
        format!("{} waits returned", returned.len())
    })?;
    let surface = Surface::of(&messages, number(report, &["surface"]) as u32);
    let commits: Vec<_> = surface
        .commits
        .iter()
        .filter(|c| c.attaches(&surface.buffers))
        .collect();
    check(commits.len() == frames, || {
        format!("{} frame commits", commits.len())
    })?;
    for (k, c) in (1u64..).zip(&commits) {
        let damage: Vec<&str> = c
            .requests
            .iter()
            .filter(|m| m.name == "damage_buffer")
            .map(|m| m.args)
            .collect();
        let expected = if k % 2 == 0 { RECT_ON_THE_WIRE } else { WHOLE };
        check(damage == [expected], || {
            format!(
                "frame {k}: damage {damage:?}, expected {expected}: {}",
                c.show()
            )
        })?;
    }
    Ok(format!(
        "{} waits, each after its feedback ({discarded} discarded), damage as presented on {} commits",
        returned.len(),
        commits.len()
    ))
}

/// The child: frames with ids 1..=FRAMES, waiting for each, even ones with
/// a changed rectangle; then a burst of three, waiting for the first and
/// last.
pub fn child() -> ChildResult<Value> {
    let mut app = App::for_child()?;
    let mode = crate::child_mode();
    let lock = Mutex::new(());
    // SAFETY: the application's display and surface outlive `vk`.
    let vk = unsafe { Vk::with(app.display_ptr(), app.surface_ptr(), Newer::PresentWait)? };
    let mut chain = Chain::new(&vk, mode, SIZE)?;
    let mut us = Vec::new();
    let mut waits = Vec::new();
    let mut wait = |chain: &Chain<'_>, k: u64| -> ChildResult<()> {
        let r = chain.wait_for_present(k, WAIT_NS)?;
        // One write, so that libwayland's lines cannot split it.
        std::io::stderr().write_all(format!("{MARKER}{k}\n").as_bytes())?;
        waits.push(json!({ "id": k, "result": format!("{r:?}") }));
        Ok(())
    };
    for k in 1..=FRAMES + BURST {
        let extras = Extras {
            id: k,
            damage: (k % 2 == 0).then_some(RECT),
        };
        let shade = k as f32 / (FRAMES + BURST) as f32;
        let r = chain.frame_with([shade, 0.5, 1.0 - shade, 1.0], &lock, &mut us, extras)?;
        if r.as_raw() < 0 {
            return Err(format!("vkQueuePresentKHR of frame {k}: {r:?}").into());
        }
        if k <= FRAMES {
            wait(&chain, k)?;
        }
    }
    wait(&chain, FRAMES + 1)?;
    wait(&chain, FRAMES + BURST)?;
    drop(chain);
    drop(vk);
    app.queue.roundtrip(&mut app.state)?;
    Ok(json!({ "waits": waits, "surface": wayland_client::Proxy::id(&app.surface).protocol_id() }))
}

/// A wait for a frame the compositor will never show, while the compositor
/// dies (SIGKILL): `vkWaitForPresentKHR` returns `VK_ERROR_SURFACE_LOST_KHR`
/// instead of waiting out its (hour-long) timeout.
pub fn wait_on_a_killed_compositor_is_lost() -> Outcome {
    if let Some(why) = apps::prerequisites(&[]) {
        return missing(why);
    }
    let weston = Weston::start(&OUTPUT)?;
    let layer = Layer::new("timing-lost")?;
    let path = layer.file("stderr");
    let mut command = layer.command(
        &weston.socket,
        true,
        &this_binary()?,
        &[],
        &[(CHILD_VAR, "lost_wait")],
    );
    command.stderr(std::fs::File::create(&path)?);
    let child = command.spawn()?;
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&path)?.contains(LOST_MARKER) {
        check(started.elapsed() < RUN_LIMIT, || {
            "the child never began its wait".into()
        })?;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Let the wait begin (the marker comes just before the call).
    std::thread::sleep(std::time::Duration::from_millis(500));
    weston.kill()?;
    let out = apps::finish(child, RUN_LIMIT)?;
    let log = std::fs::read_to_string(&path)?;
    apps::succeeded(&out).map_err(|e| {
        let m = e.message().unwrap_or_default();
        format!("{m}; stderr: {}", apps::tail(log.as_bytes()))
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value =
        serde_json::from_str(text.lines().last().ok_or("the child printed nothing")?)?;
    check(report["first"] == "SUCCESS", || {
        format!("the wait for a shown frame: {report}")
    })?;
    check(report["lost"] == "ERROR_SURFACE_LOST_KHR", || {
        format!(
            "the wait on the dead compositor: {report}; stderr: {}",
            apps::tail(log.as_bytes())
        )
    })?;
    Ok(Completion::Completed)
}

/// The child: frame 1, waited for; then frame 2's wait for id 3, which no
/// present carries, while the parent kills weston.
pub fn lost_wait_child() -> ChildResult<Value> {
    let app = App::for_child()?;
    let lock = Mutex::new(());
    // SAFETY: the application's display and surface outlive `vk`.
    let vk = unsafe { Vk::with(app.display_ptr(), app.surface_ptr(), Newer::PresentWait)? };
    let mut chain = Chain::new(&vk, vk::PresentModeKHR::FIFO, SIZE)?;
    let mut us = Vec::new();
    let mut present = |chain: &mut Chain<'_>, id| -> ChildResult<()> {
        let extras = Extras { id, damage: None };
        let r = chain.frame_with([0.2, 0.4, 0.6, 1.0], &lock, &mut us, extras)?;
        if r.as_raw() < 0 {
            return Err(format!("vkQueuePresentKHR of frame {id}: {r:?}").into());
        }
        Ok(())
    };
    present(&mut chain, 1)?;
    let first = chain.wait_for_present(1, WAIT_NS)?;
    present(&mut chain, 2)?;
    std::io::stderr().write_all(LOST_MARKER.as_bytes())?;
    let lost = chain.wait_for_present(3, LOST_WAIT_NS)?;
    Ok(json!({ "first": format!("{first:?}"), "lost": format!("{lost:?}") }))
}
