//! Who has each image of a swapchain: the state machine.
//!
//! ```text
//!            acquire              present               release (backend)
//!   Free ─────────────▶ Acquired ─────────▶ Presented ─────────────────────▶ Free
//!    ▲ │                  │  (refused: retired, failed submission)  ▲
//!    │ │                  └─────────────────────────────────────────┘ (to Free)
//!    │ └─ retirement, when idle ─▶ Gone (its memory freed early)
//!    └─ acquire's sync failed (back at the front of the queue)
//! ```
//!
//! `Presented` covers every stage after the application let go: waiting
//! in the present thread (CPU fallback), queued at the backend, on its
//! (virtual) screen. Free images are handed out oldest first.
//!
//! One mutex per swapchain guards the states; the application thread and
//! the backend's thread are the only ones that take it, once per frame each
//! and never while waiting on anything but its own condition variable. Its
//! containers are sized at creation, so no transition allocates.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use ash::vk;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageState {
    Free,
    Acquired,
    Presented,
    /// Freed when its swapchain was retired.
    Gone,
}

pub struct Pool {
    inner: Mutex<Inner>,
    released: Condvar,
}

struct Inner {
    states: Box<[ImageState]>,
    /// How many times each image was acquired: names one acquire.
    acquires: Box<[u64]>,
    free: VecDeque<u32>,
    /// What the backend last reported about the surface: `SUCCESS`,
    /// `SUBOPTIMAL_KHR`, or an error every later acquire returns.
    status: vk::Result,
    retired: bool,
    /// Bumped whenever an image is released or the status changes, so a
    /// waiter that looked can tell whether anything happened since.
    generation: u64,
}

/// What an attempt to take an image found.
#[derive(Debug, PartialEq, Eq)]
pub enum Take {
    /// This image, and the status to return with it (`SUCCESS` or
    /// `SUBOPTIMAL_KHR`).
    Image(u32, vk::Result),
    /// None free; the generation to wait past.
    Empty(u64),
    /// The swapchain is retired or its surface reported this error.
    Error(vk::Result),
}

