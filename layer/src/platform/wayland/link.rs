//! Presenting on one `wl_surface`: a `wl_buffer` per swapchain image made
//! from its dma-buf, commits with damage, presentation feedback and frame
//! callbacks, and the explicit-sync acquire fence and release object when
//! the compositor offers `zwp_linux_explicit_synchronization_v1`.

use std::ffi::c_void;
use std::os::fd::{AsFd, BorrowedFd};

use ash::vk;
use syncfile::SyncFile;
use wayland_backend::client::ObjectId;
use wayland_client::protocol::{wl_buffer::WlBuffer, wl_surface::WlSurface};
use wayland_client::Proxy;
use wayland_protocols::wp::linux_dmabuf::zv1::client::zwp_linux_buffer_params_v1::Flags;
use wayland_protocols::wp::linux_dmabuf::zv1::client::zwp_linux_dmabuf_feedback_v1::ZwpLinuxDmabufFeedbackV1;
use wayland_protocols::wp::linux_explicit_synchronization::zv1::client::zwp_linux_surface_synchronization_v1::ZwpLinuxSurfaceSynchronizationV1;

use super::client::{Callback, Client, FeedbackOf};
use super::formats::Fourcc;
use super::WaylandError;

/// `wl_surface.damage_buffer` exists from this version on.
const DAMAGE_BUFFER_SINCE: u32 = 4;
/// `zwp_linux_dmabuf_v1.get_surface_feedback` exists from this version on.
const SURFACE_FEEDBACK_SINCE: u32 = 4;

/// How the compositor gave an image back.
#[derive(Debug)]
pub enum Release {
    /// `wl_buffer.release`: implicit sync, nothing more to wait for than
    /// the dma-buf's own fences.
    Buffer,
    /// `zwp_linux_buffer_release_v1.immediate_release`: done, nothing pending.
    Immediate,
    /// `zwp_linux_buffer_release_v1.fenced_release`: the compositor's reads
    /// end when this fence signals.
    Fenced(SyncFile),
}

impl Release {
    /// The compositor's release fence, if it sent one: it signals when the
    /// compositor's reads of the image end.
    pub fn fence(self) -> Option<SyncFile> {
        match self {
            Release::Fenced(fence) => Some(fence),
            Release::Buffer | Release::Immediate => None,
        }
    }
}

/// One plane of a dma-buf image.
#[derive(Clone, Copy, Debug)]
pub struct Plane<'a> {
    pub fd: BorrowedFd<'a>,
    pub offset: u32,
    pub stride: u32,
}

/// What `zwp_linux_buffer_params_v1` needs to know of an image.
#[derive(Clone, Debug)]
pub struct BufferDesc<'a> {
    pub width: u32,
    pub height: u32,
    pub format: Fourcc,
    pub modifier: u64,
    pub planes: Vec<Plane<'a>>,
}

/// The layer's handle on the application's `wl_surface`, its explicit
/// synchronization object when the layer uses one, and its dma-buf
/// feedback when the compositor sends one ([`super::Events::take_surface_feedback`]).
pub struct SurfaceLink {
    surface: WlSurface,
    sync: Option<ZwpLinuxSurfaceSynchronizationV1>,
    feedback: Option<ZwpLinuxDmabufFeedbackV1>,
}

impl SurfaceLink {
    /// Takes hold of the application's surface; with `explicit` (and a
    /// compositor that offers it) asks for its synchronization object.
    ///
    /// # Safety
    /// `surface` is a live `wl_surface*` of the client's display, which
    /// outlives the link.
    pub unsafe fn new(
        client: &Client,
        surface: *mut c_void,
        explicit: bool,
    ) -> Result<Self, WaylandError> {
        if surface.is_null() {
            return Err(WaylandError::BadHandle);
        }
        // SAFETY: the caller guarantees a live wl_surface; from_ptr checks
        // its interface. Requests that create objects from it go through a
        // proxy wrapper on the layer's queue (wayland-backend does that for
        // foreign proxies), so their events come to the layer.
        let id = unsafe { ObjectId::from_ptr(WlSurface::interface(), surface.cast()) }
            .map_err(|_| WaylandError::BadHandle)?;
        let surface =
            WlSurface::from_id(client.connection(), id).map_err(|_| WaylandError::BadHandle)?;
        let sync = match (&client.explicit, explicit) {
            (Some(e), true) => Some(e.get_synchronization(&surface, &client.handle(), ())),
            (None, true) => {
                return Err(WaylandError::NotOffered(
                    "zwp_linux_explicit_synchronization_v1",
                ))
            }
            (_, false) => None,
        };
        let feedback = client
            .dmabuf
            .as_ref()
            .filter(|d| d.version() >= SURFACE_FEEDBACK_SINCE)
            .map(|d| d.get_surface_feedback(&surface, &client.handle(), FeedbackOf::Surface));
        client.flush()?;
        Ok(Self {
            surface,
            sync,
            feedback,
        })
    }

