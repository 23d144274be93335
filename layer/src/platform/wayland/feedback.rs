//! Assembling a `zwp_linux_dmabuf_feedback_v1` (v4) from its events: a
//! format table shared through a file, then tranches that index into it,
//! most preferred first, closed by `done`. Updates resend the tranches
//! (and, only if it changed, the table).

use std::os::fd::{AsFd, OwnedFd};

use wayland_protocols::wp::linux_dmabuf::zv1::client::zwp_linux_dmabuf_feedback_v1::Event;

use super::formats::{self, Fourcc, Tranches};

/// A feedback being received.
#[derive(Default)]
pub struct Feedback {
    /// The latest format table; it stays valid across updates.
    table: Vec<(Fourcc, u64)>,
    /// The tranche being received.
    tranche: Vec<(Fourcc, u64)>,
    /// The tranches received since the last `done`.
    tranches: Tranches,
    /// Why the latest table could not be read.
    failed: Option<std::io::Error>,
}

impl Feedback {
    /// Takes one event; on `done`, returns the feedback's tranches, or why
    /// its format table could not be read.
    pub fn handle(&mut self, event: Event) -> Option<std::io::Result<Tranches>> {
        match event {
            Event::FormatTable { fd, size } => match read_format_table(&fd, size) {
                Ok(t) => {
                    self.table = t;
                    self.failed = None;
                }
                Err(e) => self.failed = Some(e),
            },
            Event::TrancheFormats { indices } => {
                self.tranche
                    .extend(formats::tranche_pairs(&self.table, &indices));
            }
            Event::TrancheDone => {
                let tranche = std::mem::take(&mut self.tranche);
                self.tranches.push(tranche);
            }
            Event::Done => {
                let tranches = std::mem::take(&mut self.tranches);
                return Some(match self.failed.take() {
                    Some(e) => Err(e),
                    None => Ok(tranches),
                });
            }
            // The layer's images live in system memory (or wherever the
            // driver put them): any device the compositor names will do,
            // and tranche flags (scanout) do not change what it sends.
            _ => {}
        }
        None
    }
}

/// Reads the `size` bytes of a format table, which the protocol requires to
/// be mapped privately.
fn read_format_table(fd: &OwnedFd, size: u32) -> std::io::Result<Vec<(Fourcc, u64)>> {
    use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};
    let len = size as usize;
    if len == 0 {
        return Ok(Vec::new());
    }
    // Reading a mapping past the end of its file raises SIGBUS, which would
    // take the application down: a table larger than its file is refused.
    let file_len = rustix::fs::fstat(fd)?.st_size;
    if u64::try_from(file_len).map_or(true, |n| n < len as u64) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a format table of {len} bytes in a file of {file_len}"),
        ));
    }
    // SAFETY: a fresh private read-only mapping of `len` bytes, all inside
    // the file, read and unmapped before returning; nothing else aliases it.
    unsafe {
        let ptr = mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ,
            MapFlags::PRIVATE,
            fd.as_fd(),
            0,
        )?;
        let table = formats::parse_format_table(std::slice::from_raw_parts(ptr.cast::<u8>(), len));
        munmap(ptr, len)?;
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::wayland::formats::{preferred_modifiers, ARGB8888, MOD_LINEAR, XRGB8888};

    const TILED: u64 = 0x0100_0000_0000_0002;

    /// A table in a memfd, as a compositor shares it.
    fn table_file(entries: &[(Fourcc, u64)]) -> (OwnedFd, u32) {
        let mut bytes = Vec::new();
        for &(f, m) in entries {
            bytes.extend_from_slice(&f.to_ne_bytes());
            bytes.extend_from_slice(&[0; 4]);
            bytes.extend_from_slice(&m.to_ne_bytes());
        }
        let fd = rustix::fs::memfd_create("table", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::io::write(&fd, &bytes).unwrap();
        (fd, bytes.len() as u32)
    }

    fn indices(i: &[u16]) -> Vec<u8> {
        i.iter().flat_map(|i| i.to_ne_bytes()).collect()
    }

    fn tranche(fb: &mut Feedback, i: &[u16]) {
        let flags = wayland_client::WEnum::Value(
            wayland_protocols::wp::linux_dmabuf::zv1::client::zwp_linux_dmabuf_feedback_v1::TrancheFlags::Scanout,
        );
        assert!(fb.handle(Event::TrancheFlags { flags }).is_none());
        assert!(fb
            .handle(Event::TrancheFormats {
                indices: indices(i)
            })
            .is_none());
        assert!(fb.handle(Event::TrancheDone).is_none());
    }

    #[test]
    fn tranches_index_the_table_and_updates_keep_it() {
        let entries = [
            (XRGB8888, TILED),
            (XRGB8888, MOD_LINEAR),
            (ARGB8888, MOD_LINEAR),
        ];
        let (fd, size) = table_file(&entries);
        let mut fb = Feedback::default();
        assert!(fb.handle(Event::FormatTable { fd, size }).is_none());
        assert!(fb
            .handle(Event::MainDevice { device: vec![0; 8] })
            .is_none());
        tranche(&mut fb, &[0]);
        tranche(&mut fb, &[1, 2]);
        let first = fb.handle(Event::Done).unwrap().unwrap();
        assert_eq!(
            first,
            [
                vec![(XRGB8888, TILED)],
                vec![(XRGB8888, MOD_LINEAR), (ARGB8888, MOD_LINEAR)]
            ]
        );
        // An update without a table: the scanout tranche is gone, the
        // table still resolves the indices, and the preference changed.
        tranche(&mut fb, &[1, 2]);
        let update = fb.handle(Event::Done).unwrap().unwrap();
        assert_eq!(
            update,
            [vec![(XRGB8888, MOD_LINEAR), (ARGB8888, MOD_LINEAR)]]
        );
        assert_ne!(
            preferred_modifiers(&first, XRGB8888),
            preferred_modifiers(&update, XRGB8888)
        );
        assert_eq!(
            preferred_modifiers(&first, ARGB8888),
            preferred_modifiers(&update, ARGB8888)
        );
    }

    #[test]
    fn a_table_larger_than_its_file_is_refused_not_read() {
        let (fd, size) = table_file(&[(XRGB8888, MOD_LINEAR)]);
        let mut fb = Feedback::default();
        assert!(fb
            .handle(Event::FormatTable {
                fd,
                size: size + 4096
            })
            .is_none());
        tranche(&mut fb, &[0]);
        let done = fb.handle(Event::Done).unwrap();
        assert_eq!(done.unwrap_err().kind(), std::io::ErrorKind::InvalidData);
        // The next feedback with a good table is read again.
        let (fd, size) = table_file(&[(XRGB8888, MOD_LINEAR)]);
        assert!(fb.handle(Event::FormatTable { fd, size }).is_none());
        tranche(&mut fb, &[0]);
        assert_eq!(
            fb.handle(Event::Done).unwrap().unwrap(),
            [vec![(XRGB8888, MOD_LINEAR)]]
        );
    }
}
