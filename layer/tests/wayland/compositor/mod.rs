//! A compositor that misbehaves on purpose, built on the `wayland-server`
//! crate (the real protocol library, its pure-Rust backend): the globals a
//! Vulkan application and the layer use (`wl_compositor` v4,
//! `xdg_wm_base` v1, `zwp_linux_dmabuf_v1` v3 offering ARGB8888 and
//! XRGB8888 LINEAR), run on a thread of the test, with one [`Fault`] of
//! the kinds a desktop throws at a long-running application.
//!
//! It behaves as a compositor otherwise would: a commit releases the
//! buffer it replaces and answers its frame callbacks at once. What it did
//! is in [`Seen`], which the tests judge the layer against: commits,
//! releases, callbacks, and for [`Fault::PendingReadFence`] the pixels of
//! each buffer as it was committed and just before each read fence was
//! signalled, read through its own mapping of the dma-buf.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use syncfile::sources::vgem::{Vgem, VgemFence};
use syncfile::{Access, DmaBuf};
use wayland_protocols::wp::linux_dmabuf::zv1::server::{
    zwp_linux_buffer_params_v1 as params, zwp_linux_dmabuf_v1 as dmabuf,
};
use wayland_protocols::xdg::shell::server::xdg_wm_base;
use wayland_server::backend::{ClientData, DisconnectReason};
use wayland_server::protocol::{wl_buffer, wl_callback, wl_compositor, wl_surface};
use wayland_server::{
    Client, DataInit, Dispatch, Display, DisplayHandle, GlobalDispatch, ListeningSocket, New,
    Resource,
};

/// DRM fourccs `AR24` and `XR24`: what a B8G8R8A8 image goes as.
mod shell;

const FORMATS: [u32; 2] = [0x3432_5241, 0x3432_5258];
const LINEAR: u64 = 0;
/// How long [`Fault::PendingReadFence`] holds each buffer's read fence.
pub const HOLD: Duration = Duration::from_millis(300);
/// How long the compositor waits for a committed buffer's writers before
/// it reads it anyway (a guard against a hang, not a measure).
const WRITERS_LIMIT: Duration = Duration::from_secs(10);

/// What the compositor does wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// None: it behaves (the soak's compositor).
    Nothing,
    /// Never sends `wl_buffer.release`.
    NoRelease,
    /// Never answers a frame callback.
    NoFrameCallbacks,
    /// Adds a pending vgem read fence to each committed dma-buf (as a
    /// compositor still sampling it would) and releases it at once; the
    /// fence signals [`HOLD`] later.
    PendingReadFence,
    /// Answers this dma-buf import (counted from 1) and every later one
    /// with `zwp_linux_buffer_params_v1.failed`.
    RefuseImportsFrom(u32),
    /// Drops the client's connection when this commit (counted from 1)
    /// comes, without answering it.
    DisconnectAt(u64),
}

/// One commit, as [`Fault::PendingReadFence`] saw it.
#[derive(Clone, Debug)]
pub struct CommitSeen {
    pub buffer: u32,
    /// Whether the buffer's writers were done within [`WRITERS_LIMIT`].
    pub writers_done: bool,
    /// Its first pixel, read once the writers were done.
    pub pixel: u32,
}

/// One read fence, as [`Fault::PendingReadFence`] held it.
#[derive(Clone, Debug)]
pub struct FenceSeen {
    pub buffer: u32,
    /// The commit (from 0) whose buffer it was added to.
    pub commit: usize,
    /// The buffer's first pixel just before the fence was signalled.
    pub pixel_before_signal: u32,
    /// `CLOCK_MONOTONIC` ns at its signal.
    pub signalled_ns: u64,
}

/// What the compositor did.
#[derive(Debug, Default)]
pub struct Seen {
    /// Commits with a buffer attached.
    pub committed: u64,
    /// Those of [`Fault::PendingReadFence`], in order.
    pub commits: Vec<CommitSeen>,
    pub fences: Vec<FenceSeen>,
    pub releases: u64,
    pub frame_callbacks: u64,
    pub refused: u64,
    pub disconnected: bool,
}

