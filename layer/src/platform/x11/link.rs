//! An X11 swapchain's link to the server: the connection of its own, the
//! window's pixmaps, the frames sent and not completed, and what the
//! connection's events said. Both the application's thread (presents) and
//! the swapchain's thread (events, fences) use it.

use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ash::vk;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ConnectionExt as _, Window};
use x11rb::protocol::{dri3, ge, present, sync, Event};

use super::server::{self, Conn, Geometry};
use super::X11Error;
use crate::plumbing::stats::{self, Counter, Wait};
use crate::wsi::platform::{ConsumerImages, Frame, PresenterConfig, Returns, Shown};

/// The longest a FIFO present waits for the frame before it to complete.
pub(super) const FIFO_WAIT: Duration = Duration::from_secs(1);

/// `PresentWindowDestroyed` in a `ConfigureNotify`'s pixmap flags.
const WINDOW_DESTROYED: u32 = 1;

/// What both threads use: the connection, and what its events said.
pub(super) struct Shared {
    pub(super) conn: Conn,
    window: Window,
    pub(super) images: ConsumerImages,
    pub(super) returns: Arc<dyn Returns>,
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
    pub(super) fn drain(&self) -> Result<(), X11Error> {
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

impl Shared {
    /// The link of a swapchain on `window` (of geometry `g` when the
    /// swapchain was made) over `conn`: its events selected, the window's
    /// MSC learnt, a pixmap for every image whose memory is bound.
    pub(super) fn start(
        conn: Conn,
        window: Window,
        g: Geometry,
        config: &PresenterConfig<'_>,
    ) -> Result<Arc<Self>, X11Error> {
        let extent = config
            .images
            .get(0)
            .map(|i| (i.extent.width as u16, i.extent.height as u16))
            .unwrap_or((g.width, g.height));
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
            returns: config.returns.clone(),
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
        Ok(shared)
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
    pub(super) fn present(&self, frame: Frame, fence: Option<sync::Fence>) -> Result<(), X11Error> {
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

    /// Whether the connection failed, and whether the window is the size
    /// of its screen.
    pub(super) fn lost_and_full_screen(&self) -> (bool, bool) {
        let s = self.lock();
        (s.lost.is_some(), s.full_screen)
    }

    /// A new X resource id.
    pub(super) fn new_id(&self) -> Result<u32, X11Error> {
        Ok(self.conn.generate_id()?)
    }

    /// Frees the pixmaps and the wait fences of frames not completed.
    pub(super) fn free(&self) {
        let pixmaps: Vec<u32> = self
            .lock()
            .pixmaps
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for p in pixmaps {
            let _ = self.conn.free_pixmap(p);
        }
        for (_, _, fence) in self.lock().pending.drain(..) {
            if let Some(f) = fence {
                let _ = sync::destroy_fence(&self.conn, f);
            }
        }
        let _ = self.conn.flush();
    }

    pub(super) fn lost(&self, why: String) {
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
