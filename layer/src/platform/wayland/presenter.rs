//! One swapchain on a Wayland surface: a thread that owns the layer's
//! connection for it, commits presented images when the surface's frame
//! pacing allows, and gives images back to the pool as the compositor
//! releases them. The application's thread only hands frames over (a
//! bounded channel and an eventfd), so a present never blocks on the
//! compositor and an acquire waits only on the pool.
//!
//! FIFO commits one frame per frame callback and never drops one; MAILBOX
//! likewise but a newer frame replaces the waiting one (which goes back to
//! the pool unshown); IMMEDIATE commits every frame as it arrives.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ash::vk;
use syncfile::SyncFile;
use wayland_client::protocol::wl_buffer::WlBuffer;

use super::formats::{self, Fourcc, Tranches};
use super::{Client, Release, SurfaceLink, WaylandError};
use crate::backend::worker::{Inbox, Worker};
use crate::backend::{BackendError, BackendImage, Frame, Presenter};
use crate::entry::try_guard;
use crate::stats::{self, Counter};
use crate::swapchain::pool::Pool;

/// How long the thread sleeps when nothing happens; a stop rings it awake.
const IDLE: Duration = Duration::from_secs(1);

/// A presented frame on its way to the thread, with the render's fence
/// when it goes to the compositor as an explicit acquire fence.
struct Job {
    frame: Frame,
    acquire: Option<SyncFile>,
}

pub struct WaylandPresenter {
    worker: Worker<Job>,
    lost: Arc<AtomicBool>,
    explicit: bool,
}

impl WaylandPresenter {
    /// Starts the thread for a swapchain whose `wl_buffer`s are `buffers`
    /// (one per image, in order, all of DRM format `format`), committed
    /// through `link` on `client`.
    pub fn start(
        client: Client,
        link: SurfaceLink,
        buffers: Vec<WlBuffer>,
        format: Fourcc,
        images: Vec<BackendImage>,
        mode: vk::PresentModeKHR,
        pool: Arc<Pool>,
    ) -> Result<Self, BackendError> {
        let lost = Arc::new(AtomicBool::new(false));
        let explicit = link.explicit();
        let committer_lost = lost.clone();
        let worker = Worker::spawn("wayland", images.len(), move |inbox| {
            Committer {
                inbox,
                lost: committer_lost,
                client,
                link,
                buffers,
                format,
                preferred: None,
                images,
                mode,
                pool,
                queue: VecDeque::new(),
                frames_seen: 0,
                awaiting_frame: false,
            }
            .run()
        })?;
        Ok(Self {
            worker,
            lost,
            explicit,
        })
    }
}

impl Presenter for WaylandPresenter {
    fn present(&self, frame: Frame, render: Option<&SyncFile>) -> vk::Result {
        if self.lost.load(Ordering::Acquire) {
            return vk::Result::ERROR_SURFACE_LOST_KHR;
        }
        // The compositor gets its own descriptor of the fence; the bridge
        // keeps the one it imported into the dma-buf.
        let acquire = match render {
            Some(f) if self.explicit => match f.try_clone() {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::error!("vkQueuePresentKHR: cannot duplicate the render fence: {e}");
                    return vk::Result::ERROR_OUT_OF_HOST_MEMORY;
                }
            },
            _ => None,
        };
        if self.worker.send(Job { frame, acquire }) {
            vk::Result::SUCCESS
        } else {
            vk::Result::ERROR_OUT_OF_DATE_KHR
        }
    }

    fn stop(&self) {
        self.worker.stop();
    }
}

struct Committer {
    inbox: Inbox<Job>,
    lost: Arc<AtomicBool>,
    client: Client,
    link: SurfaceLink,
    buffers: Vec<WlBuffer>,
    format: Fourcc,
    /// The modifiers the surface's first dma-buf feedback preferred for
    /// `format`, once it came.
    preferred: Option<Vec<u64>>,
    images: Vec<BackendImage>,
    mode: vk::PresentModeKHR,
    pool: Arc<Pool>,
    /// Presented frames not yet committed, oldest first.
    queue: VecDeque<Job>,
    /// Frame callbacks counted so far.
    frames_seen: u64,
    /// A commit's frame callback is outstanding.
    awaiting_frame: bool,
}

