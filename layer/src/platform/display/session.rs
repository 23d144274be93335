//! The card while swapchains live on a display: DRM master, the output's
//! route (connector, CRTC, primary plane), the mode it is lit in, and the
//! framebuffers a retired swapchain left on the screen. Dropped with the
//! last swapchain: the output goes dark and master is given up, so that
//! the console or a display server can take over.

use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, MutexGuard};

use ash::vk;
use rustix::io::Errno;
use syncfile::kms::{
    self, client_cap, AtomicRequest, Card, CommitFlags, FramebufferDesc, ModeInfo, Output,
};

use super::{Display, Mode};
use crate::platform::dumb;
use crate::wsi::platform::{Buffer, ConsumerImage, PlatformError};

/// `DRM_FORMAT_XRGB8888`, what every primary plane scans out.
const XRGB8888: u32 = u32::from_le_bytes(*b"XR24");

pub struct Session {
    pub card: Arc<Card>,
    pub output: Output,
    /// Whether the plane takes an `IN_FENCE_FD`.
    pub in_fence: bool,
    /// Whether the card flips without waiting for vblank.
    pub tearing: bool,
    /// A writeback connector the CRTC can feed, to read back what the
    /// output shows (frame capture).
    pub writeback: Option<u32>,
    /// Whether framebuffers may name their modifier.
    modifiers: bool,
    /// A small buffer no one ever fences: its export is a signalled fence,
    /// the `IN_FENCE_FD` of a frame whose render was already complete.
    idle: syncfile::DmaBuf,
    /// The layer opened the card itself (else the application handed it
    /// over, and keeps master).
    own_card: bool,
    state: Mutex<Lit>,
}

/// What the output shows.
#[derive(Default)]
struct Lit {
    /// The mode it is lit in, and that mode's property blob.
    mode: Option<(ModeInfo, u32)>,
    /// Framebuffers of stopped presenters that may still be on the screen:
    /// removing one would switch the plane off, so they go once a newer
    /// frame replaced them, or with the session.
    leftover: Vec<u32>,
}

