//! The display presenter: a thread per swapchain that turns presents into
//! nonblocking atomic commits of the image's framebuffer, one in flight at
//! a time, each answered by a flip event.
//!
//! The kernel holds each commit until the render is done: by the write
//! fence the sync bridge put in the image's dma-buf (`implicit`), or by the
//! same fence as a sync_file in the plane's `IN_FENCE_FD` (`explicit`, and
//! `auto` where the plane takes one; a render already complete when it was
//! presented gets a signalled fence). With an `IN_FENCE_FD` the kernel
//! ignores the dma-buf's fences, which is enough: a swapchain image's only
//! writer is the application's render, which itself waited, through the
//! acquire, for every fence the dma-buf held. Nobody waits on the CPU.
//! FIFO commits each frame at the flip after the one before; MAILBOX
//! replaces the frame waiting behind the commit in flight; IMMEDIATE
//! commits with `DRM_MODE_PAGE_FLIP_ASYNC`. At each flip event the image
//! that was on the screen goes back.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ash::vk;
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use syncfile::kms::{AtomicRequest, CommitFlags};
use syncfile::SyncFile;

use super::readback::Readback;
use super::session::Session;
use super::{scanout_fourcc, Mode};
use crate::platform::worker::{Inbox, Worker};
use crate::plumbing::guard::try_guard;
use crate::plumbing::settings::SyncMode;
use crate::plumbing::stats::{self, Counter};
use crate::wsi::capture::Capture;
use crate::wsi::platform::{
    monotonic_now_ns, ConsumerImages, Frame, PlatformError, Presenter, PresenterConfig, Returns,
    Shown,
};

/// The next presenter's tag.
static NEXT_TAG: AtomicU64 = AtomicU64::new(1);

/// One presented frame, with the render's sync_file for `IN_FENCE_FD`.
struct Job {
    frame: Frame,
    fence: Option<SyncFile>,
}

struct ScanoutPresenter {
    worker: Worker<Job>,
    explicit: bool,
    refresh_ns: u64,
}

/// Starts presenting a swapchain's images on `session`'s output in `mode`.
pub fn start(
    session: Arc<Session>,
    mode: &Arc<Mode>,
    config: PresenterConfig<'_>,
) -> Result<Box<dyn Presenter>, PlatformError> {
    let explicit = match config.settings.sync {
        SyncMode::Auto => session.in_fence,
        SyncMode::Explicit if !session.in_fence => {
            tracing::warn!(
                "display: the plane takes no IN_FENCE_FD; relying on the dma-buf's implicit fences"
            );
            false
        }
        SyncMode::Explicit => true,
        SyncMode::Implicit | SyncMode::Cpu => false,
    };
    let n = config.images.len();
    let capture = Capture::from_settings(config.settings);
    let scanout = Scanout {
        mode: mode.clone(),
        fourcc: scanout_fourcc(config.format),
        images: config.images,
        returns: config.returns,
        readback: capture
            .as_ref()
            .and_then(|_| Readback::new(&session, mode.extent())),
        capture,
        framebuffers: vec![None; n],
        queue: VecDeque::with_capacity(n),
        in_flight: None,
        front: None,
        explicit,
        tag: NEXT_TAG.fetch_add(1, Ordering::Relaxed),
        blocked: false,
        session,
    };
    let refresh_ns = 1_000_000_000_000 / u64::from(mode.refresh_mhz.max(1));
    let worker = Worker::spawn("display", n, move |inbox| scanout.run(inbox))?;
    Ok(Box::new(ScanoutPresenter {
        worker,
        explicit,
        refresh_ns,
    }))
}

impl Presenter for ScanoutPresenter {
    fn present(
        &self,
        frame: Frame,
        render: Option<&SyncFile>,
        _damage: Option<&[vk::RectLayerKHR]>,
    ) -> vk::Result {
        // A descriptor of its own for the thread; without one (out of
        // them) the flip waits for a signalled fence and the dma-buf's.
        let fence = render
            .filter(|_| self.explicit)
            .and_then(|f| f.try_clone().ok());
        if self.worker.send(Job { frame, fence }) {
            vk::Result::SUCCESS
        } else {
            vk::Result::ERROR_OUT_OF_DATE_KHR
        }
    }

    fn refresh_ns(&self) -> Option<u64> {
        Some(self.refresh_ns)
    }

    fn stop(&self) {
        self.worker.stop();
    }
}

/// A frame committed, whose flip has not been reported yet.
struct InFlight {
    frame: Frame,
}

