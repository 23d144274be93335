//! The headless platform (`VK_EXT_headless_surface`): a consumer thread per
//! swapchain that behaves like a compositor with a virtual display.
//!
//! It takes presented images in order, waits for each one's implicit
//! write fence (poll for `EPOLLIN` on its dma-buf, as a compositor's GPU
//! would wait), "scans it out" and releases the image it replaces on the
//! screen. FIFO and FIFO_RELAXED flip on the ticks of a virtual refresh
//! (`SYNCFILE_WSI_HEADLESS_REFRESH`, 60 Hz by default); FIFO never drops a
//! frame, FIFO_RELAXED flips a frame that missed its tick at once.
//! FIFO_LATEST_READY flips on the ticks too, showing the newest frame
//! ready at the tick and discarding those before it. MAILBOX and
//! IMMEDIATE flip as soon as a frame is ready; MAILBOX keeps one frame
//! waiting and replaces it (releasing it unshown) when a newer one
//! arrives first, IMMEDIATE shows every frame. Each frame's own mode
//! decides (swapchain maintenance switches modes per present), a desired
//! present time (`VK_GOOGLE_display_timing`) holds a frame back until
//! then, and every frame is reported shown, with its flip time, or
//! discarded.
//!
//! The thread sleeps in one `poll(2)` on an eventfd (rung on every
//! present and on stop) and the dma-buf it waits for, with the next tick
//! as timeout. Frames arrive through a bounded channel sized for every
//! image, so a present never blocks and nothing allocates per frame.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ash::vk;
use rustix::event::{PollFd, PollFlags, Timespec};
use syncfile::SyncFile;

use super::worker::{Inbox, Worker};
use crate::plumbing::guard::try_guard;
use crate::plumbing::settings::{Buffers, Platform, Settings};
use crate::plumbing::stats::{self, Counter, Wait};
use crate::vulkan::caps::{Format, SwapchainCaps};
use crate::vulkan::newer;
use crate::wsi::bridge;
use crate::wsi::capture::Capture;
use crate::wsi::platform::LINEAR;
use crate::wsi::platform::{
    monotonic_now_ns, require_linear, sizeless_capabilities, Allocator, Buffer, ConsumerImages,
    Frame, PlatformError, PlatformSurface, Presenter, PresenterConfig, Returns, Shown,
};

/// A headless surface: nothing of its own, every swapchain on it gets a
/// virtual display.
pub struct HeadlessSurface;

const PRESENT_MODES: [vk::PresentModeKHR; 5] = [
    vk::PresentModeKHR::FIFO,
    vk::PresentModeKHR::FIFO_RELAXED,
    vk::PresentModeKHR::MAILBOX,
    vk::PresentModeKHR::IMMEDIATE,
    newer::PRESENT_MODE_FIFO_LATEST_READY,
];

/// The consumer holds one image on its screen for good; a second one lets
/// the application always make progress.
const MIN_IMAGES: u32 = 2;
const MAX_IMAGES: u32 = 16;

impl PlatformSurface for HeadlessSurface {
    fn platform(&self) -> Platform {
        Platform::Headless
    }

    fn capabilities(
        &self,
        caps: &SwapchainCaps,
        _: Option<vk::PresentModeKHR>,
    ) -> vk::SurfaceCapabilitiesKHR {
        sizeless_capabilities(
            caps,
            (MIN_IMAGES, MAX_IMAGES),
            // Nothing is composited, so every way of reading alpha holds.
            vk::CompositeAlphaFlagsKHR::OPAQUE
                | vk::CompositeAlphaFlagsKHR::PRE_MULTIPLIED
                | vk::CompositeAlphaFlagsKHR::POST_MULTIPLIED,
        )
    }

