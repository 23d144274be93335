//! When the compositor showed each frame: `wp_presentation` feedback for
//! every commit (presented, with the time and refresh; or discarded, when
//! a later commit replaced it first), or, from a compositor without
//! `wp_presentation`, the commit's frame callback, taken as shown when it
//! comes.
//!
//! The compositor's timestamps are in the clock it names
//! (`wp_presentation.clock_id`); the layer reports `CLOCK_MONOTONIC`, as
//! Vulkan's present timing does, converting when the two differ.

use rustix::time::{ClockId, DynamicClockId};
use wayland_client::{Connection, Dispatch, QueueHandle};
use wayland_protocols::wp::presentation_time::client::{
    wp_presentation as presentation, wp_presentation_feedback as feedback,
};

use super::client::State;
use crate::wsi::platform::{monotonic_now_ns, Shown};

/// `CLOCK_MONOTONIC`, as `wp_presentation.clock_id` names it.
pub const MONOTONIC: u32 = 1;

/// The version of `wp_presentation` the layer binds: v1 has everything it
/// reads.
pub const PRESENTATION_VERSION: u32 = 1;

/// The current time of the clock with Linux id `clock`, in ns.
fn now_ns(clock: u32) -> Option<u64> {
    let id = match clock {
        0 => ClockId::Realtime,
        1 => ClockId::Monotonic,
        4 => ClockId::MonotonicRaw,
        7 => ClockId::Boottime,
        _ => return None,
    };
    let t = rustix::time::clock_gettime_dynamic(DynamicClockId::Known(id)).ok()?;
    Some(t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64)
}

/// A time `ns` of the compositor's clock `clock` on `CLOCK_MONOTONIC`.
fn to_monotonic(ns: u64, clock: u32) -> u64 {
    if clock == MONOTONIC {
        return ns;
    }
    match now_ns(clock) {
        // The two clocks advance together; only their origins differ.
        Some(theirs) => ns.wrapping_sub(theirs.wrapping_sub(monotonic_now_ns())),
        None => monotonic_now_ns(),
    }
}

impl Dispatch<presentation::WpPresentation, ()> for State {
    fn event(
        state: &mut Self,
        _: &presentation::WpPresentation,
        event: presentation::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let presentation::Event::ClockId { clk_id } = event {
            state.clock = clk_id;
        }
    }
}

/// A feedback object's frame: its number.
impl Dispatch<feedback::WpPresentationFeedback, u64> for State {
    fn event(
        state: &mut Self,
        _: &feedback::WpPresentationFeedback,
        event: feedback::Event,
        seq: &u64,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        let shown = match event {
            feedback::Event::Presented {
                tv_sec_hi,
                tv_sec_lo,
                tv_nsec,
                refresh,
                ..
            } => {
                let secs = u64::from(tv_sec_hi) << 32 | u64::from(tv_sec_lo);
                let ns = secs * 1_000_000_000 + u64::from(tv_nsec);
                Shown::At {
                    time_ns: to_monotonic(ns, state.clock),
                    refresh_ns: (refresh > 0).then_some(u64::from(refresh)),
                }
            }
            feedback::Event::Discarded => Shown::Discarded,
            // sync_output: which output showed it, which the layer does not need.
            _ => return,
        };
        state.presented.push((*seq, shown));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_the_compositors_clock() {
        let before = monotonic_now_ns();
        assert_eq!(to_monotonic(before, MONOTONIC), before);
        let boot = now_ns(7).unwrap();
        let converted = to_monotonic(boot, 7);
        // The boot-time reading, moved to the monotonic clock, falls
        // between the monotonic readings around it.
        assert!((before..=monotonic_now_ns()).contains(&converted));
    }
}
