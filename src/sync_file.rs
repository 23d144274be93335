//! [`SyncFile`]: a file descriptor that stands for a set of fences.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::PollFlags;
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::ioctl;

/// A sync_file: a file descriptor that owns a snapshot of one or more
/// `dma_fence`s and signals once all of them have signalled.
///
/// The fence set is fixed when the kernel creates the file (by a driver, by
/// [`DmaBuf::export_sync_file`](crate::DmaBuf::export_sync_file) or by
/// [`SyncFile::merge`]); fences added to a buffer later are not in it.
/// `poll(2)` reports `EPOLLIN` once it has signalled.
///
/// Dropping a `SyncFile` closes the descriptor; that never signals or cancels
/// its fences.
///
/// # Example
///
/// Merging, inspecting, waiting and duplicating (`examples/fences.rs`, which
/// also runs in the project's test guest; on a machine without the system
/// dma-heap or the sync_file ioctls it says so and stops):
///
#[doc = concat!("```\n", include_str!("../examples/fences.rs"), "```")]
#[derive(Debug)]
pub struct SyncFile {
    fd: OwnedFd,
}

/// Where a fence stands, as `SYNC_IOC_FILE_INFO` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceStatus {
    /// Not signalled yet (the kernel's status 0).
    Active,
    /// Signalled without error (status 1).
    Signaled,
    /// Signalled with an error (a negative status: the driver's errno, such
    /// as `ETIMEDOUT` for a fence that gave up).
    Error(Errno),
}

impl FenceStatus {
    fn from_raw(status: i32) -> Self {
        match status {
            0 => FenceStatus::Active,
            s if s > 0 => FenceStatus::Signaled,
            // Drivers store `-errno`; anything outside errno's range (which
            // rustix rejects) is reported as a plain I/O error.
            s => FenceStatus::Error(
                s.checked_neg()
                    .filter(|code| *code < 4096)
                    .map_or(Errno::IO, Errno::from_raw_os_error),
            ),
        }
    }

    /// Whether the fence is done, with or without an error.
    pub fn is_signaled(self) -> bool {
        !matches!(self, FenceStatus::Active)
    }
}

/// What `SYNC_IOC_FILE_INFO` says about a sync_file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncFileInfo {
    /// The file's name: the one given to [`SyncFile::merge_named`], or one the
    /// kernel makes from its fence's driver, timeline, context and seqno.
    pub name: String,
    /// The summary the kernel computes while it lists the fences: the first
    /// fence that is not signalled, or that failed, decides; `Signaled` when
    /// all have signalled.
    pub status: FenceStatus,
    /// Every fence in the file. Fence arrays are listed as their members.
    pub fences: Vec<FenceInfo>,
}

/// One fence inside a sync_file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FenceInfo {
    /// The driver that made the fence (`vgem`, `i915`, `dma_fence_stub`...).
    pub driver: String,
    /// The name of the fence's timeline, as its driver reports it.
    pub timeline: String,
    /// Where the fence stands.
    pub status: FenceStatus,
    /// When it signalled, on `CLOCK_MONOTONIC`; `None` while it has not.
    pub timestamp: Option<Duration>,
}

impl SyncFile {
    /// `SYNC_IOC_MERGE`: a new sync_file holding the fences of `self` and
    /// `other`, which signals once both have signalled. The kernel drops
    /// duplicates, keeps the later fence of two on the same timeline and
    /// (since Linux 6.0) leaves out fences that have already signalled; both
    /// inputs stay valid. The name of the result is derived from its
    /// fences, as if none had been given.
    pub fn merge(&self, other: &SyncFile) -> Result<SyncFile> {
        self.merge_named(other, "")
    }

    /// [`SyncFile::merge`] naming the result: at most 31 bytes of `name` are
    /// kept, and it ends at its first NUL. An empty name lets the kernel make
    /// one up.
    pub fn merge_named(&self, other: &SyncFile, name: &str) -> Result<SyncFile> {
        let mut raw_name = [0u8; 32];
        let len = name.len().min(raw_name.len() - 1);
        raw_name[..len].copy_from_slice(&name.as_bytes()[..len]);
        ioctl::sync_merge(self.fd.as_fd(), other.fd.as_raw_fd(), raw_name)
            .map(SyncFile::from)
            .map_err(|errno| match errno {
                // ENOTTY: `self` is not a sync_file; ENOENT: `other` is not.
                Errno::NOTTY | Errno::NOENT => Error::NotASyncFile,
                errno => Error::Os(errno),
            })
    }

