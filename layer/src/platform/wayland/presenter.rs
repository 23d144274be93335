//! One swapchain on a Wayland surface. Every request on the application's
//! `wl_surface` (attach, damage, acquire fence, release object, frame
//! callback, commit) is made on the thread that calls `vkQueuePresentKHR`,
//! inside it, as Mesa's Wayland WSI makes them: toolkits commit the same
//! surface from the application's side, and a commit of theirs between the
//! layer's requests would apply half a frame (or, under explicit sync, be a
//! protocol error). The layer's own thread only dispatches its event queue
//! and waits: it hands released images back (with their release fences),
//! counts frame callbacks and weighs dma-buf feedback.
//!
//! Each frame is presented in its own mode (the application may switch
//! per present). A FIFO frame is committed only once the compositor has
//! shown the one before (its frame callback), waiting inside
//! `vkQueuePresentKHR` as Mesa does — but never longer than [`FIFO_WAIT`]:
//! a compositor that stops sending frame callbacks (a hidden surface)
//! slows FIFO down instead of freezing it. MAILBOX and IMMEDIATE frames are
//! committed at once; the compositor keeps the newest and releases the
//! ones it replaces. Every commit asks when it was shown (see `timing`),
//! which the event thread reports to the core.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ash::vk;
use rustix::event::EventfdFlags;
use std::os::fd::{AsFd, OwnedFd};
use syncfile::SyncFile;
use wayland_client::protocol::wl_buffer::WlBuffer;

use super::client::Events;
use super::formats::{self, Fourcc, Tranches};
use super::link::Commit;
use super::{BufferDesc, Client, Plane, Release, SurfaceLink, WaylandError};
use crate::plumbing::guard::try_guard;
use crate::plumbing::stats::{self, Counter, Wait};
use crate::wsi::platform::{
    ConsumerImage, ConsumerImages, Frame, PlatformError, Presenter, Returns,
};

/// How long the event thread sleeps when nothing happens; a stop rings
/// it awake.
const IDLE: Duration = Duration::from_secs(1);

/// The longest FIFO waits for the previous frame's callback.
pub const FIFO_WAIT: Duration = Duration::from_secs(1);

pub struct WaylandPresenter {
    /// The application thread's side: requests on its surface.
    requests: Mutex<Requests>,
    shared: Arc<Shared>,
    /// The event thread, which gives its queue back when it ends.
    thread: Mutex<Option<JoinHandle<Events>>>,
    /// The process that started the thread (a forked child has none).
    owner: rustix::process::Pid,
}

/// What presents use, on the application's thread.
struct Requests {
    client: Client,
    link: Option<SurfaceLink>,
    /// Each image's buffer, once its memory is bound.
    buffers: Vec<Option<WlBuffer>>,
    images: ConsumerImages,
    format: Fourcc,
    /// Frame callbacks asked for so far.
    frames_asked: u64,
    /// Whether `FIFO_WAIT` has run out once (logged once per swapchain).
    fifo_timed_out: bool,
    /// Whether a desired present time was given, and not kept, once.
    timing_ignored: bool,
}

/// What the event thread tells the application's thread.
struct Shared {
    state: Mutex<Seen>,
    changed: Condvar,
    /// Rung to stop the event thread.
    bell: OwnedFd,
    stop: AtomicBool,
}

