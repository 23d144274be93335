//! One swapchain on an X11 window: a DRI3 pixmap per image, a
//! `PresentPixmap` per frame, on a connection of the swapchain's own.
//!
//! Every request that names the application's window (`PresentPixmap`,
//! and the `CreateFence` on it) is made on the thread that calls
//! `vkQueuePresentKHR`, inside it. The layer's thread reads the
//! connection's events — `IdleNotify` gives an image back,
//! `CompleteNotify` says when (and how: copy, flip) a frame was shown,
//! `ConfigureNotify` a resize — and bridges fences.
//!
//! Sync. The image's dma-buf carries the render's write fence. A server
//! that flips waits for it (the kernel's page flip does); a server that
//! copies may not: glamor on llvmpipe reads the buffer at once. Which one
//! a frame gets is only known afterwards, so with `SYNCFILE_WSI_SYNC`
//! `auto` or `explicit` a frame whose dma-buf still has a pending writer
//! goes with a SYNC fence as `PresentPixmap`'s wait fence, and the layer's
//! thread triggers the fence once the dma-buf's writers are done (it polls
//! the dma-buf, as it polls the connection): the server executes the
//! present only then, and the application's thread never waits. A frame
//! whose render is complete goes without a fence, and so does one on a
//! window the size of its screen, which the server flips: Xorg 21.1's
//! Present spins forever (the server stops answering) when a flip waits
//! for a wait fence (seen in the test guest), and the page flip waits for
//! the implicit fence anyway. With
//! `implicit` no fence ever goes: right where the server waits for
//! implicit fences (flips; GPU servers whose GL waits for them). DRI3 1.4
//! syncobjs would let the server wait itself; the servers the layer is
//! tested on offer none, so it uses SYNC fences there too.
//!
//! Modes. The server takes a target MSC in the past to mean "now", and a
//! frame for the same MSC as one it holds replaces that one: two FIFO
//! frames sent within one refresh with stale targets would replace each
//! other. So a FIFO frame is sent once the server has completed the one
//! before, for the MSC after that one's, waiting inside
//! `vkQueuePresentKHR` (as the Wayland platform waits for frame callbacks)
//! but never longer than [`FIFO_WAIT`]. FIFO_RELAXED does the same with
//! `PresentOptionAsync`, so that a late frame is shown at once; MAILBOX
//! frames target the next MSC and replace each other; IMMEDIATE ones are
//! async.

use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ash::vk;
use rustix::event::{PollFd, PollFlags};
use syncfile::{Access, SyncFile};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ConnectionExt as _, Window};
use x11rb::protocol::{dri3, ge, present, sync, Event};

use super::server::{self, Conn, Geometry, Offer};
use super::X11Error;
use crate::platform::worker::{Inbox, Worker};
use crate::plumbing::guard::try_guard;
use crate::plumbing::settings::SyncMode;
use crate::plumbing::stats::{self, Counter, Wait};
use crate::wsi::platform::{
    ConsumerImages, Frame, PlatformError, Presenter, PresenterConfig, Returns, Shown,
};

/// How long the layer's thread sleeps when nothing happens; a stop or a
/// fence to bridge rings it awake.
const IDLE: Duration = Duration::from_secs(1);

/// The longest a FIFO present waits for the frame before it to complete.
pub const FIFO_WAIT: Duration = Duration::from_secs(1);

/// `PresentWindowDestroyed` in a `ConfigureNotify`'s pixmap flags.
const WINDOW_DESTROYED: u32 = 1;

/// A fence for the thread to trigger once image `index`'s writers are done.
struct Bridge {
    fence: sync::Fence,
    index: u32,
}

pub struct X11Presenter {
    shared: Arc<Shared>,
    worker: Worker<Bridge>,
    /// Whether frames with pending renders get a wait fence.
    fenced: bool,
}

/// What both threads use: the connection, and what its events said.
struct Shared {
    conn: Conn,
    window: Window,
    images: ConsumerImages,
    returns: Arc<dyn Returns>,
    extent: (u16, u16),
    /// The size of the window's screen: a window of that size is flipped.
    screen: (u16, u16),
    depth: u8,
    state: Mutex<State>,
    /// Notified when a frame completes or the connection fails.
    changed: Condvar,
    /// Held while events are read and handled, so they are handled in
    /// the order they came, whichever thread reads them.
    events: Mutex<()>,
}