    /// `SYNC_IOC_FILE_INFO`, twice: once to count the fences and once to
    /// fetch them, with each fence's driver, timeline, status and signal
    /// time.
    pub fn info(&self) -> Result<SyncFileInfo> {
        let (info, fences) =
            ioctl::sync_file_info_with_fences(self.fd.as_fd()).map_err(sync_file_error)?;
        Ok(SyncFileInfo {
            name: ioctl::name_from_c(&info.name),
            status: FenceStatus::from_raw(info.status),
            fences: fences
                .iter()
                .map(|fence| {
                    let status = FenceStatus::from_raw(fence.status);
                    FenceInfo {
                        driver: ioctl::name_from_c(&fence.driver_name),
                        timeline: ioctl::name_from_c(&fence.obj_name),
                        status,
                        timestamp: status
                            .is_signaled()
                            .then(|| Duration::from_nanos(fence.timestamp_ns)),
                    }
                })
                .collect(),
        })
    }

    /// The status of the file as a whole (`SYNC_IOC_FILE_INFO` without the
    /// fence list): one ioctl, and unlike `poll(2)` it fails with
    /// [`Error::NotASyncFile`] on any other kind of file.
    pub fn status(&self) -> Result<FenceStatus> {
        ioctl::sync_file_info(self.fd.as_fd())
            .map(|info| FenceStatus::from_raw(info.status))
            .map_err(sync_file_error)
    }

    /// Whether every fence has signalled, with or without error; see
    /// [`SyncFile::status`] to tell which.
    pub fn is_signaled(&self) -> Result<bool> {
        self.status().map(FenceStatus::is_signaled)
    }

    /// Waits with `poll(2)` for `EPOLLIN`, which the kernel reports once every
    /// fence has signalled. Returns `Ok(true)` when it has, `Ok(false)` when
    /// `timeout` ran out first; `None` waits for as long as it takes and
    /// `Some(Duration::ZERO)` only looks. Interrupted polls are restarted.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        crate::poll::wait(self.fd.as_fd(), PollFlags::IN, timeout).map_err(Error::Os)
    }

    /// A second `SyncFile` for the same fences (`F_DUPFD_CLOEXEC`), for APIs
    /// that take ownership of the descriptor while the caller still needs it.
    pub fn try_clone(&self) -> Result<SyncFile> {
        rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)
            .map(SyncFile::from)
            .map_err(Error::Os)
    }
}

/// The sync_file ioctls have been in the kernel since Linux 4.7, so `ENOTTY`
/// means the descriptor is some other kind of file.
fn sync_file_error(errno: Errno) -> Error {
    match errno {
        Errno::NOTTY => Error::NotASyncFile,
        errno => Error::Os(errno),
    }
}

/// Takes ownership of `fd` without checking what it is; operations on a
/// descriptor that is not a sync_file fail with [`Error::NotASyncFile`]
/// (except [`SyncFile::wait`], which can only report what `poll(2)` says).
impl From<OwnedFd> for SyncFile {
    fn from(fd: OwnedFd) -> Self {
        SyncFile { fd }
    }
}

impl From<SyncFile> for OwnedFd {
    fn from(sync_file: SyncFile) -> Self {
        sync_file.fd
    }
}

impl AsFd for SyncFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_statuses_decode() {
        assert_eq!(FenceStatus::from_raw(0), FenceStatus::Active);
        assert_eq!(FenceStatus::from_raw(1), FenceStatus::Signaled);
        assert_eq!(
            FenceStatus::from_raw(-110),
            FenceStatus::Error(Errno::TIMEDOUT)
        );
        assert_eq!(
            FenceStatus::from_raw(i32::MIN),
            FenceStatus::Error(Errno::IO)
        );
        assert!(!FenceStatus::Active.is_signaled());
        assert!(FenceStatus::Error(Errno::IO).is_signaled());
    }

    fn not_a_sync_file() -> SyncFile {
        let (reader, _writer) = rustix::pipe::pipe().unwrap();
        SyncFile::from(reader)
    }

    #[test]
    fn a_pipe_is_not_a_sync_file() {
        let pipe = not_a_sync_file();
        assert_eq!(pipe.status(), Err(Error::NotASyncFile));
        assert_eq!(pipe.is_signaled(), Err(Error::NotASyncFile));
        assert_eq!(pipe.info(), Err(Error::NotASyncFile));
        assert!(matches!(
            pipe.merge(&not_a_sync_file()),
            Err(Error::NotASyncFile)
        ));
    }

    #[test]
    fn ownership_round_trips() {
        let pipe = not_a_sync_file();
        let raw = pipe.as_fd().as_raw_fd();
        let fd = OwnedFd::from(pipe);
        assert_eq!(fd.as_raw_fd(), raw);
        let clone = SyncFile::from(fd).try_clone().unwrap();
        assert_ne!(clone.as_fd().as_raw_fd(), raw);
    }
}
