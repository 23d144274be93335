//! The layer's own connection on the application's `wl_display`: a private
//! event queue (libwayland's `wl_event_queue` under wayland-backend's foreign
//! display), so the application's queues never see the layer's events and
//! the layer never dispatches the application's; the globals the layer
//! binds; and dispatching with a deadline.

use std::ffi::c_void;
use std::io::ErrorKind;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use wayland_backend::client::{Backend, WaylandError as Wire};
use wayland_client::protocol::wl_display::WlDisplay;
use wayland_client::{Connection, DispatchError, EventQueue, QueueHandle};
use wayland_protocols::wp::linux_dmabuf::zv1::client::{
    zwp_linux_buffer_params_v1 as params, zwp_linux_dmabuf_feedback_v1 as feedback,
    zwp_linux_dmabuf_v1 as dmabuf,
};
use wayland_protocols::wp::linux_explicit_synchronization::zv1::client::zwp_linux_explicit_synchronization_v1 as explicit;
use wayland_protocols::wp::presentation_time::client::wp_presentation::WpPresentation;

use super::feedback::Feedback;
use super::formats::{CompositorFormats, Tranches};
use super::timing::{self, PRESENTATION_VERSION};
use super::{Release, WaylandError};
use crate::wsi::platform::Shown;

mod handlers;

/// The highest `zwp_linux_dmabuf_v1` version the layer speaks: v4 brings the
/// feedback with the format table; later versions add nothing it uses.
const DMABUF_VERSION: u32 = 4;
/// v3 is the first with modifier events; older ones cannot say LINEAR.
const DMABUF_MIN_VERSION: u32 = 3;
/// v2 makes `get_release` usable.
const EXPLICIT_SYNC_VERSION: u32 = 2;
/// Announced by weston 15 and others; lavapipe cannot export DRM syncobjs,
/// so the layer only reports it.
const DRM_SYNCOBJ: &str = "wp_linux_drm_syncobj_manager_v1";

/// What the compositor offers the layer.
#[derive(Clone, Debug, Default)]
pub struct Offer {
    /// The bound `zwp_linux_dmabuf_v1` version, 0 when not offered (or too old).
    pub dmabuf_version: u32,
    /// `zwp_linux_explicit_synchronization_v1` (v2+) is bound.
    pub explicit_sync: bool,
    /// `wp_linux_drm_syncobj_manager_v1` is announced.
    pub drm_syncobj: bool,
    /// `wp_presentation` is bound.
    pub presentation: bool,
    /// The format/modifier pairs it accepts, most preferred first.
    pub formats: CompositorFormats,
}

/// A `wl_callback`'s purpose.
pub(super) enum Callback {
    /// A `wl_display.sync` of a roundtrip, by its serial.
    Sync(u64),
    /// A surface's frame callback, and the frame it reports shown when
    /// the compositor has no `wp_presentation`.
    Frame(Option<u64>),
}

/// Which dma-buf feedback a feedback object carries.
pub(super) enum FeedbackOf {
    /// The compositor's default, for any surface: the formats the layer
    /// offers.
    Default,
    /// One surface's, which may change while a swapchain presents.
    Surface,
}

/// Everything the layer's queue has received.
#[derive(Default)]
pub(super) struct State {
    globals: Vec<(u32, String, u32)>,
    synced: u64,
    /// Formats from v3 `modifier` events, or from the latest complete
    /// feedback.
    formats: CompositorFormats,
    feedback: Feedback,
    /// The default feedback's first `done`: whether its table was read.
    feedback_done: Option<std::io::Result<()>>,
    surface_feedback: Feedback,
    /// The latest complete surface feedback not yet taken.
    surface_tranches: Option<Tranches>,
    pub(super) frames_done: u64,
    pub(super) released: Vec<(u32, Release)>,
    /// `wp_presentation`'s clock (`CLOCK_MONOTONIC` until it says).
    pub(super) clock: u32,
    /// Frames reported shown or discarded, not yet taken.
    pub(super) presented: Vec<(u64, Shown)>,
    /// Images whose dma-buf the compositor refused (`failed`), not yet taken.
    pub(super) refused: Vec<u32>,
}

