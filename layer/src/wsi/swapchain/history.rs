//! What became of a swapchain's presents, as its consumer reports it: the
//! present ids reached (`VK_KHR_present_wait`, `…wait2`), the timing of
//! past presents (`VK_GOOGLE_display_timing`) and the refresh.
//!
//! The application's thread records each frame it hands to the consumer;
//! the consumer's thread reports each one shown (with its time) or
//! discarded (replaced before it was shown, or dropped when the consumer
//! stopped). A frame reported done completes every older one too, so a
//! frame a consumer never reports still completes with the next. Waits
//! sleep on the condition variable, never longer than their timeout.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ash::vk;

use crate::wsi::platform::Shown;

/// The past timings kept for `vkGetPastPresentationTimingGOOGLE`, oldest
/// dropped first: the extension lets the implementation keep a limited
/// history.
const PAST_TIMINGS: usize = 64;

/// The refresh reported before the consumer has said what it is.
pub const DEFAULT_REFRESH_NS: u64 = 16_666_667;

pub struct History {
    inner: Mutex<Inner>,
    changed: Condvar,
}

#[derive(Default)]
struct Inner {
    /// Frames handed to the consumer and not yet reported, oldest first.
    pending: VecDeque<Pending>,
    /// The highest present id whose frame is shown or discarded.
    reached: u64,
    /// The highest present id given so far.
    last_id: u64,
    /// Whether an id that did not increase was logged already.
    logged_order: bool,
    past: VecDeque<vk::PastPresentationTimingGOOGLE>,
    refresh_ns: Option<u64>,
    /// Once no frame will be reported any more: what waits for a later
    /// one return (`ERROR_OUT_OF_DATE_KHR`, `ERROR_SURFACE_LOST_KHR`).
    ended: Option<vk::Result>,
}

struct Pending {
    seq: u64,
    id: u64,
    timing: Option<vk::PresentTimeGOOGLE>,
}