struct Scanout {
    session: Arc<Session>,
    mode: Arc<Mode>,
    fourcc: u32,
    images: ConsumerImages,
    returns: Arc<dyn Returns>,
    capture: Option<Capture>,
    /// What reads back the output's pixels, while capture is on.
    readback: Option<Readback>,
    /// Each image's framebuffer, made at its first present.
    framebuffers: Vec<Option<u32>>,
    /// Presented frames not committed yet, oldest first.
    queue: VecDeque<Job>,
    in_flight: Option<InFlight>,
    /// The image on the screen.
    front: Option<u32>,
    /// Every commit carries an `IN_FENCE_FD`.
    explicit: bool,
    /// What this presenter's commits carry, to tell its flip events apart
    /// from a stopped presenter's.
    tag: u64,
    /// A commit was refused as busy (another commit, a stopped
    /// presenter's, is still pending): wait for its event first.
    blocked: bool,
}

impl Scanout {
    fn run(mut self, inbox: Inbox<Job>) {
        let returns = self.returns.clone();
        let served = try_guard("the display presenter", "its surface is lost", || {
            self.serve(&inbox)
        });
        if served.is_none() {
            returns.set_status(vk::Result::ERROR_SURFACE_LOST_KHR);
        }
    }

    fn serve(&mut self, inbox: &Inbox<Job>) {
        loop {
            if inbox.stopping() || !self.take_in(inbox) {
                break;
            }
            let mut wake = None;
            if self.in_flight.is_none() && !self.blocked {
                if let Some(head) = self.queue.front() {
                    let now = monotonic_now_ns();
                    match head.frame.not_before_ns {
                        Some(t) if t > now => wake = Some(t - now),
                        _ => self.commit_head(),
                    }
                }
            }
            self.sleep(inbox, wake);
        }
        self.finish(inbox);
    }