impl Session {
    /// Opens the display's card (or takes `acquired`), becomes its DRM
    /// master and routes the output through primary plane `plane` where
    /// it can feed the CRTC (else the CRTC's first).
    pub fn open(
        display: &Display,
        plane: u32,
        acquired: Option<Arc<Card>>,
    ) -> Result<Session, PlatformError> {
        let own_card = acquired.is_none();
        let card = match acquired {
            Some(c) => c,
            None => Arc::new(
                Card::open(&display.card)
                    .map_err(|e| lost(&format!("opening {}", display.card.display()), e))?,
            ),
        };
        card.set_client_cap(client_cap::ATOMIC, 1)
            .map_err(|e| lost("asking for atomic commits", e))?;
        if own_card {
            card.set_master(true).map_err(|e| {
                lost(
                    &format!(
                        "becoming DRM master of {} (another display server drives it?)",
                        display.card.display()
                    ),
                    e,
                )
            })?;
        }
        let connector = card
            .connector(display.connector)
            .map_err(|e| lost("reading the connector", e))?;
        if !connector.connected {
            return Err(PlatformError::Lost(format!(
                "{} is unplugged",
                display.name.to_string_lossy()
            )));
        }
        let mut output = Output::route(&card, &connector, XRGB8888)
            .map_err(|e| lost("routing the connector to a CRTC and a primary plane", e))?;
        let feeds = card
            .plane(plane)
            .is_ok_and(|p| p.possible_crtcs & (1 << output.crtc_index) != 0);
        if feeds && plane != output.plane {
            output
                .learn(&card, plane, syncfile::kms::Object::Plane)
                .map_err(|e| lost("reading the plane", e))?;
            output.plane = plane;
        }
        let cap = |c| card.cap(c).is_ok_and(|v| v != 0);
        let writeback = super::readback::find_writeback(&card, &mut output);
        let idle = card
            .create_dumb(1, 1, 32)
            .and_then(|d| {
                let exported = card.export(d.handle);
                let _ = card.close_handle(d.handle);
                exported
            })
            .map_err(|e| refused("making a dumb buffer", e))?;
        Ok(Session {
            idle,
            writeback,
            in_fence: output.has(output.plane, "IN_FENCE_FD"),
            tearing: cap(kms::cap::ATOMIC_ASYNC_PAGE_FLIP),
            modifiers: cap(kms::cap::ADDFB2_MODIFIERS),
            output,
            own_card,
            state: Mutex::new(Lit::default()),
            card,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Lit> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A scan-out buffer of `extent` (see [`dumb::buffer`]).
    pub fn allocate(&self, extent: vk::Extent2D) -> Result<Buffer, PlatformError> {
        dumb::buffer(&self.card, extent)
    }

    /// A framebuffer of `image` in scan-out format `fourcc`.
    pub fn framebuffer(&self, image: &ConsumerImage, fourcc: u32) -> Result<u32, PlatformError> {
        let b = &image.buffer;
        let handle = self
            .card
            .import(b.dma_buf.as_fd())
            .map_err(|e| refused("importing an image into the card", e))?;
        let desc = FramebufferDesc {
            width: image.extent.width,
            height: image.extent.height,
            format: fourcc,
            handle,
            pitch: u32::try_from(b.stride)
                .map_err(|_| refused("the row pitch", Errno::INVAL.into()))?,
            offset: u32::try_from(b.offset)
                .map_err(|_| refused("the offset", Errno::INVAL.into()))?,
            modifier: self.modifiers.then_some(b.modifier),
        };
        let fb = self.card.add_framebuffer(&desc);
        // The framebuffer holds the buffer; the handle is not needed.
        let _ = self.card.close_handle(handle);
        fb.map_err(|e| refused("making a framebuffer", e))
    }

    /// Adds to `request` what lighting the output in `mode` needs, if it is
    /// not lit in it already; whether it did (the commit then needs
    /// `allow_modeset`).
    pub fn light(&self, request: &mut AtomicRequest, mode: &Mode) -> Result<bool, PlatformError> {
        let mut lit = self.lock();
        if lit.mode.is_some_and(|(m, _)| m == mode.info) {
            return Ok(false);
        }
        let blob = self
            .card
            .create_mode_blob(&mode.info)
            .map_err(|e| refused("making the mode's blob", e))?;
        if let Some((_, old)) = lit.mode.replace((mode.info, blob)) {
            let _ = self.card.destroy_blob(old);
        }
        self.output
            .enable(request, blob)
            .map_err(|e| refused("the output's properties", e))?;
        Ok(true)
    }

    /// Forgets that the output is lit (a mode set failed).
    pub fn unlit(&self) {
        if let Some((_, blob)) = self.lock().mode.take() {
            let _ = self.card.destroy_blob(blob);
        }
    }

    /// Framebuffers of a stopped presenter that may still be on the
    /// screen, for [`Session::replaced`] or the session's end to remove.
    pub fn leave(&self, fbs: impl IntoIterator<Item = u32>) {
        self.lock().leftover.extend(fbs);
    }

    /// A newer frame is on the screen: what stopped presenters left goes.
    pub fn replaced(&self) {
        let gone = std::mem::take(&mut self.lock().leftover);
        for fb in gone {
            let _ = self.card.remove_framebuffer(fb);
        }
    }

    /// A signalled sync_file, for an `IN_FENCE_FD` when the render was
    /// already complete.
    pub fn signalled(&self) -> Option<syncfile::SyncFile> {
        crate::wsi::bridge::signalled_fence(&self.idle).ok()
    }

    /// Removes framebuffer `fb`, which is not on the screen.
    pub fn remove(&self, fb: u32) {
        let _ = self.card.remove_framebuffer(fb);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let lit = std::mem::take(&mut *self.lock());
        if let Some((_, blob)) = lit.mode {
            let mut off = AtomicRequest::new();
            let dark = self.output.disable(&mut off).is_ok()
                && self
                    .card
                    .commit(
                        &off,
                        CommitFlags {
                            allow_modeset: true,
                            ..Default::default()
                        },
                        0,
                    )
                    .is_ok();
            if !dark {
                tracing::warn!("display: could not switch the output off at the end");
            }
            let _ = self.card.destroy_blob(blob);
        }
        for fb in lit.leftover {
            let _ = self.card.remove_framebuffer(fb);
        }
        if self.own_card {
            let _ = self.card.set_master(false);
        }
    }
}

fn lost(what: &str, e: syncfile::Error) -> PlatformError {
    PlatformError::Lost(format!("{what}: {e}"))
}

fn refused(what: &str, e: syncfile::Error) -> PlatformError {
    PlatformError::Refused(format!("{what}: {e}"))
}