/// The layer's requests on the application's display: its globals and
/// what the compositor offers. Any thread may send requests; see
/// [`Events`] for what comes back.
pub struct Client {
    conn: Connection,
    qh: QueueHandle<State>,
    pub(super) dmabuf: Option<dmabuf::ZwpLinuxDmabufV1>,
    pub(super) explicit: Option<explicit::ZwpLinuxExplicitSynchronizationV1>,
    pub(super) presentation: Option<WpPresentation>,
    feedback: Option<feedback::ZwpLinuxDmabufFeedbackV1>,
    /// Every buffer's params object: kept until the client goes, because a
    /// compositor may answer `create_immed` with `failed` on it (instead of
    /// a protocol error), which a destroyed object would never hear.
    pub(super) params: Vec<params::ZwpLinuxBufferParamsV1>,
    offer: Offer,
}

/// The layer's own event queue on the application's display and what it
/// has received; one thread at a time dispatches it.
pub struct Events {
    conn: Connection,
    queue: EventQueue<State>,
    pub(super) state: State,
    /// How long any one wait on the compositor may take.
    timeout: Duration,
    roundtrips: u64,
}

fn lost(e: impl std::fmt::Display) -> WaylandError {
    WaylandError::Lost(e.to_string())
}

/// Whether the connection behind `display` has failed (a broken socket or
/// a protocol error on any of its objects): libwayland then refuses every
/// request on it for good.
///
/// # Safety
/// `display` is a live `wl_display*`.
pub unsafe fn display_failed(display: *mut c_void) -> bool {
    if display.is_null() || !wayland_sys::client::is_lib_available() {
        return false;
    }
    // SAFETY: the caller passes a live display; wl_display_get_error only
    // reads its error state, under libwayland's own lock.
    let error = unsafe {
        wayland_sys::ffi_dispatch!(
            wayland_sys::client::wayland_client_handle(),
            wl_display_get_error,
            display.cast()
        )
    };
    error != 0
}

impl Client {
    /// Connects to the compositor on the application's display: binds the
    /// globals the layer uses and learns the compositor's formats, waiting
    /// at most `timeout` for each answer.
    ///
    /// # Safety
    /// `display` is a live `wl_display*` that outlives the returned client
    /// and events (Vulkan requires it to outlive the surface).
    pub unsafe fn connect(
        display: *mut c_void,
        timeout: Duration,
    ) -> Result<(Client, Events), WaylandError> {
        if display.is_null() {
            return Err(WaylandError::BadHandle);
        }
        if !wayland_sys::client::is_lib_available() {
            return Err(WaylandError::NoLibrary);
        }
        // SAFETY: the caller guarantees a live display; the backend makes
        // its own event queue on it and never disconnects it.
        let backend = unsafe { Backend::from_foreign_display(display.cast()) };
        let conn = Connection::from_backend(backend);
        let queue = conn.new_event_queue();
        let mut client = Client {
            conn: conn.clone(),
            qh: queue.handle(),
            dmabuf: None,
            explicit: None,
            presentation: None,
            feedback: None,
            params: Vec::new(),
            offer: Offer::default(),
        };
        let mut events = Events {
            conn,
            queue,
            state: State {
                clock: timing::MONOTONIC,
                ..State::default()
            },
            timeout,
            roundtrips: 0,
        };
        client.bind_globals(&mut events)?;
        Ok((client, events))
    }