impl Committer {
    fn run(mut self) {
        let lost = self.lost.clone();
        let pool = self.pool.clone();
        let served = try_guard("the Wayland presenter", "its surface is lost", || {
            self.serve()
        });
        if !matches!(served, Some(Ok(()))) {
            if let Some(Err(e)) = served {
                tracing::error!("the Wayland surface is lost: {e}");
            }
            lost.store(true, Ordering::Release);
            pool.set_status(vk::Result::ERROR_SURFACE_LOST_KHR);
            stats::count(Counter::WaylandLost);
        }
        // Stopping or lost: every image goes back (a retired or lost pool
        // hands none out again), the compositor's objects are freed.
        for job in self.queue.drain(..) {
            self.pool.release(job.frame.index);
        }
        for i in 0..self.images.len() as u32 {
            self.pool.release(i);
        }
        for b in self.buffers.drain(..) {
            b.destroy();
        }
    }

    fn serve(&mut self) -> Result<(), WaylandError> {
        while !self.inbox.stopping() {
            if !self.take_in() {
                break;
            }
            if self.may_commit() {
                if let Some(job) = self.queue.pop_front() {
                    self.commit(job)?;
                    continue;
                }
            }
            self.client.dispatch(IDLE, Some(self.inbox.bell()))?;
            self.inbox.hush();
            self.handle_events();
        }
        Ok(())
    }

    /// Takes in presented frames; false once the presenter is gone.
    fn take_in(&mut self) -> bool {
        loop {
            match self.inbox.next() {
                Ok(Some(job)) => {
                    if self.mode == vk::PresentModeKHR::MAILBOX {
                        // Whatever still waits is replaced, unshown.
                        for old in self.queue.drain(..) {
                            self.pool.release(old.frame.index);
                            stats::count(Counter::FramesReplaced);
                        }
                    }
                    self.queue.push_back(job);
                }
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }

    fn may_commit(&self) -> bool {
        self.mode == vk::PresentModeKHR::IMMEDIATE || !self.awaiting_frame
    }

    fn commit(&mut self, job: Job) -> Result<(), WaylandError> {
        let i = job.frame.index;
        self.link.commit(
            &self.client,
            &self.buffers[i as usize],
            i,
            job.acquire.as_ref(),
            true,
        )?;
        self.awaiting_frame = true;
        stats::count(if self.link.explicit() {
            Counter::WaylandCommitsExplicit
        } else {
            Counter::WaylandCommitsImplicit
        });
        stats::count(Counter::FramesDisplayed);
        Ok(())
    }

    fn handle_events(&mut self) {
        if let Some(tranches) = self.client.take_surface_feedback() {
            self.take_feedback(&tranches);
        }
        let frames = self.client.frames_done();
        if frames > self.frames_seen {
            self.frames_seen = frames;
            self.awaiting_frame = false;
        }
        for (i, release) in self.client.take_released() {
            // With explicit sync the release object speaks for the commit;
            // weston sends wl_buffer.release as well, which then says less.
            if self.link.explicit() && matches!(release, Release::Buffer) {
                continue;
            }
            let Some(image) = self.images.get(i as usize) else {
                continue;
            };
            match release.carry_into(&image.dma_buf) {
                Ok(true) => stats::count(Counter::WaylandReleaseFences),
                Ok(false) => {}
                Err(e) => {
                    // The next writer cannot be made to wait for the
                    // compositor's reads: wait for them here instead.
                    tracing::warn!("carrying a release fence into the dma-buf failed: {e}");
                    if let Release::Fenced(f) = &release {
                        let _ = f.wait(None);
                    }
                }
            }
            self.pool.release(i);
        }
    }

    /// Weighs a new surface feedback against the first: when the
    /// modifiers the compositor prefers for the swapchain's format change,
    /// acquires and presents answer `VK_SUBOPTIMAL_KHR` from then on, so
    /// the application makes a new swapchain (whose images the layer then
    /// lays out for the new preference where the driver can).
    fn take_feedback(&mut self, tranches: &Tranches) {
        let now = formats::preferred_modifiers(tranches, self.format);
        match &self.preferred {
            None => self.preferred = Some(now),
            Some(first) if *first != now && self.pool.status() == vk::Result::SUCCESS => {
                tracing::info!(
                    "the compositor now prefers modifiers {now:#x?} for this swapchain's format (at first {first:#x?}): VK_SUBOPTIMAL_KHR"
                );
                self.pool.set_status(vk::Result::SUBOPTIMAL_KHR);
                stats::count(Counter::WaylandSuboptimal);
            }
            Some(_) => {}
        }
    }
}
