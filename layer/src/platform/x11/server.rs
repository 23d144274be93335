//! The layer's own connection to an X server, and what the server offers
//! it: DRI3 (the device its buffers must come from, the modifiers it
//! takes), Present and SYNC. Every wait on the server has a deadline: the
//! connection's stream gives up after [`TIMEOUT`], which makes the
//! connection (and its surface or swapchain) lost, never a hang.

use std::io::IoSlice;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use syncfile::kms::Card;
use x11rb::connection::RequestConnection;
use x11rb::protocol::xproto::{ConnectionExt as _, Window};
use x11rb::protocol::{dri3, present, sync};
use x11rb::rust_connection::{DefaultStream, PollMode, RustConnection, Stream};
use x11rb::utils::RawFdContainer;

use super::X11Error;

/// How long the layer waits for any one answer from the server.
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub type Conn = RustConnection<Bounded>;

/// A stream whose waits end after [`TIMEOUT`] with `TimedOut`.
#[derive(Debug)]
pub struct Bounded(DefaultStream);

impl Stream for Bounded {
    fn poll(&self, mode: PollMode) -> std::io::Result<()> {
        let mut flags = rustix::event::PollFlags::empty();
        if mode.readable() {
            flags |= rustix::event::PollFlags::IN;
        }
        if mode.writable() {
            flags |= rustix::event::PollFlags::OUT;
        }
        let mut fds = [rustix::event::PollFd::new(&self.0, flags)];
        let limit = rustix::event::Timespec::try_from(TIMEOUT).ok();
        loop {
            match rustix::event::poll(&mut fds, limit.as_ref()) {
                Ok(0) => return Err(std::io::ErrorKind::TimedOut.into()),
                Ok(_) => return Ok(()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn read(&self, buf: &mut [u8], fds: &mut Vec<RawFdContainer>) -> std::io::Result<usize> {
        self.0.read(buf, fds)
    }

    fn write(&self, buf: &[u8], fds: &mut Vec<RawFdContainer>) -> std::io::Result<usize> {
        self.0.write(buf, fds)
    }

    fn write_vectored(
        &self,
        bufs: &[IoSlice<'_>],
        fds: &mut Vec<RawFdContainer>,
    ) -> std::io::Result<usize> {
        self.0.write_vectored(bufs, fds)
    }
}

impl AsFd for Bounded {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Connects to the server of display `name`, with the authorization
/// `XAUTHORITY` holds for it (as libxcb finds it).
pub fn connect(name: &str) -> Result<Conn, X11Error> {
    let parsed = x11rb_protocol::parse_display::parse_display(Some(name))
        .map_err(|e| X11Error::Connect(format!("{name}: {e}")))?;
    let mut last = None;
    for address in parsed.connect_instruction() {
        match DefaultStream::connect(&address) {
            Ok((stream, (family, peer))) => {
                let (auth_name, auth_data) =
                    x11rb_protocol::xauth::get_auth(family, &peer, parsed.display)
                        .ok()
                        .flatten()
                        .unwrap_or_default();
                return RustConnection::connect_to_stream_with_auth_info(
                    Bounded(stream),
                    parsed.screen.into(),
                    auth_name,
                    auth_data,
                )
                .map_err(|e| X11Error::Connect(format!("{name}: {e}")));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(X11Error::Connect(match last {
        Some(e) => format!("{name}: {e}"),
        None => format!("{name}: no address to connect to"),
    }))
}

/// What the server offers the layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offer {
    /// DRI3's version, (0, 0) without it.
    pub dri3: (u32, u32),
    pub present: (u32, u32),
    /// SYNC's version: fences need 3.1.
    pub sync: (u32, u32),
}

impl Offer {
    /// Whether the layer can present here: buffers with modifiers
    /// (DRI3 1.2), Present 1.2 and SYNC fences.
    pub fn suffices(&self) -> bool {
        self.dri3 >= (1, 2) && self.present >= (1, 2) && self.sync >= (3, 1)
    }

    /// Whether the server takes DRI3 1.4's syncobjs.
    pub fn syncobj(&self) -> bool {
        self.dri3 >= (1, 4) && self.present >= (1, 4)
    }
}

/// Asks which versions of the extensions the layer uses the server has.
pub fn offer(conn: &Conn) -> Result<Offer, X11Error> {
    let has = |name: &'static str| -> Result<bool, X11Error> {
        Ok(conn.extension_information(name)?.is_some())
    };
    let mut offer = Offer::default();
    if has(dri3::X11_EXTENSION_NAME)? {
        let v = dri3::query_version(conn, 1, 4)?.reply()?;
        offer.dri3 = (v.major_version, v.minor_version);
    }
    if has(present::X11_EXTENSION_NAME)? {
        let v = present::query_version(conn, 1, 4)?.reply()?;
        offer.present = (v.major_version, v.minor_version);
    }
    if has(sync::X11_EXTENSION_NAME)? {
        let v = sync::initialize(conn, 3, 1)?.reply()?;
        offer.sync = (v.major_version.into(), v.minor_version.into());
    }
    Ok(offer)
}

/// A window's size and depth, and the root it is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub width: u16,
    pub height: u16,
    pub depth: u8,
    pub root: Window,
}

pub fn geometry(conn: &Conn, window: Window) -> Result<Geometry, X11Error> {
    let g = conn.get_geometry(window)?.reply()?;
    Ok(Geometry {
        width: g.width,
        height: g.height,
        depth: g.depth,
        root: g.root,
    })
}

/// The device DRI3 wants the window's buffers from, as a card the layer
/// allocates them on.
pub fn device(conn: &Conn, window: Window) -> Result<Card, X11Error> {
    let reply = dri3::open(conn, window, 0)?.reply()?;
    let fd = reply.device_fd;
    Ok(Card::from(fd))
}

/// The modifiers DRI3 takes for a window of `depth`, window's first
/// (those it may scan out), then the screen's; empty when the server
/// names none, which means LINEAR.
pub fn modifiers(conn: &Conn, window: Window, depth: u8) -> Result<Vec<u64>, X11Error> {
    let reply = dri3::get_supported_modifiers(conn, window, depth, 32)?.reply()?;
    let mut all = reply.window_modifiers;
    all.extend(reply.screen_modifiers);
    Ok(all)
}

/// Sends what is queued and waits until the server has handled it: a
/// request it refused shows up as an error here.
pub fn sync_with(conn: &Conn) -> Result<(), X11Error> {
    conn.get_input_focus()?.reply()?;
    Ok(())
}

/// Whether an error event is about the window itself (it is gone).
pub fn window_gone(error: &x11rb::x11_utils::X11Error) -> bool {
    error.error_kind == x11rb::protocol::ErrorKind::Window
        || error.error_kind == x11rb::protocol::ErrorKind::Drawable
}