/// The compositor's thread, stopped when dropped.
pub struct Compositor {
    pub socket: String,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl Compositor {
    /// Listens on a socket of its own in `XDG_RUNTIME_DIR`.
    pub fn start(fault: Fault) -> Result<Compositor, String> {
        let socket = format!("wayland-sfw-faulty-{}", std::process::id());
        let listener = ListeningSocket::bind(&socket).map_err(|e| format!("{socket}: {e}"))?;
        let display = Display::<Server>::new().map_err(|e| e.to_string())?;
        let vgem = match fault {
            Fault::PendingReadFence => Some(Vgem::open().map_err(|e| e.to_string())?),
            _ => None,
        };
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let server = Server {
            fault,
            vgem,
            seen: seen.clone(),
            held: Vec::new(),
            commits: 0,
            buffers: 0,
            imports: 0,
        };
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("faulty-compositor".into())
            .spawn(move || serve(display, listener, server, &stopping))
            .map_err(|e| e.to_string())?;
        Ok(Compositor {
            socket,
            seen,
            stop,
            thread: Some(thread),
        })
    }

    pub fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops the thread; says why it failed, if it did.
    pub fn stop(mut self) -> Result<(), String> {
        self.halt()
    }

    fn halt(&mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Release);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err("the compositor thread panicked".into()),
            None => Ok(()),
        }
    }
}

impl Drop for Compositor {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

fn serve(
    mut display: Display<Server>,
    listener: ListeningSocket,
    mut server: Server,
    stop: &AtomicBool,
) -> Result<(), String> {
    let mut dh = display.handle();
    dh.create_global::<Server, wl_compositor::WlCompositor, ()>(4, ());
    dh.create_global::<Server, xdg_wm_base::XdgWmBase, ()>(1, ());
    dh.create_global::<Server, dmabuf::ZwpLinuxDmabufV1, ()>(3, ());
    let tick = Timespec {
        tv_sec: 0,
        tv_nsec: 20_000_000,
    };
    while !stop.load(Ordering::Acquire) {
        {
            let mut fds = [
                PollFd::new(&listener, PollFlags::IN),
                PollFd::from_borrowed_fd(display.backend().poll_fd(), PollFlags::IN),
            ];
            match rustix::event::poll(&mut fds, Some(&tick)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(format!("poll: {e}")),
            }
        }
        while let Some(stream) = listener.accept().map_err(|e| e.to_string())? {
            dh.insert_client(stream, Arc::new(ClientState))
                .map_err(|e| e.to_string())?;
        }
        display
            .dispatch_clients(&mut server)
            .map_err(|e| e.to_string())?;
        server.signal_due()?;
        // A client that went away is no error of the compositor's.
        let _ = display.flush_clients();
    }
    Ok(())
}

struct ClientState;

impl ClientData for ClientState {}

/// A read fence [`Fault::PendingReadFence`] holds on a buffer.
struct Held {
    buffer: Arc<Buffer>,
    commit: usize,
    fence: VgemFence,
    until: Instant,
}

struct Server {
    fault: Fault,
    vgem: Option<Vgem>,
    seen: Arc<Mutex<Seen>>,
    held: Vec<Held>,
    commits: u64,
    /// Buffers made so far.
    buffers: u32,
    /// `create_immed` requests so far.
    imports: u32,
}

impl Server {
    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Signals the read fences whose hold is over, reading each buffer
    /// first: its pixels must still be the frame the fence protects.
    fn signal_due(&mut self) -> Result<(), String> {
        let now = Instant::now();
        let (due, kept) = std::mem::take(&mut self.held)
            .into_iter()
            .partition::<Vec<_>, _>(|h| h.until <= now);
        self.held = kept;
        for h in due {
            let pixel = h.buffer.first_pixel()?;
            h.fence.signal().map_err(|e| e.to_string())?;
            self.seen().fences.push(FenceSeen {
                buffer: h.buffer.id,
                commit: h.commit,
                pixel_before_signal: pixel,
                signalled_ns: now_ns(),
            });
        }
        Ok(())
    }