impl Pool {
    pub fn new(count: u32) -> Self {
        Self {
            inner: Mutex::new(Inner {
                states: vec![ImageState::Free; count as usize].into_boxed_slice(),
                acquires: vec![0; count as usize].into_boxed_slice(),
                free: (0..count).collect(),
                status: vk::Result::SUCCESS,
                retired: false,
                generation: 0,
            }),
            released: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the image that has been free longest.
    pub fn take(&self) -> Take {
        let mut g = self.lock();
        if g.retired {
            return Take::Error(vk::Result::ERROR_OUT_OF_DATE_KHR);
        }
        if g.status.as_raw() < 0 {
            return Take::Error(g.status);
        }
        match g.free.pop_front() {
            Some(i) => {
                g.states[i as usize] = ImageState::Acquired;
                g.acquires[i as usize] += 1;
                Take::Image(i, g.status)
            }
            None => Take::Empty(g.generation),
        }
    }

    /// Which acquire of image `i` the latest was (1 for the first).
    pub fn acquire_seq(&self, i: u32) -> u64 {
        self.lock().acquires.get(i as usize).copied().unwrap_or(0)
    }

    /// Whether image `i` is still acquired, by acquire `seq`.
    pub fn acquired_as(&self, i: u32, seq: u64) -> bool {
        let g = self.lock();
        g.states.get(i as usize) == Some(&ImageState::Acquired) && g.acquires[i as usize] == seq
    }

    /// Gives back an acquired image unpresented (one the acquire could not
    /// finish with, or `vkReleaseSwapchainImagesEXT`), first in line
    /// again; false if image `i` was not acquired.
    pub fn untake(&self, i: u32) -> bool {
        let mut g = self.lock();
        if g.states.get(i as usize) != Some(&ImageState::Acquired) {
            return false;
        }
        g.states[i as usize] = ImageState::Free;
        g.free.push_front(i);
        g.generation += 1;
        self.released.notify_all();
        true
    }

    /// Marks an acquired image presented. Fails with `OUT_OF_DATE` (and
    /// frees the image) once retired, and with `None` if the image is not
    /// acquired (an application error).
    pub fn present(&self, i: u32) -> Result<(), Option<vk::Result>> {
        let mut g = self.lock();
        match g.states.get(i as usize) {
            Some(ImageState::Acquired) => {}
            _ => return Err(None),
        }
        if g.retired {
            g.states[i as usize] = ImageState::Free;
            g.free.push_back(i);
            g.generation += 1;
            self.released.notify_all();
            return Err(Some(vk::Result::ERROR_OUT_OF_DATE_KHR));
        }
        g.states[i as usize] = ImageState::Presented;
        Ok(())
    }

    /// The backend (or a failed present) is done with image `i`.
    pub fn release(&self, i: u32) {
        let mut g = self.lock();
        if g.states.get(i as usize) == Some(&ImageState::Presented) {
            g.states[i as usize] = ImageState::Free;
            g.free.push_back(i);
            g.generation += 1;
            self.released.notify_all();
        }
    }

    /// The backend reports the surface's state: `SUBOPTIMAL_KHR`,
    /// `ERROR_OUT_OF_DATE_KHR`, `ERROR_SURFACE_LOST_KHR`...; errors stick.
    pub fn set_status(&self, status: vk::Result) {
        let mut g = self.lock();
        if g.status.as_raw() >= 0 {
            g.status = status;
            g.generation += 1;
            self.released.notify_all();
        }
    }

    pub fn status(&self) -> vk::Result {
        self.lock().status
    }

    /// Waits until the generation moves past `generation` or `deadline`
    /// passes (`None`: no deadline).
    pub fn wait_for_release(&self, generation: u64, deadline: Option<Instant>) {
        let mut g = self.lock();
        while g.generation == generation {
            match deadline {
                None => g = self.released.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return;
                    }
                    g = self
                        .released
                        .wait_timeout(g, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    /// Retires the swapchain: no more acquires, presents refused.
    pub fn retire(&self) {
        let mut g = self.lock();
        g.retired = true;
        g.generation += 1;
        self.released.notify_all();
    }

    /// Takes every free image out of circulation for good (after
    /// retirement), for those `idle` says are idle; returns them.
    pub fn take_gone(&self, idle: impl Fn(u32) -> bool) -> Vec<u32> {
        let mut g = self.lock();
        let gone: Vec<u32> = g.free.iter().copied().filter(|&i| idle(i)).collect();
        g.free.retain(|i| !gone.contains(i));
        for &i in &gone {
            g.states[i as usize] = ImageState::Gone;
        }
        gone
    }

    #[cfg(test)]
    fn state(&self, i: u32) -> ImageState {
        self.lock().states[i as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn round_trip_in_order() {
        let p = Pool::new(3);
        assert_eq!(p.take(), Take::Image(0, vk::Result::SUCCESS));
        assert_eq!(p.take(), Take::Image(1, vk::Result::SUCCESS));
        assert_eq!(p.present(0), Ok(()));
        assert_eq!(p.present(0), Err(None), "presented twice");
        assert_eq!(p.present(2), Err(None), "never acquired");
        p.release(0);
        assert_eq!(p.take(), Take::Image(2, vk::Result::SUCCESS));
        assert_eq!(p.take(), Take::Image(0, vk::Result::SUCCESS));
        assert!(matches!(p.take(), Take::Empty(_)));
        assert!(p.acquired_as(0, 2) && !p.acquired_as(0, 1) && p.acquired_as(1, 1));
        assert!(p.untake(0));
        assert!(!p.untake(0), "no longer acquired");
        assert!(!p.acquired_as(0, 2));
        assert_eq!(p.take(), Take::Image(0, vk::Result::SUCCESS));
        p.release(1);
        assert_eq!(
            p.state(1),
            ImageState::Acquired,
            "release only frees presented images"
        );
    }

    #[test]
    fn retirement() {
        let p = Pool::new(2);
        assert_eq!(p.take(), Take::Image(0, vk::Result::SUCCESS));
        p.retire();
        assert_eq!(p.take(), Take::Error(vk::Result::ERROR_OUT_OF_DATE_KHR));
        assert_eq!(p.present(0), Err(Some(vk::Result::ERROR_OUT_OF_DATE_KHR)));
        assert_eq!(p.take_gone(|i| i == 0), vec![0]);
        assert_eq!(p.state(0), ImageState::Gone);
        assert_eq!(p.state(1), ImageState::Free);
    }

    #[test]
    fn errors_stick_and_wake_waiters() {
        let p = Arc::new(Pool::new(1));
        assert_eq!(p.take(), Take::Image(0, vk::Result::SUCCESS));
        let Take::Empty(g) = p.take() else { panic!() };
        let waiter = {
            let p = p.clone();
            std::thread::spawn(move || p.wait_for_release(g, None))
        };
        std::thread::sleep(Duration::from_millis(10));
        p.set_status(vk::Result::ERROR_SURFACE_LOST_KHR);
        waiter.join().unwrap();
        p.set_status(vk::Result::SUBOPTIMAL_KHR);
        assert_eq!(p.take(), Take::Error(vk::Result::ERROR_SURFACE_LOST_KHR));
        let start = Instant::now();
        p.wait_for_release(p_generation(&p), Some(start + Duration::from_millis(5)));
        assert!(start.elapsed() >= Duration::from_millis(5));
    }

    fn p_generation(p: &Pool) -> u64 {
        p.lock().generation
    }
}
