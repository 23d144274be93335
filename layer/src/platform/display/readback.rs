//! Reading back what a display shows, through a KMS writeback connector
//! (vkms has one), for frame capture: the kernel's own composition of the
//! plane, not the layer's copy of the image.
//!
//! Drivers like vkms clone no CRTC output, so a writeback commit takes the
//! connector off the CRTC and puts the writeback connector on it, with the
//! plane still showing the frame; once the writeback's fence signals the
//! connector goes back. Both are blocking mode sets on the presenter's
//! thread, between two frames, which is why this happens only while
//! capture is on (`SYNCFILE_WSI_CAPTURE`).

use std::time::Duration;

use ash::vk;
use syncfile::kms::{
    client_cap, AtomicRequest, Card, CommitFlags, FramebufferDesc, Object, Output,
};

use super::session::Session;
use crate::vulkan::caps::CANDIDATES;
use crate::wsi::platform::LINEAR;
use crate::wsi::platform::{Buffer, ConsumerImage};

/// `DRM_FORMAT_XRGB8888`.
const XRGB8888: u32 = u32::from_le_bytes(*b"XR24");
/// How long a writeback may take before the read back is given up.
const WRITEBACK_WAIT: Duration = Duration::from_secs(5);

/// A writeback connector and a buffer of the mode's size to read into.
pub struct Readback {
    connector: u32,
    framebuffer: u32,
    image: ConsumerImage,
}

/// The writeback connector that CRTC `crtc_index` can feed, with its
/// properties learnt into `output`, if the card has one.
pub fn find_writeback(card: &Card, output: &mut Output) -> Option<u32> {
    card.set_client_cap(client_cap::WRITEBACK_CONNECTORS, 1)
        .ok()?;
    for id in card.resources().ok()?.connectors {
        let c = card.connector(id).ok()?;
        if c.kind != syncfile::kms::CONNECTOR_WRITEBACK {
            continue;
        }
        let mut crtcs = 0;
        for &e in &c.encoders {
            crtcs |= card.encoder_crtcs(e).unwrap_or(0);
        }
        if crtcs & (1 << output.crtc_index) != 0
            && output.learn(card, id, Object::Connector).is_ok()
        {
            return Some(id);
        }
    }
    None
}

impl Readback {
    /// A read-back buffer of `extent` on the session's writeback connector.
    pub fn new(session: &Session, extent: vk::Extent2D) -> Option<Readback> {
        let connector = session.writeback?;
        let card = &session.card;
        let dumb = card.create_dumb(extent.width, extent.height, 32).ok()?;
        let framebuffer = card.add_framebuffer(&FramebufferDesc {
            width: extent.width,
            height: extent.height,
            format: XRGB8888,
            handle: dumb.handle,
            pitch: dumb.pitch,
            offset: 0,
            modifier: None,
        });
        let dma_buf = card.export(dumb.handle);
        let _ = card.close_handle(dumb.handle);
        let framebuffer = framebuffer.ok()?;
        let Ok(dma_buf) = dma_buf else {
            let _ = card.remove_framebuffer(framebuffer);
            return None;
        };
        Some(Readback {
            connector,
            framebuffer,
            image: ConsumerImage {
                buffer: Buffer {
                    dma_buf,
                    modifier: LINEAR,
                    offset: 0,
                    stride: dumb.pitch.into(),
                    size: dumb.size,
                },
                // B, G, R, X in memory, as XRGB8888 is.
                format: CANDIDATES[1],
                extent,
            },
        })
    }

    /// Reads back what the output shows while the plane shows `fb` (of
    /// `size`), and puts the output back; the pixels, once the writeback
    /// completed.
    pub fn read(&self, session: &Session, fb: u32, size: (u32, u32)) -> Option<&ConsumerImage> {
        let out = &session.output;
        let modeset = CommitFlags {
            allow_modeset: true,
            ..Default::default()
        };
        let mut r = AtomicRequest::new();
        r.set(out.connector, out.prop(out.connector, "CRTC_ID").ok()?, 0);
        r.set(
            self.connector,
            out.prop(self.connector, "CRTC_ID").ok()?,
            out.crtc.into(),
        );
        r.set(
            self.connector,
            out.prop(self.connector, "WRITEBACK_FB_ID").ok()?,
            self.framebuffer.into(),
        );
        r.writeback_out_fence(
            self.connector,
            out.prop(self.connector, "WRITEBACK_OUT_FENCE_PTR").ok()?,
        );
        out.show(&mut r, fb, size).ok()?;
        let fence = session.card.commit(&r, modeset, 0);
        let mut back = AtomicRequest::new();
        back.set(self.connector, out.prop(self.connector, "CRTC_ID").ok()?, 0);
        back.set(
            out.connector,
            out.prop(out.connector, "CRTC_ID").ok()?,
            out.crtc.into(),
        );
        out.show(&mut back, fb, size).ok()?;
        let written = match fence {
            Ok(Some(f)) => f.wait(Some(WRITEBACK_WAIT)).unwrap_or(false),
            _ => false,
        };
        if let Err(e) = session.card.commit(&back, modeset, 0) {
            tracing::warn!("display: could not put the output back after a read back: {e}");
        }
        written.then_some(&self.image)
    }

    pub fn release(&self, session: &Session) {
        session.remove(self.framebuffer);
    }
}