    fn present_modes(&self) -> &'static [vk::PresentModeKHR] {
        &PRESENT_MODES
    }

    fn accepts_modifier(&self, _: Format, modifier: u64, settings: &Settings) -> bool {
        // The consumer only polls the dma-buf, whatever its layout; a
        // capture reads the pixels, and the consumer's own buffers are
        // plain memory: both need LINEAR.
        (settings.capture.is_none() && settings.headless_buffers == Buffers::Driver)
            || modifier == LINEAR
    }

    fn allocator(&self, settings: &Settings) -> Option<Box<dyn Allocator>> {
        match settings.headless_buffers {
            Buffers::Driver => None,
            Buffers::Consumer => Some(Box::new(HeapAllocator)),
        }
    }

    fn create_presenter(
        &self,
        config: PresenterConfig<'_>,
    ) -> Result<Box<dyn Presenter>, PlatformError> {
        let n = config.images.len();
        let period = Duration::from_secs(1) / config.settings.headless_refresh.max(1);
        let images = config.images;
        let returns = config.returns;
        let opaque = config.composite_alpha == vk::CompositeAlphaFlagsKHR::OPAQUE;
        let capture = Capture::from_settings(config.settings);
        let worker = Worker::spawn("headless", n, move |inbox| {
            Consumer {
                inbox,
                images,
                returns,
                opaque,
                capture,
                queue: VecDeque::with_capacity(n),
                front: None,
                period,
                last_flip: None,
                ready_at: None,
            }
            .run()
        })?;
        Ok(Box::new(HeadlessPresenter { worker, period }))
    }
}

struct HeadlessPresenter {
    worker: Worker<Frame>,
    period: Duration,
}

impl Presenter for HeadlessPresenter {
    fn present(
        &self,
        frame: Frame,
        _render: Option<&SyncFile>,
        _damage: Option<&[vk::RectLayerKHR]>,
    ) -> vk::Result {
        if self.worker.send(frame) {
            vk::Result::SUCCESS
        } else {
            vk::Result::ERROR_OUT_OF_DATE_KHR
        }
    }

    fn refresh_ns(&self) -> Option<u64> {
        u64::try_from(self.period.as_nanos()).ok()
    }

    fn stop(&self) {
        self.worker.stop();
    }
}

struct Consumer {
    inbox: Inbox<Frame>,
    images: ConsumerImages,
    returns: Arc<dyn Returns>,
    opaque: bool,
    capture: Option<Capture>,
    /// Presented frames not yet on the screen, oldest first.
    queue: VecDeque<Frame>,
    /// The image on the screen.
    front: Option<u32>,
    period: Duration,
    /// When the last flip happened (a refresh tick for the FIFO modes).
    last_flip: Option<Instant>,
    /// When the frame at the head of the queue was first seen ready.
    ready_at: Option<Instant>,
}

impl Consumer {
    fn run(mut self) {
        let returns = self.returns.clone();
        let done = try_guard("the headless consumer", "its surface is lost", || {
            self.serve()
        });
        if done.is_none() {
            returns.set_status(vk::Result::ERROR_SURFACE_LOST_KHR);
        }
    }

    fn serve(&mut self) {
        loop {
            if self.inbox.stopping() || !self.take_in() {
                break;
            }
            let Some(&head) = self.queue.front() else {
                self.sleep(None, None);
                continue;
            };
            if !self.rendered(head) {
                let start = Instant::now();
                self.sleep(Some(head.index), None);
                stats::waited(Wait::ImplicitFence, start.elapsed());
                continue;
            }
            let now = Instant::now();
            let ready = *self.ready_at.get_or_insert(now);
            let due = self.due(head, ready);
            if now >= due {
                self.ready_at = None;
                let shown = self.newest_ready();
                self.flip(shown, due);
            } else {
                self.sleep(None, Some(due - now));
            }
        }
        // Stopping: everything goes back. Frames still queued were
        // presented all the same, so a capture still gets them.
        while let Ok(Some(f)) = self.inbox.next() {
            self.queue.push_back(f);
        }
        while let Some(f) = self.queue.pop_front() {
            self.capture_late(f);
            self.discard(f);
        }
        if let Some(i) = self.front.take() {
            self.release(i);
        }
    }