    /// Takes in presented frames; false once the presenter is gone.
    fn take_in(&mut self, inbox: &Inbox<Job>) -> bool {
        loop {
            match inbox.next() {
                Ok(Some(job)) => {
                    if job.frame.mode == vk::PresentModeKHR::MAILBOX {
                        while let Some(old) = self.queue.pop_front() {
                            self.discard(old.frame);
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

    /// Commits the frame at the head of the queue.
    fn commit_head(&mut self) {
        let Some(job) = self.queue.pop_front() else {
            return;
        };
        match self.commit(&job) {
            Ok(()) => self.in_flight = Some(InFlight { frame: job.frame }),
            Err(Errno::BUSY) => {
                self.blocked = true;
                self.queue.push_front(job);
            }
            Err(e) => {
                let lost = matches!(e, Errno::ACCESS | Errno::PERM | Errno::NODEV);
                if lost {
                    stats::count(Counter::DisplayLost);
                    tracing::error!("display: the output is no longer the layer's ({e}): another DRM master took it, or it is gone");
                } else {
                    tracing::error!("display: the kernel refused a commit: {e}");
                }
                self.returns.set_status(vk::Result::ERROR_SURFACE_LOST_KHR);
                self.discard(job.frame);
            }
        }
    }

    fn commit(&mut self, job: &Job) -> Result<(), Errno> {
        let index = job.frame.index;
        let fb = self.framebuffer(index).ok_or(Errno::INVAL)?;
        let s = &self.session;
        let size = (self.mode.extent().width, self.mode.extent().height);
        let mut r = AtomicRequest::new();
        let mode_set = s.light(&mut r, &self.mode).map_err(|_| Errno::INVAL)?;
        s.output.show(&mut r, fb, size).map_err(errno)?;
        // Explicit: the render's fence, or a signalled one for a render
        // already complete, so that the kernel never waits for more.
        let signalled = match job.fence {
            None if self.explicit => s.signalled(),
            _ => None,
        };
        let in_fence = job.fence.as_ref().or(signalled.as_ref());
        if let Some(fence) = in_fence {
            use std::os::fd::{AsFd, AsRawFd};
            let prop = s
                .output
                .prop(s.output.plane, "IN_FENCE_FD")
                .map_err(errno)?;
            r.set(s.output.plane, prop, fence.as_fd().as_raw_fd() as u64);
        }
        let tearing = job.frame.mode == vk::PresentModeKHR::IMMEDIATE && s.tearing && !mode_set;
        let flags = CommitFlags {
            event: true,
            nonblocking: true,
            allow_modeset: mode_set,
            tearing,
            ..Default::default()
        };
        if let Err(e) = s.card.commit(&r, flags, self.tag()) {
            if mode_set {
                s.unlit();
            }
            return Err(errno(e));
        }
        stats::count(if in_fence.is_some() {
            Counter::DisplayCommitsInFence
        } else {
            Counter::DisplayCommitsImplicit
        });
        if mode_set {
            stats::count(Counter::DisplayModeSets);
        }
        if tearing {
            stats::count(Counter::DisplayAsyncFlips);
        }
        Ok(())
    }

    fn tag(&self) -> u64 {
        self.tag
    }

    /// Image `index`'s framebuffer, made at its first present.
    fn framebuffer(&mut self, index: u32) -> Option<u32> {
        let slot = self.framebuffers.get_mut(index as usize)?;
        if slot.is_none() {
            let image = self.images.get(index)?;
            match self.session.framebuffer(image, self.fourcc) {
                Ok(fb) => *slot = Some(fb),
                Err(e) => tracing::error!("display: {e}"),
            }
        }
        *slot
    }

    /// Sleeps until a present or stop rings, a flip event arrives, or
    /// `timeout_ns` passes; then handles the events.
    fn sleep(&mut self, inbox: &Inbox<Job>, timeout_ns: Option<u64>) {
        let ts = timeout_ns.map(|ns| Timespec {
            tv_sec: (ns / 1_000_000_000) as i64,
            tv_nsec: (ns % 1_000_000_000) as i64,
        });
        let mut fds = [
            PollFd::from_borrowed_fd(inbox.bell(), PollFlags::IN),
            PollFd::new(&*self.session.card, PollFlags::IN),
        ];
        // EINTR and the like only end this sleep early; the loop looks again.
        let _ = rustix::event::poll(&mut fds, ts.as_ref());
        if fds[0].revents().contains(PollFlags::IN) {
            inbox.hush();
        }
        if fds[1].revents().contains(PollFlags::IN) {
            self.flip_events();
        }
    }

    fn flip_events(&mut self) {
        let events = match self.session.card.read_events() {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("display: reading the card's events: {e}");
                self.returns.set_status(vk::Result::ERROR_SURFACE_LOST_KHR);
                return;
            }
        };
        for event in events {
            self.blocked = false;
            if event.user_data != self.tag() {
                continue;
            }
            let Some(done) = self.in_flight.take() else {
                continue;
            };
            self.session.replaced();
            if let Some(old) = self.front.replace(done.frame.index) {
                self.returns.release(old, None);
            }
            self.capture(done.frame);
            self.returns.shown(
                done.frame.seq,
                Shown::At {
                    time_ns: event.time_ns,
                    refresh_ns: Some(1_000_000_000_000 / u64::from(self.mode.refresh_mhz.max(1))),
                },
            );
            stats::count(Counter::FramesDisplayed);
        }
    }

    /// Captures frame `f`, now on the screen: the image, and what the
    /// output shows read back.
    fn capture(&self, f: Frame) {
        let Some(c) = self.capture.as_ref().filter(|c| c.wants(f.seq)) else {
            return;
        };
        if let Some(image) = self.images.get(f.index) {
            c.write(f.seq, image, true);
        }
        let fb = self.framebuffers.get(f.index as usize).copied().flatten();
        if let (Some(rb), Some(fb)) = (&self.readback, fb) {
            let e = self.mode.extent();
            if let Some(shown) = rb.read(&self.session, fb, (e.width, e.height)) {
                c.write_shown(f.seq, shown);
            }
        }
    }

    fn discard(&self, f: Frame) {
        self.returns.release(f.index, None);
        self.returns.shown(f.seq, Shown::Discarded);
    }

    /// Stopping: every image goes back; the framebuffers that may be on
    /// the screen stay with the session until a newer frame replaces them.
    fn finish(&mut self, inbox: &Inbox<Job>) {
        while let Ok(Some(job)) = inbox.next() {
            self.queue.push_back(job);
        }
        while let Some(job) = self.queue.pop_front() {
            self.discard(job.frame);
        }
        let mut on_screen = Vec::new();
        if let Some(f) = self.in_flight.take() {
            on_screen.push(f.frame.index);
            self.discard(f.frame);
        }
        if let Some(i) = self.front.take() {
            on_screen.push(i);
            self.returns.release(i, None);
        }
        if let Some(rb) = self.readback.take() {
            rb.release(&self.session);
        }
        let fbs = std::mem::take(&mut self.framebuffers);
        let mut leave = Vec::new();
        for (i, fb) in fbs.into_iter().enumerate() {
            let Some(fb) = fb else { continue };
            if on_screen.contains(&(i as u32)) {
                leave.push(fb);
            } else {
                self.session.remove(fb);
            }
        }
        self.session.leave(leave);
    }
}

fn errno(e: syncfile::Error) -> Errno {
    match e {
        syncfile::Error::Os(e) => e,
        _ => Errno::INVAL,
    }
}