    /// A buffer committed under [`Fault::PendingReadFence`]: read once its
    /// writers are done, fenced for reading, released at once.
    fn fence_commit(&mut self, buffer: &wl_buffer::WlBuffer) -> Result<(), String> {
        let Some(Some(data)) = buffer.data::<Option<Arc<Buffer>>>().cloned() else {
            return Ok(());
        };
        let writers_done = data
            .dma
            .wait(Access::Read, Some(WRITERS_LIMIT))
            .map_err(|e| e.to_string())?;
        let pixel = data.first_pixel()?;
        let vgem = self.vgem.as_ref().ok_or("no vgem")?;
        let (fence, pending) = vgem.pending_sync_file().map_err(|e| e.to_string())?;
        data.dma
            .import_sync_file(&pending, Access::Read)
            .map_err(|e| e.to_string())?;
        let commit = self.seen().commits.len();
        self.seen().commits.push(CommitSeen {
            buffer: data.id,
            writers_done,
            pixel,
        });
        self.held.push(Held {
            buffer: data,
            commit,
            fence,
            until: Instant::now() + HOLD,
        });
        buffer.release();
        self.seen().releases += 1;
        Ok(())
    }
}

fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// A dma-buf the client made a `wl_buffer` of (one plane).
struct Buffer {
    /// Buffers are numbered from 1 in the order they were made.
    id: u32,
    dma: DmaBuf,
    offset: u32,
}

impl Buffer {
    /// The first pixel, as the CPU reads it through a mapping.
    fn first_pixel(&self) -> Result<u32, String> {
        let len = self.offset as usize + 4;
        // SAFETY: a fresh shared read-only mapping of the dma-buf, read
        // once below and unmapped before return; nothing else in this
        // process maps it.
        unsafe {
            let map = rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ,
                rustix::mm::MapFlags::SHARED,
                self.dma.as_fd(),
                0,
            )
            .map_err(|e| format!("mmap: {e}"))?;
            let pixel = map
                .cast::<u8>()
                .add(self.offset as usize)
                .cast::<u32>()
                .read_unaligned();
            rustix::mm::munmap(map, len).map_err(|e| format!("munmap: {e}"))?;
            Ok(pixel)
        }
    }
}

/// What a surface has been given and not yet committed, and what it shows.
#[derive(Default)]
struct SurfaceState {
    attached: Option<Option<wl_buffer::WlBuffer>>,
    callbacks: Vec<wl_callback::WlCallback>,
    current: Option<wl_buffer::WlBuffer>,
}

impl Server {
    fn commit(
        &mut self,
        client: &Client,
        dh: &DisplayHandle,
        surface: &Mutex<SurfaceState>,
    ) -> Result<(), String> {
        let mut s = surface.lock().unwrap_or_else(|e| e.into_inner());
        let Some(attached) = s.attached.take() else {
            return Ok(());
        };
        self.commits += 1;
        if self.fault == Fault::DisconnectAt(self.commits) {
            // Killed inside the dispatch, the backend closes the socket at
            // the end of this batch of requests; killed after it, only once
            // the client sends again, which a client waiting to acquire
            // never does.
            dh.backend_handle()
                .kill_client(client.id(), DisconnectReason::ConnectionClosed);
            self.seen().disconnected = true;
            return Ok(());
        }
        self.seen().committed += 1;
        let callbacks = std::mem::take(&mut s.callbacks);
        if self.fault != Fault::NoFrameCallbacks {
            let ms = (now_ns() / 1_000_000) as u32;
            for c in callbacks {
                c.done(ms);
                self.seen().frame_callbacks += 1;
            }
        }
        let replaced = std::mem::replace(&mut s.current, attached.clone());
        drop(s);
        match (self.fault, attached) {
            (Fault::PendingReadFence, Some(b)) => self.fence_commit(&b)?,
            (Fault::NoRelease, _) => {}
            (_, now) => {
                if let Some(old) = replaced.filter(|old| Some(old) != now.as_ref()) {
                    old.release();
                    self.seen().releases += 1;
                }
            }
        }
        Ok(())
    }
}

impl GlobalDispatch<wl_compositor::WlCompositor, ()> for Server {
    fn bind(
        _: &mut Self,
        _: &DisplayHandle,
        _: &Client,
        resource: New<wl_compositor::WlCompositor>,
        _: &(),
        init: &mut DataInit<'_, Self>,
    ) {
        init.init(resource, ());
    }
}

