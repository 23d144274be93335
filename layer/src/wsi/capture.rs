//! Frame capture: presented frames written as PNG files, a feature for
//! headless users (CI, render farms) and for tests.
//!
//! `SYNCFILE_WSI_CAPTURE=DIR` turns it on; `SYNCFILE_WSI_CAPTURE_EVERY=N`
//! (default 1, every frame) keeps only frames whose number is a multiple
//! of N. Frame numbers count presents on swapchains the layer owns since
//! the process started, from 0, and name the files:
//! `DIR/frame-000042.png`; a display that can read back what it shows
//! (a KMS writeback connector) also writes `DIR/display-000042.png`. A
//! file appears whole (it is written under a
//! temporary name and renamed). The pixels are read from the image's
//! dma-buf once its write fence has signalled, so they are the finished
//! render; with an opaque composite alpha, alpha is written as 255, as a
//! screen would show it. Only LINEAR images can be read; the backends ask
//! for LINEAR while capture is on.
//!
//! The backend's consumer captures, off the application's thread, as it
//! shows each frame; frames still queued when their swapchain goes are
//! captured then. Frames a MAILBOX swapchain replaces before display are
//! not captured.

use std::fs::File;
use std::io::BufWriter;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::mm::{MapFlags, ProtFlags};

use super::bridge;
use super::platform::{ConsumerImage, LINEAR};
use crate::plumbing::settings::Settings;
use crate::plumbing::stats::{self, Counter};

/// The files of presented frames, and of what displays showed.
const FRAME: &str = "frame";
const SHOWN: &str = "display";

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("the image has modifier {0:#x}; only LINEAR images can be read")]
    NotLinear(u64),
    #[error("its layout does not fit in memory")]
    Layout,
    #[error("mapping the dma-buf failed: {0}")]
    Map(rustix::io::Errno),
    #[error("CPU access to the dma-buf failed: {0}")]
    Access(#[from] syncfile::Error),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("encoding the PNG failed: {0}")]
    Png(#[from] png::EncodingError),
}

/// Where and which frames to capture.
#[derive(Clone, Debug)]
pub struct Capture {
    dir: PathBuf,
    every: u64,
}

impl Capture {
    /// The capture the settings ask for, if any.
    pub fn from_settings(settings: &Settings) -> Option<Capture> {
        let dir = settings.capture.clone()?;
        if let Err(e) = std::fs::create_dir_all(&dir) {
            warn_once(&format!("cannot capture to {}: {e}", dir.display()));
            return None;
        }
        Some(Capture {
            dir,
            every: settings.capture_every.max(1),
        })
    }

    pub fn wants(&self, seq: u64) -> bool {
        seq % self.every == 0
    }

    fn named(&self, prefix: &str, seq: u64) -> PathBuf {
        self.dir.join(format!("{prefix}-{seq:06}.png"))
    }

    /// Writes frame `seq` from `image`, whose write fence has signalled;
    /// logs the first failure and counts the successes.
    pub fn write(&self, seq: u64, image: &ConsumerImage, opaque: bool) {
        match self.try_write(FRAME, seq, image, opaque) {
            Ok(()) => stats::count(Counter::FramesCaptured),
            Err(e) => warn_once(&format!("cannot capture frame {seq}: {e}")),
        }
    }

    /// Writes what a display showed while frame `seq` was on it, as read
    /// back from the display (`display-000042.png`), from `image`, whose
    /// writes are complete.
    pub fn write_shown(&self, seq: u64, image: &ConsumerImage) {
        match self.try_write(SHOWN, seq, image, true) {
            Ok(()) => stats::count(Counter::FramesReadBack),
            Err(e) => warn_once(&format!("cannot write the display's frame {seq}: {e}")),
        }
    }

    fn try_write(
        &self,
        prefix: &str,
        seq: u64,
        image: &ConsumerImage,
        opaque: bool,
    ) -> Result<(), CaptureError> {
        let pixels = read_rgba(image, opaque)?;
        let path = self.named(prefix, seq);
        let tmp = self.dir.join(format!(".{prefix}-{seq:06}.png.tmp"));
        encode(&tmp, image.extent.width, image.extent.height, &pixels)?;
        std::fs::rename(&tmp, &path).map_err(|e| CaptureError::Io(path.clone(), e))
    }
}

fn warn_once(message: &str) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!("{message} (further capture failures are not logged)");
    }
}