impl History {
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            changed: Condvar::new(),
        }
    }

    /// The consumer's refresh, where it knows before showing a frame.
    pub fn set_refresh(&self, refresh_ns: Option<u64>) {
        let mut g = self.lock();
        g.refresh_ns = g.refresh_ns.or(refresh_ns);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The present id of a new present, if it may have one: ids must
    /// increase (the application's error otherwise, logged once; the
    /// present goes on without an id).
    pub fn check_id(&self, id: u64) -> u64 {
        if id == 0 {
            return 0;
        }
        let mut g = self.lock();
        if id <= g.last_id {
            if !g.logged_order {
                g.logged_order = true;
                tracing::error!(
                    "vkQueuePresentKHR: present id {id} is not greater than the previous one ({}); presenting without it (logged once per swapchain)",
                    g.last_id
                );
            }
            return 0;
        }
        g.last_id = id;
        id
    }

    /// Frame `seq`, with present id `id` (0: none) and the application's
    /// timing request, went to the consumer.
    pub fn queued(&self, seq: u64, id: u64, timing: Option<vk::PresentTimeGOOGLE>) {
        self.lock().pending.push_back(Pending { seq, id, timing });
    }

    /// The consumer reports frame `seq` (and so every older one) done.
    pub fn shown(&self, seq: u64, shown: Shown) {
        let mut g = self.lock();
        while g.pending.front().is_some_and(|p| p.seq <= seq) {
            let Some(p) = g.pending.pop_front() else {
                break;
            };
            g.reached = g.reached.max(p.id);
            let (Shown::At { time_ns, .. }, Some(t), true) = (shown, p.timing, p.seq == seq) else {
                continue;
            };
            if g.past.len() == PAST_TIMINGS {
                g.past.pop_front();
            }
            g.past.push_back(vk::PastPresentationTimingGOOGLE {
                present_id: t.present_id,
                desired_present_time: t.desired_present_time,
                actual_present_time: time_ns,
                // The consumer does not say how much earlier it could have
                // been shown: no earlier than it was.
                earliest_present_time: time_ns,
                present_margin: 0,
            });
        }
        if let Shown::At {
            refresh_ns: Some(r),
            ..
        } = shown
        {
            g.refresh_ns = Some(r);
        }
        drop(g);
        self.changed.notify_all();
    }

    /// No frame will be reported any more: waits for frames not yet done
    /// return `why` (the first reason given stands).
    pub fn end(&self, why: vk::Result) {
        let mut g = self.lock();
        g.ended.get_or_insert(why);
        drop(g);
        self.changed.notify_all();
    }

    /// `vkWaitForPresentKHR`: waits until the frame with present id `id`
    /// (or a later one) is done, at most `timeout` ns.
    pub fn wait(&self, id: u64, timeout: u64) -> vk::Result {
        let deadline =
            (timeout != u64::MAX).then(|| Instant::now() + Duration::from_nanos(timeout));
        let mut g = self.lock();
        loop {
            if g.reached >= id {
                return vk::Result::SUCCESS;
            }
            if let Some(why) = g.ended {
                return why;
            }
            g = match deadline {
                None => self.changed.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return vk::Result::TIMEOUT;
                    }
                    self.changed
                        .wait_timeout(g, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// The consumer's refresh in ns.
    pub fn refresh_ns(&self) -> u64 {
        self.lock().refresh_ns.unwrap_or(DEFAULT_REFRESH_NS)
    }

    /// Hands out the past timings not read before, the Vulkan way: with a
    /// null array their count; else as many as fit (those are gone from
    /// the history), and `VK_INCOMPLETE` if not all did.
    ///
    /// # Safety
    /// As [`crate::vulkan::fill`].
    pub unsafe fn take_past(
        &self,
        p_count: *mut u32,
        p_timings: *mut vk::PastPresentationTimingGOOGLE,
    ) -> vk::Result {
        let mut g = self.lock();
        let all: Vec<_> = g.past.iter().copied().collect();
        // SAFETY: as the caller promises.
        let r = unsafe { crate::vulkan::fill(&all, p_count, p_timings) };
        if !p_timings.is_null() {
            // SAFETY: as above; fill wrote the count it handed out.
            let taken = unsafe { *p_count } as usize;
            let kept = g.past.len();
            g.past.drain(..taken.min(kept));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn timing(id: u32) -> Option<vk::PresentTimeGOOGLE> {
        Some(vk::PresentTimeGOOGLE {
            present_id: id,
            desired_present_time: 0,
        })
    }

    #[test]
    fn ids_must_increase() {
        let h = History::new();
        assert_eq!(h.check_id(0), 0);
        assert_eq!(h.check_id(5), 5);
        assert_eq!(h.check_id(5), 0);
        assert_eq!(h.check_id(3), 0);
        assert_eq!(h.check_id(6), 6);
    }

    #[test]
    fn a_later_frame_completes_earlier_ones() {
        let h = History::new();
        h.queued(10, 1, None);
        h.queued(11, 2, None);
        h.queued(12, 3, None);
        assert_eq!(h.wait(1, 0), vk::Result::TIMEOUT);
        h.shown(11, Shown::Discarded);
        assert_eq!(
            h.wait(2, 0),
            vk::Result::SUCCESS,
            "discarded counts as done"
        );
        assert_eq!(h.wait(3, 0), vk::Result::TIMEOUT);
        h.end(vk::Result::ERROR_OUT_OF_DATE_KHR);
        assert_eq!(h.wait(3, u64::MAX), vk::Result::ERROR_OUT_OF_DATE_KHR);
        assert_eq!(h.wait(1, 0), vk::Result::SUCCESS);
    }

    #[test]
    fn a_wait_wakes_when_its_frame_is_shown() {
        let h = Arc::new(History::new());
        h.queued(0, 7, None);
        let waiter = {
            let h = h.clone();
            std::thread::spawn(move || h.wait(7, u64::MAX))
        };
        std::thread::sleep(Duration::from_millis(20));
        h.shown(
            0,
            Shown::At {
                time_ns: 1,
                refresh_ns: None,
            },
        );
        assert_eq!(waiter.join().unwrap(), vk::Result::SUCCESS);
    }

    #[test]
    fn timings_of_shown_frames_are_handed_out_once() {
        let h = History::new();
        h.set_refresh(Some(8_000_000));
        assert_eq!(h.refresh_ns(), 8_000_000);
        h.queued(0, 0, timing(1));
        h.queued(1, 0, timing(2));
        h.queued(2, 0, None);
        h.shown(0, Shown::Discarded);
        h.shown(
            2,
            Shown::At {
                time_ns: 500,
                refresh_ns: Some(16_000_000),
            },
        );
        assert_eq!(h.refresh_ns(), 16_000_000);
        let mut n = 0;
        // SAFETY: a valid count, no array.
        assert_eq!(
            unsafe { h.take_past(&mut n, std::ptr::null_mut()) },
            vk::Result::SUCCESS
        );
        assert_eq!(n, 0, "frame 1 was completed by frame 2, not shown itself");
        h.queued(3, 0, timing(4));
        h.queued(4, 0, timing(5));
        for seq in [3, 4] {
            h.shown(
                seq,
                Shown::At {
                    time_ns: 1000 + seq,
                    refresh_ns: None,
                },
            );
        }
        let mut out = [vk::PastPresentationTimingGOOGLE::default(); 1];
        let mut n = 1;
        // SAFETY: room for one.
        let r = unsafe { h.take_past(&mut n, out.as_mut_ptr()) };
        assert_eq!(
            (r, n, out[0].present_id, out[0].actual_present_time),
            (vk::Result::INCOMPLETE, 1, 4, 1003)
        );
        let mut n = 1;
        // SAFETY: as above.
        let r = unsafe { h.take_past(&mut n, out.as_mut_ptr()) };
        assert_eq!((r, n, out[0].present_id), (vk::Result::SUCCESS, 1, 5));
    }
}