    fn bind_globals(&mut self, events: &mut Events) -> Result<(), WaylandError> {
        let qh = self.qh.clone();
        let registry = self.conn.display().get_registry(&qh, ());
        events.roundtrip()?;
        let globals = std::mem::take(&mut events.state.globals);
        for (name, interface, version) in &globals {
            match interface.as_str() {
                "zwp_linux_dmabuf_v1" if *version >= DMABUF_MIN_VERSION => {
                    let v = (*version).min(DMABUF_VERSION);
                    let d: dmabuf::ZwpLinuxDmabufV1 = registry.bind(*name, v, &qh, ());
                    if v >= 4 {
                        self.feedback = Some(d.get_default_feedback(&qh, FeedbackOf::Default));
                    }
                    self.offer.dmabuf_version = v;
                    self.dmabuf = Some(d);
                }
                "zwp_linux_explicit_synchronization_v1" if *version >= EXPLICIT_SYNC_VERSION => {
                    self.explicit = Some(registry.bind(*name, EXPLICIT_SYNC_VERSION, &qh, ()));
                    self.offer.explicit_sync = true;
                }
                "wp_presentation" => {
                    self.presentation = Some(registry.bind(*name, PRESENTATION_VERSION, &qh, ()));
                    self.offer.presentation = true;
                }
                DRM_SYNCOBJ => self.offer.drm_syncobj = true,
                _ => {}
            }
        }
        if self.dmabuf.is_none() {
            tracing::debug!("the compositor offers no zwp_linux_dmabuf_v1 of version 3 or later");
            return Ok(());
        }
        // v3 sends its modifier events right after the bind; v4's default
        // feedback ends with `done`.
        if self.feedback.is_some() {
            events.dispatch_until("the dma-buf feedback", |s| s.feedback_done.is_some())?;
            if let Some(Err(e)) = events.state.feedback_done.take() {
                return Err(WaylandError::FormatTable(e));
            }
        } else {
            events.roundtrip()?;
        }
        self.offer.formats = events.state.formats.clone();
        tracing::debug!(
            "compositor: zwp_linux_dmabuf_v1 v{} with {} format/modifier pairs, explicit sync {}, drm syncobj {}, presentation feedback {}",
            self.offer.dmabuf_version,
            self.offer.formats.len(),
            self.offer.explicit_sync,
            self.offer.drm_syncobj,
            self.offer.presentation
        );
        Ok(())
    }

    pub fn offer(&self) -> &Offer {
        &self.offer
    }

    pub(super) fn connection(&self) -> &Connection {
        &self.conn
    }

    pub(super) fn handle(&self) -> QueueHandle<State> {
        self.qh.clone()
    }

    /// Fails once the connection has failed: a protocol error (on any
    /// object, the application's included) or a broken socket.
    pub fn check(&self) -> Result<(), WaylandError> {
        check(&self.conn)
    }

    /// Sends the queued requests; a full socket buffer is not an error (the
    /// next flush or dispatch sends the rest).
    pub fn flush(&self) -> Result<(), WaylandError> {
        flush(&self.conn)
    }
}

fn check(conn: &Connection) -> Result<(), WaylandError> {
    match conn.backend().last_error() {
        Some(e) => Err(lost(e)),
        None => Ok(()),
    }
}

fn flush(conn: &Connection) -> Result<(), WaylandError> {
    match conn.flush() {
        Err(Wire::Io(e)) if e.kind() == ErrorKind::WouldBlock => Ok(()),
        r => r.map_err(lost),
    }
}

impl Events {
    /// Fails once the connection has failed, as [`Client::check`].
    pub fn check(&self) -> Result<(), WaylandError> {
        check(&self.conn)
    }