#[derive(Default)]
struct State {
    /// Each image's pixmap, once made.
    pixmaps: Vec<Option<u32>>,
    /// Frames given to the server and not completed: serial, frame number,
    /// wait fence.
    pending: VecDeque<(u32, u64, Option<sync::Fence>)>,
    next_serial: u32,
    /// The newest MSC the server reported, and the last FIFO target.
    msc: u64,
    target: u64,
    /// Whether `FIFO_WAIT` has run out once (logged once per swapchain).
    fifo_timed_out: bool,
    /// Whether a frame of this swapchain was flipped.
    flipped: bool,
    /// Whether the window is the size of its screen.
    full_screen: bool,
    /// Why the connection failed, once it has.
    lost: Option<String>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads and handles every event that has come.
    fn drain(&self) -> Result<(), X11Error> {
        let _order = self.events.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(event) = self.conn.poll_for_event()? {
            self.handle(event)?;
        }
        Ok(())
    }

    fn handle(&self, event: Event) -> Result<(), X11Error> {
        match event {
            Event::PresentCompleteNotify(e) if e.kind == present::CompleteKind::PIXMAP => {
                self.completed(e)
            }
            Event::PresentCompleteNotify(e) => {
                let mut s = self.lock();
                s.msc = s.msc.max(e.msc);
            }
            Event::PresentIdleNotify(e) => {
                let index = self
                    .lock()
                    .pixmaps
                    .iter()
                    .position(|p| *p == Some(e.pixmap));
                if let Some(i) = index {
                    self.returns.release(i as u32, None);
                }
            }
            Event::PresentConfigureNotify(e) => {
                if e.pixmap_flags & WINDOW_DESTROYED != 0 {
                    return Err(X11Error::Unsupported("the window was destroyed".into()));
                }
                self.lock().full_screen = (e.width, e.height) == self.screen;
                if (e.width, e.height) != self.extent
                    && self.returns.status() != vk::Result::ERROR_OUT_OF_DATE_KHR
                {
                    tracing::info!(
                        "the X11 window is {}x{} now, the swapchain {}x{}: VK_ERROR_OUT_OF_DATE_KHR",
                        e.width,
                        e.height,
                        self.extent.0,
                        self.extent.1
                    );
                    self.returns.set_status(vk::Result::ERROR_OUT_OF_DATE_KHR);
                }
            }
            Event::Error(e) if server::window_gone(&e) => return Err(X11Error::Refused(e)),
            Event::Error(e) => {
                tracing::error!("the X server refused a request of the layer's: {e:?}; the swapchain is out of date");
                self.returns.set_status(vk::Result::ERROR_OUT_OF_DATE_KHR);
            }
            _ => {}
        }
        Ok(())
    }

    fn completed(&self, e: present::CompleteNotifyEvent) {
        let mut s = self.lock();
        s.msc = s.msc.max(e.msc);
        let Some(at) = s.pending.iter().position(|p| p.0 == e.serial) else {
            return;
        };
        let (_, seq, fence) = s.pending.remove(at).unwrap_or_default();
        if let Some(f) = fence {
            let _ = sync::destroy_fence(&self.conn, f);
        }
        let shown = match e.mode {
            present::CompleteMode::SKIP => {
                stats::count(Counter::X11Skipped);
                Shown::Discarded
            }
            mode => {
                let flip = mode == present::CompleteMode::FLIP;
                stats::count(if flip {
                    Counter::X11Flips
                } else {
                    Counter::X11Copies
                });
                let stopped_flipping = !flip && s.flipped;
                s.flipped |= flip;
                if stopped_flipping && self.returns.status() == vk::Result::SUCCESS {
                    tracing::info!("the X server copies this swapchain's frames, which it flipped before: VK_SUBOPTIMAL_KHR");
                    self.returns.set_status(vk::Result::SUBOPTIMAL_KHR);
                    stats::count(Counter::X11Suboptimal);
                }
                Shown::At {
                    time_ns: e.ust.saturating_mul(1000),
                    refresh_ns: None,
                }
            }
        };
        drop(s);
        self.changed.notify_all();
        self.returns.shown(seq, shown);
    }