    /// Takes in presented frames; false once the presenter is gone.
    fn take_in(&mut self) -> bool {
        loop {
            match self.inbox.next() {
                Ok(Some(f)) => {
                    if f.mode == vk::PresentModeKHR::MAILBOX {
                        // Whatever still waits is replaced, unshown.
                        while let Some(old) = self.queue.pop_front() {
                            self.discard(old);
                            stats::count(Counter::FramesReplaced);
                        }
                        self.ready_at = None;
                    }
                    self.queue.push_back(f);
                }
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }

    fn rendered(&self, f: Frame) -> bool {
        self.images
            .get(f.index)
            .is_none_or(|i| bridge::render_done(&i.buffer.dma_buf).unwrap_or(true))
    }

    /// Takes the frame to show at a flip off the queue: its head, or for
    /// FIFO latest-ready the newest of the frames behind it that are ready
    /// too (those in between are discarded).
    fn newest_ready(&mut self) -> Frame {
        let mut shown = self.queue.pop_front().expect("a head frame");
        while shown.mode == newer::PRESENT_MODE_FIFO_LATEST_READY {
            let Some(&next) = self.queue.front() else {
                break;
            };
            let wanted_now = next.not_before_ns.is_none_or(|t| t <= monotonic_now_ns());
            if next.mode != shown.mode || !wanted_now || !self.rendered(next) {
                break;
            }
            self.queue.pop_front();
            self.discard(shown);
            stats::count(Counter::FramesReplaced);
            shown = next;
        }
        shown
    }

    /// When frame `f` at the head, ready since `ready`, may be flipped.
    fn due(&self, f: Frame, ready: Instant) -> Instant {
        let ready = f.not_before_ns.map_or(ready, |t| ready.max(instant_of(t)));
        let Some(last) = self.last_flip else {
            return ready;
        };
        let tick = last + self.period;
        match f.mode {
            // The first refresh tick once it is ready, one per frame at most.
            vk::PresentModeKHR::FIFO | newer::PRESENT_MODE_FIFO_LATEST_READY => {
                tick.max(self.next_tick(ready, last))
            }
            // A frame that missed its tick goes up at once (and may tear).
            vk::PresentModeKHR::FIFO_RELAXED if ready > tick => ready,
            vk::PresentModeKHR::FIFO_RELAXED => tick,
            _ => ready,
        }
    }

    /// The first refresh tick at or after `t`, ticks running from `last`.
    fn next_tick(&self, t: Instant, last: Instant) -> Instant {
        if t <= last {
            return last;
        }
        let periods = (t - last)
            .as_nanos()
            .div_ceil(self.period.as_nanos().max(1));
        last + self.period * u32::try_from(periods).unwrap_or(u32::MAX)
    }

    fn flip(&mut self, f: Frame, at: Instant) {
        if let (Some(c), Some(image)) = (&self.capture, self.images.get(f.index)) {
            if c.wants(f.seq) {
                c.write(f.seq, image, self.opaque);
            }
        }
        if let Some(old) = self.front.replace(f.index) {
            self.release(old);
        }
        self.last_flip = Some(at);
        self.returns.shown(
            f.seq,
            Shown::At {
                time_ns: monotonic_ns_of(at),
                refresh_ns: u64::try_from(self.period.as_nanos()).ok(),
            },
        );
        stats::count(Counter::FramesDisplayed);
    }

    /// Gives back a frame that was never shown.
    fn discard(&self, f: Frame) {
        self.release(f.index);
        self.returns.shown(f.seq, Shown::Discarded);
    }

    /// Captures a frame the screen never showed, once its render is done.
    fn capture_late(&self, f: Frame) {
        let Some(c) = self.capture.as_ref().filter(|c| c.wants(f.seq)) else {
            return;
        };
        let Some(image) = self.images.get(f.index) else {
            return;
        };
        if bridge::wait_for_render(&image.buffer.dma_buf, None).unwrap_or(false) {
            c.write(f.seq, image, self.opaque);
        }
    }

    /// Gives image `i` back: the consumer's own reads are done (it reads
    /// only the CPU mapping of a capture, synchronously).
    fn release(&self, i: u32) {
        self.returns.release(i, None);
    }

    /// Sleeps until a present or stop rings, the dma-buf of `image` is
    /// readable, or `timeout` passes.
    fn sleep(&self, image: Option<u32>, timeout: Option<Duration>) {
        let ts = timeout.map(|t| Timespec {
            tv_sec: t.as_secs().try_into().unwrap_or(i64::MAX),
            tv_nsec: t.subsec_nanos().into(),
        });
        let wake = self.inbox.bell();
        let mut fds = [
            PollFd::from_borrowed_fd(wake, PollFlags::IN),
            PollFd::from_borrowed_fd(wake, PollFlags::empty()),
        ];
        let n = match image.and_then(|i| self.images.get(i)) {
            Some(image) => {
                fds[1] = bridge::render_done_poll(&image.buffer.dma_buf);
                2
            }
            None => 1,
        };
        // EINTR and the like only end this sleep early; the loop looks again.
        let _ = rustix::event::poll(&mut fds[..n], ts.as_ref());
        if fds[0].revents().contains(PollFlags::IN) {
            self.inbox.hush();
        }
    }
}

/// The consumer's own buffers (`SYNCFILE_WSI_HEADLESS_BUFFERS=consumer`):
/// LINEAR images in the system dma-heap, as a video encoder or a capture
/// pipeline would lend them to a producer.
struct HeapAllocator;

/// Rows start at multiples of this many bytes, as most GPUs need of a
/// LINEAR image.
const ROW_ALIGNMENT: u64 = 256;

impl Allocator for HeapAllocator {
    fn allocate(
        &self,
        format: Format,
        extent: vk::Extent2D,
        modifiers: &[u64],
    ) -> Result<Buffer, PlatformError> {
        require_linear(format, modifiers, "the consumer's own buffers")?;
        let stride = (u64::from(extent.width) * 4).next_multiple_of(ROW_ALIGNMENT);
        let size = stride * u64::from(extent.height);
        let heap = syncfile::heap::DmaHeap::open(syncfile::heap::SYSTEM)
            .map_err(|e| PlatformError::Refused(format!("the system dma-heap: {e}")))?;
        let len = usize::try_from(size).map_err(|_| PlatformError::Refused("too large".into()))?;
        let dma_buf = heap.alloc(len).map_err(|e| {
            PlatformError::Refused(format!("allocating from the system dma-heap: {e}"))
        })?;
        Ok(Buffer {
            dma_buf,
            modifier: LINEAR,
            offset: 0,
            stride,
            size,
        })
    }
}

/// The `Instant` of `CLOCK_MONOTONIC` time `ns`.
fn instant_of(ns: u64) -> Instant {
    let (now, mono) = (Instant::now(), monotonic_now_ns());
    if ns >= mono {
        now + Duration::from_nanos(ns - mono)
    } else {
        // Before this process's first `Instant`: as long ago as that.
        now.checked_sub(Duration::from_nanos(mono - ns))
            .unwrap_or(now)
    }
}

/// The `CLOCK_MONOTONIC` time of `at`, an `Instant` not in the future.
fn monotonic_ns_of(at: Instant) -> u64 {
    let ago = u64::try_from(at.elapsed().as_nanos()).unwrap_or(u64::MAX);
    monotonic_now_ns().saturating_sub(ago)
}

/// A headless surface for `vkCreateHeadlessSurfaceEXT`.
pub fn surface() -> Arc<dyn PlatformSurface> {
    Arc::new(HeadlessSurface)
}