    /// Dispatches the layer's queue: the events already received, or else
    /// those that arrive within `timeout` (or until `wake` is readable).
    /// Returns how many were dispatched (0 when the time ran out or `wake`
    /// rang).
    pub fn dispatch(
        &mut self,
        timeout: Duration,
        wake: Option<BorrowedFd<'_>>,
    ) -> Result<usize, WaylandError> {
        self.check()?;
        let n = self.dispatch_pending()?;
        if n > 0 {
            return Ok(n);
        }
        flush(&self.conn)?;
        let Some(guard) = self.queue.prepare_read() else {
            // Another thread read events for this queue meanwhile.
            return self.dispatch_pending();
        };
        // Between prepare_read and read (or the guard's cancel on drop),
        // other readers of the display wait for this one: nothing here may
        // block on anything but this poll.
        let readable = {
            let fd = guard.connection_fd();
            let mut fds = [
                PollFd::new(&fd, PollFlags::IN),
                PollFd::new(&fd, PollFlags::empty()),
            ];
            let n = match wake {
                Some(w) => {
                    fds[1] = PollFd::from_borrowed_fd(w, PollFlags::IN);
                    2
                }
                None => 1,
            };
            let limit = Timespec::try_from(timeout).unwrap_or(Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            });
            match rustix::event::poll(&mut fds[..n], Some(&limit)) {
                Ok(_) => !fds[0].revents().is_empty(),
                Err(rustix::io::Errno::INTR) => false,
                Err(e) => return Err(lost(e)),
            }
        };
        if !readable {
            // Dropping the guard cancels the read, releasing other readers.
            return Ok(0);
        }
        match guard.read() {
            Ok(_) => {}
            // Another reader took the bytes: what was ours is queued.
            Err(Wire::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(lost(e)),
        }
        self.dispatch_pending()
    }

    fn dispatch_pending(&mut self) -> Result<usize, WaylandError> {
        self.queue
            .dispatch_pending(&mut self.state)
            .map_err(|e| match e {
                DispatchError::Backend(w) => lost(w),
                bad @ DispatchError::BadMessage { .. } => lost(bad),
            })
    }

    /// Dispatches until `done` holds, for at most the client's timeout.
    pub(super) fn dispatch_until(
        &mut self,
        what: &str,
        done: impl Fn(&State) -> bool,
    ) -> Result<(), WaylandError> {
        let deadline = Instant::now() + self.timeout;
        while !done(&self.state) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(
                    "the compositor did not send {what} within {:?}",
                    self.timeout
                );
                return Err(WaylandError::Timeout(self.timeout));
            }
            self.dispatch(left, None)?;
        }
        Ok(())
    }

    /// Waits until the compositor has handled every request sent so far,
    /// dispatching what it answered meanwhile.
    pub fn roundtrip(&mut self) -> Result<(), WaylandError> {
        self.roundtrips += 1;
        let serial = self.roundtrips;
        let display: WlDisplay = self.conn.display();
        display.sync(&self.queue.handle(), Callback::Sync(serial));
        self.dispatch_until("a roundtrip's answer", |s| s.synced >= serial)
    }

    /// Frame callbacks received so far.
    pub fn frames_done(&self) -> u64 {
        self.state.frames_done
    }

    /// The surface's latest dma-buf feedback, once per new one received.
    pub fn take_surface_feedback(&mut self) -> Option<Tranches> {
        self.state.surface_tranches.take()
    }

    /// The releases received since the last call, in order.
    pub fn take_released(&mut self) -> Vec<(u32, Release)> {
        std::mem::take(&mut self.state.released)
    }

    /// The frames reported shown or discarded since the last call, in
    /// order.
    pub fn take_presented(&mut self) -> Vec<(u64, Shown)> {
        std::mem::take(&mut self.state.presented)
    }

    /// The images whose dma-buf the compositor refused since the last call.
    pub fn take_refused(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.state.refused)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // The compositor frees its side of the objects that have destructor
        // requests; wayland-backend destroys the proxies themselves, then
        // the queue, and never the application's display.
        if let Some(f) = self.feedback.take() {
            f.destroy();
        }
        for p in self.params.drain(..) {
            p.destroy();
        }
        if let Some(e) = self.explicit.take() {
            e.destroy();
        }
        if let Some(p) = self.presentation.take() {
            p.destroy();
        }
        if let Some(d) = self.dmabuf.take() {
            d.destroy();
        }
        let _ = self.flush();
    }
}
