//! Buffers a consumer's own DRM device allocates: dumb buffers, which
//! every KMS driver makes and any device that reads its own memory can
//! use. The display platform scans them out; the X11 platform hands them
//! to an X server whose DRI3 device can only use buffers native to it.

use syncfile::kms::Card;

use ash::vk;

use crate::wsi::platform::{Buffer, PlatformError, LINEAR};

/// A LINEAR buffer of 32-bit pixels and `extent` made on `card`, exported
/// as a dma-buf (which keeps it alive; the card's handle goes).
pub fn buffer(card: &Card, extent: vk::Extent2D) -> Result<Buffer, PlatformError> {
    let refused = |what: &str, e: syncfile::Error| PlatformError::Refused(format!("{what}: {e}"));
    let dumb = card
        .create_dumb(extent.width, extent.height, 32)
        .map_err(|e| refused("making a dumb buffer", e))?;
    let exported = card.export(dumb.handle);
    // The dma-buf holds the buffer now; a handle that will not close only
    // costs the card's handle table an entry.
    let _ = card.close_handle(dumb.handle);
    Ok(Buffer {
        dma_buf: exported.map_err(|e| refused("exporting a dumb buffer", e))?,
        modifier: LINEAR,
        offset: 0,
        stride: dumb.pitch.into(),
        size: dumb.size,
    })
}
