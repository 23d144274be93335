//! The child behind `scripts/bench`'s present-to-display latency: frames
//! presented on weston through whichever WSI the loader gives this process
//! (the layer's, or Mesa's with `DISABLE_SYNCFILE_WSI=1`), each measured
//! from the moment `vkQueuePresentKHR` is called to the time weston's
//! `wp_presentation_feedback.presented` says the frame was shown. The
//! feedback is the application's own (asked for on its surface just before
//! each present, so it rides on the commit that present makes), which
//! measures both WSIs the same way without trusting either.
//!
//! Reported, not asserted: no test runs this.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::time::ClockId;
use serde_json::{json, Value};
use wayland_client::globals::{registry_queue_init, GlobalListContents};
use wayland_client::protocol::wl_registry;
use wayland_client::{Connection, Dispatch, QueueHandle};
use wayland_protocols::wp::presentation_time::client::{wp_presentation, wp_presentation_feedback};

use crate::app::App;
use crate::common::child::Result as ChildResult;
use crate::vulkan::{Chain, Vk};

pub const FRAMES_VAR: &str = "SYNCFILE_TEST_FRAMES";
/// Frames presented first and not counted: swapchain start-up, cold caches.
const WARM_UP: usize = 10;
/// How long the feedback of the last frames may take to come.
const SETTLE: Duration = Duration::from_secs(30);
const SIZE: u32 = 256;

/// How each frame's feedback ended, by frame.
#[derive(Default)]
struct Feedback {
    clock: Option<u32>,
    presented_ns: Vec<Option<u64>>,
    discarded: Vec<bool>,
    settled: usize,
}

pub fn child() -> ChildResult<Value> {
    let mut app = App::for_child()?;
    let mode = crate::child_mode();
    let frames: usize = std::env::var(FRAMES_VAR)
        .ok()
        .and_then(|f| f.parse().ok())
        .unwrap_or(300);
    // The feedback objects live on a queue of their own, so that neither
    // the application's queue nor a WSI's sees their events.
    let (globals, mut queue) = registry_queue_init::<Feedback>(&app.conn)?;
    let presentation: wp_presentation::WpPresentation = globals.bind(&queue.handle(), 1..=1, ())?;
    let mut state = Feedback::default();
    queue.roundtrip(&mut state)?;
    // The clock ids of <time.h>.
    let clock = match state.clock {
        Some(0) => ClockId::Realtime,
        Some(1) => ClockId::Monotonic,
        Some(4) => ClockId::MonotonicRaw,
        Some(7) => ClockId::Boottime,
        other => {
            return Err(
                format!("weston's presentation clock {other:?} is not one this reads").into(),
            )
        }
    };
    // SAFETY: the application's display and surface outlive `vk`.
    let vk = unsafe { Vk::new(app.display_ptr(), app.surface_ptr())? };
    let mut chain = Chain::new(&vk, mode, SIZE)?;
    chain.clock = clock;
    let lock = Mutex::new(());
    let mut us = Vec::new();
    let mut called_ns = Vec::with_capacity(frames);
    for k in 0..WARM_UP + frames {
        presentation.feedback(&app.surface, &queue.handle(), k);
        state.presented_ns.push(None);
        state.discarded.push(false);
        let shade = (k % 60) as f32 / 60.0;
        let r = chain.frame([shade, 0.5, 1.0 - shade, 1.0], &lock, &mut us)?;
        if r.as_raw() < 0 {
            return Err(format!("vkQueuePresentKHR of frame {k}: {r:?}").into());
        }
        called_ns.push(chain.present_called_ns);
        queue.dispatch_pending(&mut state)?;
    }
    // Every feedback settles once its commit is shown or replaced; a WSI
    // that never made some commit leaves its feedback waiting, so the wait
    // has an end.
    let deadline = Instant::now() + SETTLE;
    while state.settled < WARM_UP + frames {
        queue.dispatch_pending(&mut state)?;
        let left = deadline.saturating_duration_since(Instant::now());
        if state.settled >= WARM_UP + frames || left.is_zero() {
            break;
        }
        queue.flush()?;
        if let Some(guard) = queue.prepare_read() {
            let ts = Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: left.subsec_nanos().into(),
            };
            let readable = {
                let mut fds = [PollFd::from_borrowed_fd(
                    guard.connection_fd(),
                    PollFlags::IN,
                )];
                rustix::event::poll(&mut fds, Some(&ts))? > 0
            };
            if readable {
                // WouldBlock: another thread read them first.
                let _ = guard.read();
            }
        }
    }
    drop(chain);
    drop(vk);
    app.queue.roundtrip(&mut app.state)?;
    // Signed: weston's timestamp is its repaint's vblank, which under
    // load can be one it scheduled before the commit came.
    let mut latencies_us: Vec<i64> = state
        .presented_ns
        .iter()
        .zip(&called_ns)
        .skip(WARM_UP)
        .filter_map(|(shown, &called)| Some((*shown.as_ref()? as i64 - called as i64) / 1000))
        .collect();
    let shown = latencies_us.clone();
    latencies_us.sort_unstable();
    let at = |q: f64| {
        latencies_us
            .get(((latencies_us.len() as f64 - 1.0) * q).round() as usize)
            .copied()
    };
    Ok(json!({
        "mode": format!("{mode:?}"),
        "frames": frames,
        "presented": shown.len(),
        "discarded": state.discarded[WARM_UP..].iter().filter(|&&d| d).count(),
        "unsettled": WARM_UP + frames - state.settled,
        "median_us": at(0.5),
        "p99_us": at(0.99),
        "latencies_us": shown,
    }))
}

impl Dispatch<wl_registry::WlRegistry, GlobalListContents> for Feedback {
    fn event(
        _: &mut Self,
        _: &wl_registry::WlRegistry,
        _: wl_registry::Event,
        _: &GlobalListContents,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
    }
}

impl Dispatch<wp_presentation::WpPresentation, ()> for Feedback {
    fn event(
        state: &mut Self,
        _: &wp_presentation::WpPresentation,
        event: wp_presentation::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wp_presentation::Event::ClockId { clk_id } = event {
            state.clock = Some(clk_id);
        }
    }
}

impl Dispatch<wp_presentation_feedback::WpPresentationFeedback, usize> for Feedback {
    fn event(
        state: &mut Self,
        _: &wp_presentation_feedback::WpPresentationFeedback,
        event: wp_presentation_feedback::Event,
        &frame: &usize,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match event {
            wp_presentation_feedback::Event::Presented {
                tv_sec_hi,
                tv_sec_lo,
                tv_nsec,
                ..
            } => {
                let secs = (u64::from(tv_sec_hi) << 32) | u64::from(tv_sec_lo);
                state.presented_ns[frame] = Some(secs * 1_000_000_000 + u64::from(tv_nsec));
                state.settled += 1;
            }
            wp_presentation_feedback::Event::Discarded => {
                state.discarded[frame] = true;
                state.settled += 1;
            }
            _ => {}
        }
    }
}