impl Dispatch<wl_compositor::WlCompositor, ()> for Server {
    fn request(
        _: &mut Self,
        _: &Client,
        _: &wl_compositor::WlCompositor,
        request: wl_compositor::Request,
        _: &(),
        _: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        match request {
            wl_compositor::Request::CreateSurface { id } => {
                init.init(id, Mutex::new(SurfaceState::default()));
            }
            wl_compositor::Request::CreateRegion { id } => {
                init.init(id, ());
            }
            _ => {}
        }
    }
}

impl Dispatch<wl_surface::WlSurface, Mutex<SurfaceState>> for Server {
    fn request(
        server: &mut Self,
        client: &Client,
        surface: &wl_surface::WlSurface,
        request: wl_surface::Request,
        state: &Mutex<SurfaceState>,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        match request {
            wl_surface::Request::Attach { buffer, .. } => {
                state.lock().unwrap_or_else(|e| e.into_inner()).attached = Some(buffer);
            }
            wl_surface::Request::Frame { callback } => {
                let c = init.init(callback, ());
                state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .callbacks
                    .push(c);
            }
            wl_surface::Request::Commit => {
                if let Err(e) = server.commit(client, dh, state) {
                    surface.post_error(wl_surface::Error::InvalidSize, e);
                }
            }
            _ => {}
        }
    }
}

impl GlobalDispatch<dmabuf::ZwpLinuxDmabufV1, ()> for Server {
    fn bind(
        _: &mut Self,
        _: &DisplayHandle,
        _: &Client,
        resource: New<dmabuf::ZwpLinuxDmabufV1>,
        _: &(),
        init: &mut DataInit<'_, Self>,
    ) {
        let d = init.init(resource, ());
        for f in FORMATS {
            d.format(f);
            d.modifier(f, (LINEAR >> 32) as u32, LINEAR as u32);
        }
    }
}

impl Dispatch<dmabuf::ZwpLinuxDmabufV1, ()> for Server {
    fn request(
        _: &mut Self,
        _: &Client,
        _: &dmabuf::ZwpLinuxDmabufV1,
        request: dmabuf::Request,
        _: &(),
        _: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        if let dmabuf::Request::CreateParams { params_id } = request {
            init.init(params_id, Mutex::new(Vec::new()));
        }
    }
}

/// A params object's planes: (fd, offset).
type Planes = Mutex<Vec<(OwnedFd, u32)>>;

impl Dispatch<params::ZwpLinuxBufferParamsV1, Planes> for Server {
    fn request(
        server: &mut Self,
        _: &Client,
        p: &params::ZwpLinuxBufferParamsV1,
        request: params::Request,
        planes: &Planes,
        _: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        let mut planes = planes.lock().unwrap_or_else(|e| e.into_inner());
        match request {
            params::Request::Add { fd, offset, .. } => planes.push((fd, offset)),
            params::Request::CreateImmed { buffer_id, .. } => {
                server.imports += 1;
                let refused =
                    matches!(server.fault, Fault::RefuseImportsFrom(n) if server.imports >= n);
                let first = planes.drain(..).next();
                match first {
                    Some((fd, offset)) if !refused => {
                        server.buffers += 1;
                        let data = Arc::new(Buffer {
                            id: server.buffers,
                            dma: DmaBuf::new(fd),
                            offset,
                        });
                        init.init(buffer_id, Some(data));
                    }
                    // A failed buffer exists (and shows nothing) until the
                    // client destroys it.
                    _ => {
                        init.init(buffer_id, None);
                        p.failed();
                        server.seen().refused += 1;
                    }
                }
            }
            params::Request::Create { .. } => {
                p.failed();
                server.seen().refused += 1;
            }
            _ => {}
        }
    }
}

impl Dispatch<wl_buffer::WlBuffer, Option<Arc<Buffer>>> for Server {
    fn request(
        _: &mut Self,
        _: &Client,
        _: &wl_buffer::WlBuffer,
        _: wl_buffer::Request,
        _: &Option<Arc<Buffer>>,
        _: &DisplayHandle,
        _: &mut DataInit<'_, Self>,
    ) {
    }
}