    /// Image `index`'s pixmap, made now if its memory was bound late.
    fn pixmap(&self, index: u32) -> Result<u32, X11Error> {
        if let Some(Some(p)) = self.lock().pixmaps.get(index as usize) {
            return Ok(*p);
        }
        let image = self
            .images
            .get(index)
            .ok_or_else(|| X11Error::Unsupported(format!("image {index} has no memory")))?;
        let b = &image.buffer;
        let layout = |v: u64| {
            u32::try_from(v).map_err(|_| X11Error::Unsupported("the image's layout".into()))
        };
        let size =
            |v: u32| u16::try_from(v).map_err(|_| X11Error::Unsupported("the image's size".into()));
        let fd =
            b.dma_buf.as_fd().try_clone_to_owned().map_err(|e| {
                X11Error::Unsupported(format!("duplicating the image's dma-buf: {e}"))
            })?;
        let pixmap = self.conn.generate_id()?;
        dri3::pixmap_from_buffers(
            &self.conn,
            pixmap,
            self.window,
            size(image.extent.width)?,
            size(image.extent.height)?,
            layout(b.stride)?,
            layout(b.offset)?,
            0,
            0,
            0,
            0,
            0,
            0,
            self.depth,
            32,
            b.modifier,
            vec![fd],
        )?;
        let mut s = self.lock();
        if let Some(slot) = s.pixmaps.get_mut(index as usize) {
            *slot = Some(pixmap);
        }
        stats::count(Counter::X11Pixmaps);
        Ok(pixmap)
    }
}

impl X11Presenter {
    /// Starts presenting a swapchain on `window` (of geometry `g` when
    /// the swapchain was made) over `conn`.
    pub fn start(
        conn: Conn,
        window: Window,
        g: Geometry,
        offer: Offer,
        config: PresenterConfig<'_>,
    ) -> Result<Self, PlatformError> {
        let extent = config
            .images
            .get(0)
            .map(|i| (i.extent.width as u16, i.extent.height as u16))
            .unwrap_or((g.width, g.height));
        let fenced = match config.settings.sync {
            SyncMode::Auto | SyncMode::Explicit => true,
            SyncMode::Implicit | SyncMode::Cpu => false,
        };
        if config.settings.sync == SyncMode::Explicit && offer.syncobj() {
            tracing::warn!("SYNCFILE_WSI_SYNC=explicit: the layer sends no DRI3 1.4 syncobjs; pending renders go with SYNC fences its thread triggers");
        }
        let screen = conn
            .setup()
            .roots
            .iter()
            .find(|r| r.root == g.root)
            .map_or((0, 0), |r| (r.width_in_pixels, r.height_in_pixels));
        let shared = Arc::new(Shared {
            conn,
            window,
            images: config.images.clone(),
            returns: config.returns,
            extent,
            screen,
            depth: g.depth,
            state: Mutex::new(State {
                pixmaps: vec![None; config.images.len()],
                full_screen: (g.width, g.height) == screen,
                ..State::default()
            }),
            changed: Condvar::new(),
            events: Mutex::new(()),
        });
        shared.begin()?;
        for i in 0..config.images.len() as u32 {
            if config.images.get(i).is_some() {
                shared.pixmap(i)?;
            }
        }
        // A buffer the server refuses is an error seen here, not at the
        // first present.
        server::sync_with(&shared.conn)?;
        shared.drain()?;
        tracing::info!(
            "X11 swapchain: {} DRI3 pixmaps, {:?}, {}",
            config.images.len(),
            config.present_mode,
            if fenced {
                "pending renders wait behind SYNC fences"
            } else {
                "implicit sync only"
            }
        );
        let thread_shared = shared.clone();
        let worker = Worker::spawn("x11", config.images.len().max(1), move |inbox| {
            serve(&thread_shared, inbox)
        })?;
        Ok(Self {
            shared,
            worker,
            fenced,
        })
    }
}

impl Shared {
    /// Selects the swapchain's events and learns the window's MSC, so that
    /// the first FIFO target is in the future.
    fn begin(&self) -> Result<(), X11Error> {
        ge::query_version(&self.conn, 1, 0)?.reply()?;
        let eid = self.conn.generate_id()?;
        present::select_input(
            &self.conn,
            eid,
            self.window,
            present::EventMask::COMPLETE_NOTIFY
                | present::EventMask::IDLE_NOTIFY
                | present::EventMask::CONFIGURE_NOTIFY,
        )?;
        present::notify_msc(&self.conn, self.window, 0, 0, 0, 0)?;
        self.conn.flush()?;
        loop {
            // The stream's deadline bounds this wait.
            match self.conn.wait_for_event()? {
                Event::PresentCompleteNotify(e) if e.kind == present::CompleteKind::NOTIFY_MSC => {
                    self.lock().msc = e.msc;
                    return Ok(());
                }
                Event::Error(e) => return Err(X11Error::Refused(e)),
                _ => {}
            }
        }
    }