    pub fn explicit(&self) -> bool {
        self.sync.is_some()
    }

    /// Attaches a frame's buffer and commits it, as [`Commit`] says. With
    /// explicit sync the acquire fence goes with it, and the release object
    /// reports the image's release (as [`Release::Immediate`] or
    /// [`Release::Fenced`]); without, `wl_buffer.release` does
    /// ([`Release::Buffer`]).
    pub fn commit(&self, client: &Client, c: &Commit<'_>) -> Result<(), WaylandError> {
        client.check()?;
        let qh = client.handle();
        if let Some(sync) = &self.sync {
            if let Some(fence) = c.acquire {
                sync.set_acquire_fence(fence.as_fd());
            }
            sync.get_release(&qh, c.image);
        }
        self.surface.attach(Some(c.buffer), 0, 0);
        let damage_buffer = self.surface.version() >= DAMAGE_BUFFER_SINCE;
        match c.damage {
            // Rectangles of the image, which is what damage_buffer takes;
            // `damage` (surface coordinates) is the same at scale 1.
            Some(rects) if damage_buffer => {
                for r in rects.iter().filter(|r| r.layer == 0) {
                    let (x, y) = (r.offset.x, r.offset.y);
                    let (w, h) = (clamp(r.extent.width), clamp(r.extent.height));
                    self.surface.damage_buffer(x, y, w, h);
                }
            }
            _ if damage_buffer => self.surface.damage_buffer(0, 0, i32::MAX, i32::MAX),
            _ => self.surface.damage(0, 0, i32::MAX, i32::MAX),
        }
        match &client.presentation {
            Some(p) => {
                p.feedback(&self.surface, &qh, c.seq);
                if c.frame_callback {
                    self.surface.frame(&qh, Callback::Frame(None));
                }
            }
            // The frame callback is then what says the frame was shown.
            None => {
                self.surface.frame(&qh, Callback::Frame(Some(c.seq)));
            }
        }
        self.surface.commit();
        client.flush()
    }
}

/// What one commit of a frame carries.
pub struct Commit<'a> {
    pub buffer: &'a WlBuffer,
    /// The swapchain image, which its release names.
    pub image: u32,
    /// With explicit sync: the fence the compositor waits for before it
    /// reads.
    pub acquire: Option<&'a SyncFile>,
    /// The frame's number, which its presentation feedback reports.
    pub seq: u64,
    /// Whether the presenter waits for the frame callback (FIFO): it is
    /// asked for whenever this is set, and always without
    /// `wp_presentation`.
    pub frame_callback: bool,
    /// The image's changed rectangles; `None` damages all of it.
    pub damage: Option<&'a [vk::RectLayerKHR]>,
}

impl Commit<'_> {
    /// Whether the commit asks for a frame callback.
    pub fn asks_frame_callback(&self, client: &Client) -> bool {
        self.frame_callback || client.presentation.is_none()
    }
}

fn clamp(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl Drop for SurfaceLink {
    fn drop(&mut self) {
        // The surface may only ever have one synchronization object: free
        // it so that a later swapchain (or the application) can ask again.
        if let Some(s) = self.sync.take() {
            s.destroy();
        }
        if let Some(f) = self.feedback.take() {
            f.destroy();
        }
    }
}

impl Client {
    /// A `wl_buffer` for image `image` (its releases carry that index).
    /// The compositor answers a buffer it cannot import with a protocol
    /// error or with `failed` ([`super::Events::take_refused`]), seen by the
    /// next dispatch or roundtrip.
    pub fn create_buffer(
        &mut self,
        desc: &BufferDesc<'_>,
        image: u32,
    ) -> Result<WlBuffer, WaylandError> {
        self.check()?;
        let dmabuf = self
            .dmabuf
            .as_ref()
            .ok_or(WaylandError::NotOffered("zwp_linux_dmabuf_v1"))?;
        let qh = self.handle();
        let params = dmabuf.create_params(&qh, image);
        for (i, p) in desc.planes.iter().enumerate() {
            params.add(
                p.fd,
                i as u32,
                p.offset,
                p.stride,
                (desc.modifier >> 32) as u32,
                desc.modifier as u32,
            );
        }
        let buffer = params.create_immed(
            desc.width as i32,
            desc.height as i32,
            desc.format,
            Flags::empty(),
            &qh,
            image,
        );
        self.params.push(params);
        self.flush()?;
        Ok(buffer)
    }
}
