//! Presenting on one `wl_surface`: a `wl_buffer` per swapchain image made
//! from its dma-buf, commits with damage and a frame callback, and the
//! explicit-sync acquire fence and release object when the compositor offers
//! `zwp_linux_explicit_synchronization_v1`.

use std::ffi::c_void;
use std::os::fd::{AsFd, BorrowedFd};

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

    /// Attaches `buffer` (image `image`) and commits it, with full damage
    /// and, with `frame`, a frame callback (counted by
    /// [`super::Events::frames_done`]). With explicit sync, `acquire` is the fence
    /// the compositor waits for before reading, and the release object
    /// reports the image's release (as [`Release::Immediate`] or
    /// [`Release::Fenced`]); without, `wl_buffer.release` does
    /// ([`Release::Buffer`]).
    pub fn commit(
        &self,
        client: &Client,
        buffer: &WlBuffer,
        image: u32,
        acquire: Option<&SyncFile>,
        frame: bool,
    ) -> Result<(), WaylandError> {
        client.check()?;
        let qh = client.handle();
        if let Some(sync) = &self.sync {
            if let Some(fence) = acquire {
                sync.set_acquire_fence(fence.as_fd());
            }
            sync.get_release(&qh, image);
        }
        self.surface.attach(Some(buffer), 0, 0);
        if self.surface.version() >= DAMAGE_BUFFER_SINCE {
            self.surface.damage_buffer(0, 0, i32::MAX, i32::MAX);
        } else {
            self.surface.damage(0, 0, i32::MAX, i32::MAX);
        }
        if frame {
            self.surface.frame(&qh, Callback::Frame);
        }
        self.surface.commit();
        client.flush()
    }
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
    /// Creation failures the compositor detects are protocol errors, seen
    /// by the next dispatch or roundtrip.
    pub fn create_buffer(
        &self,
        desc: &BufferDesc<'_>,
        image: u32,
    ) -> Result<WlBuffer, WaylandError> {
        self.check()?;
        let dmabuf = self
            .dmabuf
            .as_ref()
            .ok_or(WaylandError::NotOffered("zwp_linux_dmabuf_v1"))?;
        let qh = self.handle();
        let params = dmabuf.create_params(&qh, ());
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
        params.destroy();
        self.flush()?;
        Ok(buffer)
    }
}