    /// FIFO: waits until the server has completed every frame sent, or
    /// `FIFO_WAIT` passes; returns the state, locked.
    fn wait_for_completion(&self) -> MutexGuard<'_, State> {
        let start = Instant::now();
        let deadline = start + FIFO_WAIT;
        let mut s = self.lock();
        let mut waited = false;
        while s.lost.is_none() && !s.pending.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                if !s.fifo_timed_out {
                    s.fifo_timed_out = true;
                    tracing::warn!("the X server completed no frame within {FIFO_WAIT:?} (an unmapped window, a render that does not finish?): FIFO sends without waiting when it must (logged once per swapchain)");
                }
                break;
            }
            waited = true;
            s = self
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if waited {
            stats::waited(Wait::PresentComplete, start.elapsed());
        }
        s
    }

    /// Sends frame `frame` (with wait fence `fence`, if any).
    fn present(&self, frame: Frame, fence: Option<sync::Fence>) -> Result<(), X11Error> {
        let pixmap = self.pixmap(frame.index)?;
        let fifo = matches!(
            frame.mode,
            vk::PresentModeKHR::FIFO | vk::PresentModeKHR::FIFO_RELAXED
        );
        let mut s = if fifo {
            self.wait_for_completion()
        } else {
            self.lock()
        };
        let serial = s.next_serial;
        s.next_serial = s.next_serial.wrapping_add(1);
        let (options, target) = schedule(frame.mode, s.msc, s.target);
        if target != 0 {
            s.target = target;
        }
        s.pending.push_back((serial, frame.seq, fence));
        drop(s);
        if let Some(f) = fence {
            sync::create_fence(&self.conn, self.window, f, false)?;
        }
        present::pixmap(
            &self.conn,
            self.window,
            pixmap,
            serial,
            0,
            0,
            0,
            0,
            0,
            fence.unwrap_or(0),
            0,
            // Not PresentOptionSuboptimal: the server would report copies
            // that buffers of other modifiers could flip, and dumb
            // buffers have one.
            u32::from(options),
            target,
            0,
            0,
            &[],
        )?;
        self.conn.flush()?;
        Ok(())
    }

    fn lost(&self, why: String) {
        tracing::error!("the X11 surface is lost: {why}");
        self.lock().lost = Some(why);
        self.changed.notify_all();
        self.returns.set_status(vk::Result::ERROR_SURFACE_LOST_KHR);
        stats::count(Counter::X11Lost);
    }
}

/// A frame's Present options and target MSC in `mode`, with `msc` the
/// newest MSC the server reported and `last` the last FIFO target: FIFO
/// frames the MSC after both, MAILBOX and IMMEDIATE (async) frames the
/// next one there is (0: "now").
fn schedule(mode: vk::PresentModeKHR, msc: u64, last: u64) -> (present::Option, u64) {
    let next = last.max(msc).saturating_add(1);
    match mode {
        vk::PresentModeKHR::FIFO => (present::Option::NONE, next),
        vk::PresentModeKHR::FIFO_RELAXED => (present::Option::ASYNC, next),
        vk::PresentModeKHR::IMMEDIATE => (present::Option::ASYNC, 0),
        _ => (present::Option::NONE, 0),
    }
}

impl Presenter for X11Presenter {
    fn present(
        &self,
        frame: Frame,
        _render: Option<&SyncFile>,
        _damage: Option<&[vk::RectLayerKHR]>,
    ) -> vk::Result {
        if self.shared.lock().lost.is_some() {
            return vk::Result::ERROR_SURFACE_LOST_KHR;
        }
        // The render fence is in the dma-buf, with any other writer's.
        let pending = self.fenced
            && !self.shared.lock().full_screen
            && self
                .shared
                .images
                .get(frame.index)
                .is_some_and(|i| !i.buffer.dma_buf.is_ready(Access::Read).unwrap_or(false));
        let sent = (|| {
            let fence = if pending {
                Some(self.shared.conn.generate_id()?)
            } else {
                None
            };
            self.shared.present(frame, fence)?;
            if let Some(fence) = fence {
                if !self.worker.send(Bridge {
                    fence,
                    index: frame.index,
                }) {
                    return Err(X11Error::Unsupported("the X11 thread has stopped".into()));
                }
            }
            self.shared.drain()
        })();
        match sent {
            Ok(()) => {
                stats::count(if pending {
                    Counter::X11PresentsFenced
                } else {
                    Counter::X11PresentsUnfenced
                });
                stats::count(Counter::FramesDisplayed);
                vk::Result::SUCCESS
            }
            Err(e) => {
                let why = format!("vkQueuePresentKHR: {e}");
                if PlatformError::from(e).result() == vk::Result::ERROR_SURFACE_LOST_KHR {
                    self.shared.lost(why);
                } else {
                    tracing::error!("{why}");
                }
                vk::Result::ERROR_SURFACE_LOST_KHR
            }
        }
    }