#[derive(Default)]
struct Seen {
    frames_done: u64,
    /// Why the connection failed, once it has.
    lost: Option<String>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Seen> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl WaylandPresenter {
    /// Starts presenting a swapchain of `images` (all of DRM format
    /// `format`), whose `wl_buffer`s are `buffers` for those bound so far,
    /// on `link`; the event thread takes `events`.
    pub fn start(
        client: Client,
        events: Events,
        link: SurfaceLink,
        (buffers, images): (Vec<Option<WlBuffer>>, ConsumerImages),
        format: Fourcc,
        returns: Arc<dyn Returns>,
    ) -> Result<Self, PlatformError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(Seen::default()),
            changed: Condvar::new(),
            bell: rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?,
            stop: AtomicBool::new(false),
        });
        let dispatcher = Dispatcher {
            events,
            shared: shared.clone(),
            returns,
            explicit: link.explicit(),
            format,
            images: buffers.len() as u32,
            preferred: None,
        };
        let thread = std::thread::Builder::new()
            .name("sfwsi-wayland".into())
            .spawn(move || dispatcher.run())
            .map_err(|e| PlatformError::Thread("Wayland event", e))?;
        Ok(Self {
            requests: Mutex::new(Requests {
                client,
                link: Some(link),
                buffers,
                images,
                format,
                frames_asked: 0,
                fifo_timed_out: false,
                timing_ignored: false,
            }),
            shared,
            thread: Mutex::new(Some(thread)),
            owner: rustix::process::getpid(),
        })
    }

    /// FIFO: waits until the compositor has shown the frame committed
    /// last, or `FIFO_WAIT` passes.
    fn wait_for_frame(&self, requests: &mut Requests) -> Result<(), String> {
        let deadline = Instant::now() + FIFO_WAIT;
        let start = Instant::now();
        let mut seen = self.shared.lock();
        let mut waited = false;
        while seen.lost.is_none() && seen.frames_done < requests.frames_asked {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                if !requests.fifo_timed_out {
                    requests.fifo_timed_out = true;
                    tracing::warn!(
                        "the compositor sent no frame callback within {FIFO_WAIT:?} (a hidden surface?): FIFO commits without one from now on when it must (logged once per swapchain)"
                    );
                }
                stats::count(Counter::WaylandFrameTimeouts);
                break;
            }
            waited = true;
            seen = self
                .shared
                .changed
                .wait_timeout(seen, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if waited {
            stats::waited(Wait::FrameCallback, start.elapsed());
        }
        match &seen.lost {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }
}

impl Requests {
    /// Makes image `index`'s buffer if it has none (its memory was bound
    /// at its first acquire, after the swapchain was made).
    fn make_buffer(&mut self, index: u32) -> Result<(), vk::Result> {
        let slot = self
            .buffers
            .get_mut(index as usize)
            .ok_or(vk::Result::ERROR_OUT_OF_DATE_KHR)?;
        if slot.is_none() {
            let image = self
                .images
                .get(index)
                .ok_or(vk::Result::ERROR_OUT_OF_DATE_KHR)?;
            let buffer = wl_buffer(&mut self.client, image, self.format, index).map_err(|e| {
                tracing::error!("vkQueuePresentKHR: the image's wl_buffer: {e}");
                vk::Result::ERROR_SURFACE_LOST_KHR
            })?;
            *slot = Some(buffer);
        }
        Ok(())
    }
}

/// The `wl_buffer` of swapchain image `index`, in DRM format `format`.
pub fn wl_buffer(
    client: &mut Client,
    image: &ConsumerImage,
    format: Fourcc,
    index: u32,
) -> Result<WlBuffer, PlatformError> {
    let b = &image.buffer;
    let desc = BufferDesc {
        width: image.extent.width,
        height: image.extent.height,
        format,
        modifier: b.modifier,
        planes: vec![Plane {
            fd: b.dma_buf.as_fd(),
            offset: b.offset.try_into().map_err(|_| WaylandError::Layout)?,
            stride: b.stride.try_into().map_err(|_| WaylandError::Layout)?,
        }],
    };
    Ok(client.create_buffer(&desc, index)?)
}

impl Presenter for WaylandPresenter {
    fn present(
        &self,
        frame: Frame,
        render: Option<&SyncFile>,
        damage: Option<&[vk::RectLayerKHR]>,
    ) -> vk::Result {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let fifo = frame.mode == vk::PresentModeKHR::FIFO;
        let ready = if fifo {
            self.wait_for_frame(&mut requests)
        } else {
            self.shared.lock().lost.clone().map_or(Ok(()), Err)
        };
        if ready.is_err() {
            return vk::Result::ERROR_SURFACE_LOST_KHR;
        }
        if frame.not_before_ns.is_some() && !requests.timing_ignored {
            requests.timing_ignored = true;
            tracing::info!("the compositor offers no wp_commit_timing_v1: desired present times are not kept (the past timings say when frames were shown); logged once per swapchain");
        }
        if let Err(r) = requests.make_buffer(frame.index) {
            return r;
        }
        let Some(link) = &requests.link else {
            return vk::Result::ERROR_OUT_OF_DATE_KHR;
        };
        let Some(Some(buffer)) = requests.buffers.get(frame.index as usize) else {
            return vk::Result::ERROR_OUT_OF_DATE_KHR;
        };
        let explicit = link.explicit();
        let commit = Commit {
            buffer,
            image: frame.index,
            acquire: if explicit { render } else { None },
            seq: frame.seq,
            frame_callback: fifo,
            damage,
        };
        let asks = commit.asks_frame_callback(&requests.client);
        if let Err(e) = link.commit(&requests.client, &commit) {
            tracing::error!("vkQueuePresentKHR: the Wayland surface is lost: {e}");
            return vk::Result::ERROR_SURFACE_LOST_KHR;
        }
        if asks {
            requests.frames_asked += 1;
        }
        stats::count(if explicit {
            Counter::WaylandCommitsExplicit
        } else {
            Counter::WaylandCommitsImplicit
        });
        stats::count(Counter::FramesDisplayed);
        vk::Result::SUCCESS
    }

    fn uses_application_objects(&self) -> bool {
        true
    }

    fn carries_render_fence(&self) -> bool {
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        requests.link.as_ref().is_some_and(|link| link.explicit())
    }

    fn stop(&self) {
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(thread) = thread else {
            return;
        };
        if rustix::process::getpid() != self.owner {
            // A forked child: the thread and the connection are the parent's.
            std::mem::forget(thread);
            return;
        }
        self.shared.stop.store(true, Ordering::Release);
        let _ = rustix::io::write(&self.shared.bell, &1u64.to_ne_bytes());
        // The thread catches its own panics; without its queue back, the
        // requests below still free the compositor's objects.
        let events = thread.join().ok();
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        for b in requests.buffers.drain(..).flatten() {
            b.destroy();
        }
        requests.link = None;
        let _ = requests.client.flush();
        drop(events);
    }
}

impl Drop for WaylandPresenter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The event thread: dispatches the layer's queue and acts on what comes.
struct Dispatcher {
    events: Events,
    shared: Arc<Shared>,
    returns: Arc<dyn Returns>,
    explicit: bool,
    format: Fourcc,
    images: u32,
    /// The modifiers the surface's first dma-buf feedback preferred for
    /// `format`, once it came.
    preferred: Option<Vec<u64>>,
}

impl Dispatcher {
    fn run(mut self) -> Events {
        let served = try_guard("the Wayland event thread", "its surface is lost", || {
            self.serve()
        });
        match served {
            Some(Ok(())) => {}
            Some(Err(e)) => self.lose(e.to_string()),
            None => self.lose("an internal error".to_owned()),
        }
        // Stopping or lost: every image goes back (a retired or lost
        // swapchain hands none out again).
        for i in 0..self.images {
            self.returns.release(i, None);
        }
        self.events
    }

    /// The surface is lost for good: presents and acquires answer
    /// `VK_ERROR_SURFACE_LOST_KHR` from now on.
    fn lose(&self, why: String) {
        if self.shared.lock().lost.is_some() {
            return;
        }
        tracing::error!("the Wayland surface is lost: {why}");
        self.shared.lock().lost = Some(why);
        self.shared.changed.notify_all();
        self.returns.set_status(vk::Result::ERROR_SURFACE_LOST_KHR);
        stats::count(Counter::WaylandLost);
    }

    fn serve(&mut self) -> Result<(), WaylandError> {
        while !self.shared.stop.load(Ordering::Acquire) {
            self.events.dispatch(IDLE, Some(self.shared.bell.as_fd()))?;
            let mut buf = [0u8; 8];
            // Nothing to read is fine: the eventfd is non-blocking.
            let _ = rustix::io::read(&self.shared.bell, &mut buf);
            self.handle_events();
        }
        Ok(())
    }

    fn handle_events(&mut self) {
        let refused = self.events.take_refused();
        if !refused.is_empty() {
            // An image made after the swapchain (deferred memory): no
            // present of it can ever be shown, and no other WSI can take
            // this surface over now.
            return self.lose(format!("the compositor refused the dma-buf of image {refused:?} (zwp_linux_buffer_params_v1.failed)"));
        }
        if let Some(tranches) = self.events.take_surface_feedback() {
            self.take_feedback(&tranches);
        }
        let frames = self.events.frames_done();
        let mut seen = self.shared.lock();
        if frames > seen.frames_done {
            seen.frames_done = frames;
            self.shared.changed.notify_all();
        }
        drop(seen);
        for (seq, shown) in self.events.take_presented() {
            self.returns.shown(seq, shown);
        }
        for (i, release) in self.events.take_released() {
            // With explicit sync the release object speaks for the commit;
            // weston sends wl_buffer.release as well, which then says less.
            if self.explicit && matches!(release, Release::Buffer) {
                continue;
            }
            self.returns.release(i, release.fence());
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
            Some(first) if *first != now && self.returns.status() == vk::Result::SUCCESS => {
                tracing::info!(
                    "the compositor now prefers modifiers {now:#x?} for this swapchain's format (at first {first:#x?}): VK_SUBOPTIMAL_KHR"
                );
                self.returns.set_status(vk::Result::SUBOPTIMAL_KHR);
                stats::count(Counter::WaylandSuboptimal);
            }
            Some(_) => {}
        }
    }
}
