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
//! but never longer than [`super::link::FIFO_WAIT`]. FIFO_RELAXED does the same with
//! `PresentOptionAsync`, so that a late frame is shown at once; MAILBOX
//! frames target the next MSC and replace each other; IMMEDIATE ones are
//! async.

use std::sync::Arc;

use ash::vk;
use syncfile::{Access, SyncFile};

use super::link::Shared;
use super::server::{Conn, Geometry, Offer};
use super::thread::{self, Bridge};
use super::X11Error;
use crate::platform::worker::Worker;
use crate::plumbing::settings::SyncMode;
use crate::plumbing::stats::{self, Counter};
use crate::wsi::platform::{Frame, PlatformError, Presenter, PresenterConfig};
use x11rb::protocol::xproto::Window;

pub struct X11Presenter {
    shared: Arc<Shared>,
    worker: Worker<Bridge>,
    /// Whether frames with pending renders get a wait fence.
    fenced: bool,
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
        let fenced = match config.settings.sync {
            SyncMode::Auto | SyncMode::Explicit => true,
            SyncMode::Implicit | SyncMode::Cpu => false,
        };
        if config.settings.sync == SyncMode::Explicit && offer.syncobj() {
            tracing::warn!("SYNCFILE_WSI_SYNC=explicit: the layer sends no DRI3 1.4 syncobjs; pending renders go with SYNC fences its thread triggers");
        }
        let shared = Shared::start(conn, window, g, &config)?;
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
            thread::serve(&thread_shared, inbox)
        })?;
        Ok(Self {
            shared,
            worker,
            fenced,
        })
    }
}

impl Presenter for X11Presenter {
    fn present(
        &self,
        frame: Frame,
        _render: Option<&SyncFile>,
        _damage: Option<&[vk::RectLayerKHR]>,
    ) -> vk::Result {
        let (lost, full_screen) = self.shared.lost_and_full_screen();
        if lost {
            return vk::Result::ERROR_SURFACE_LOST_KHR;
        }
        // The render fence is in the dma-buf, with any other writer's.
        let pending = self.fenced
            && !full_screen
            && self
                .shared
                .images
                .get(frame.index)
                .is_some_and(|i| !i.buffer.dma_buf.is_ready(Access::Read).unwrap_or(false));
        let sent = (|| {
            let fence = if pending {
                Some(self.shared.new_id()?)
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
        s.free();
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