    fn uses_application_objects(&self) -> bool {
        true
    }

    fn stop(&self) {
        self.worker.stop();
        let s = &self.shared;
        let pixmaps: Vec<u32> = s
            .lock()
            .pixmaps
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for p in pixmaps {
            let _ = s.conn.free_pixmap(p);
        }
        for (_, _, fence) in s.lock().pending.drain(..) {
            if let Some(f) = fence {
                let _ = sync::destroy_fence(&s.conn, f);
            }
        }
        let _ = s.conn.flush();
        // Every image goes back: a retired swapchain hands none out again.
        for i in 0..s.images.len() as u32 {
            s.returns.release(i, None);
        }
    }
}

impl Drop for X11Presenter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The layer's thread: triggers the wait fences of frames whose dma-bufs'
/// writers are done, in order, and handles the connection's events.
fn serve(shared: &Shared, inbox: Inbox<Bridge>) {
    let served = try_guard("the X11 thread", "its surface is lost", || {
        bridge_and_read(shared, &inbox)
    });
    let why = match served {
        Some(Ok(())) => return,
        Some(Err(e)) => e.to_string(),
        None => "an internal error".to_owned(),
    };
    shared.lost(why);
    // Lost: every image goes back, so that no acquire waits for it.
    for i in 0..shared.images.len() as u32 {
        shared.returns.release(i, None);
    }
}

fn bridge_and_read(shared: &Shared, inbox: &Inbox<Bridge>) -> Result<(), X11Error> {
    let mut waiting: VecDeque<Bridge> = VecDeque::new();
    while !inbox.stopping() {
        while let Ok(Some(b)) = inbox.next() {
            waiting.push_back(b);
        }
        let mut triggered = false;
        while let Some(b) = waiting.front() {
            let ready = shared
                .images
                .get(b.index)
                .is_none_or(|i| i.buffer.dma_buf.is_ready(Access::Read).unwrap_or(true));
            if !ready {
                break;
            }
            tracing::debug!(
                "image {}'s writers are done: triggering its wait fence",
                b.index
            );
            sync::trigger_fence(&shared.conn, b.fence)?;
            triggered = true;
            waiting.pop_front();
        }
        if triggered {
            shared.conn.flush()?;
        }
        shared.drain()?;
        let socket = shared.conn.stream().as_fd();
        let bell = inbox.bell();
        let first = waiting
            .front()
            .and_then(|b| shared.images.get(b.index))
            .map(|i| i.buffer.dma_buf.as_fd());
        let mut fds = vec![
            PollFd::new(&bell, PollFlags::IN),
            PollFd::new(&socket, PollFlags::IN),
        ];
        if let Some(fd) = &first {
            fds.push(PollFd::new(fd, PollFlags::IN));
        }
        let idle = rustix::event::Timespec::try_from(IDLE).ok();
        match rustix::event::poll(&mut fds, idle.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(X11Error::Unsupported(format!("poll: {e}"))),
        }
        inbox.hush();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_frames_target_the_msc_after_the_last_seen_and_the_last_targeted() {
        let fifo = vk::PresentModeKHR::FIFO;
        assert_eq!(schedule(fifo, 100, 0), (present::Option::NONE, 101));
        assert_eq!(schedule(fifo, 100, 104), (present::Option::NONE, 105));
        assert_eq!(
            schedule(vk::PresentModeKHR::FIFO_RELAXED, 100, 0),
            (present::Option::ASYNC, 101)
        );
    }

    #[test]
    fn mailbox_and_immediate_frames_target_now() {
        assert_eq!(
            schedule(vk::PresentModeKHR::MAILBOX, 100, 104),
            (present::Option::NONE, 0)
        );
        assert_eq!(
            schedule(vk::PresentModeKHR::IMMEDIATE, 100, 104),
            (present::Option::ASYNC, 0)
        );
    }
}