/// The image's pixels as tightly packed R, G, B, A bytes.
fn read_rgba(image: &ConsumerImage, opaque: bool) -> Result<Vec<u8>, CaptureError> {
    let buffer = &image.buffer;
    if buffer.modifier != LINEAR {
        return Err(CaptureError::NotLinear(buffer.modifier));
    }
    let (w, h) = (image.extent.width as usize, image.extent.height as usize);
    let stride = usize::try_from(buffer.stride).map_err(|_| CaptureError::Layout)?;
    let offset = usize::try_from(buffer.offset).map_err(|_| CaptureError::Layout)?;
    let size = usize::try_from(buffer.size).map_err(|_| CaptureError::Layout)?;
    let len = offset.checked_add(size).ok_or(CaptureError::Layout)?;
    // The last row needs only its pixels, not a whole stride.
    let needed = stride
        .checked_mul(h.saturating_sub(1))
        .and_then(|n| n.checked_add(w * 4))
        .ok_or(CaptureError::Layout)?;
    if stride < w * 4 || h == 0 || needed > size {
        return Err(CaptureError::Layout);
    }
    // SAFETY: a fresh shared read-only mapping of the dma-buf, which the
    // mapping guard below unmaps; nothing else maps this address.
    let map = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ,
            MapFlags::SHARED,
            buffer.dma_buf.as_fd(),
            0,
        )
    }
    .map_err(CaptureError::Map)?;
    let mapping = Mapping { ptr: map, len };
    let access = bridge::cpu_read(&buffer.dma_buf)?;
    // SAFETY: the mapping is `len` bytes long and readable until dropped.
    let bytes = unsafe { std::slice::from_raw_parts(mapping.ptr.cast::<u8>(), mapping.len) };
    let mut out = Vec::with_capacity(w * h * 4);
    for row in 0..h {
        let start = offset + row * stride;
        for px in bytes[start..start + w * 4].chunks_exact(4) {
            let (r, b) = if image.format.bgra {
                (px[2], px[0])
            } else {
                (px[0], px[2])
            };
            out.extend_from_slice(&[r, px[1], b, if opaque { 255 } else { px[3] }]);
        }
    }
    access.finish()?;
    Ok(out)
}

/// Unmaps on drop.
struct Mapping {
    ptr: *mut std::ffi::c_void,
    len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping this guard was made for, unmapped once.
        let _ = unsafe { rustix::mm::munmap(self.ptr, self.len) };
    }
}

fn encode(path: &Path, width: u32, height: u32, rgba: &[u8]) -> Result<(), CaptureError> {
    let file = File::create(path).map_err(|e| CaptureError::Io(path.to_owned(), e))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgba)?;
    writer.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_every() {
        let c = Capture {
            dir: PathBuf::from("/d"),
            every: 10,
        };
        assert_eq!(c.named(FRAME, 42), PathBuf::from("/d/frame-000042.png"));
        assert_eq!(c.named(SHOWN, 7), PathBuf::from("/d/display-000007.png"));
        assert!(c.wants(0) && c.wants(30) && !c.wants(31));
    }

    #[test]
    fn encodes_a_readable_png() {
        let dir = std::env::temp_dir().join(format!("sfwsi-capture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.png");
        let rgba: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
        encode(&path, 2, 3, &rgba).unwrap();
        let decoder = png::Decoder::new(std::io::BufReader::new(File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        assert_eq!(buf, rgba);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
