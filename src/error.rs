//! The one error type of this crate.

use rustix::io::Errno;

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Why a dma-buf or sync_file operation failed.
///
/// The kernel answers most misuse with the same two errno values (`ENOTTY`
/// and `EINVAL`); this type says which misuse it was, so that callers can
/// react to the cases that need different handling: [`Error::Unsupported`]
/// asks for a fallback, the others are bugs or foreign file descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kernel does not have `DMA_BUF_IOCTL_EXPORT_SYNC_FILE` and
    /// `DMA_BUF_IOCTL_IMPORT_SYNC_FILE`: it answered `ENOTTY` on a file that
    /// is a dma-buf. They appeared in Linux 6.0 and need `CONFIG_SYNC_FILE`.
    #[error("the kernel lacks the dma-buf sync_file ioctls (Linux 6.0 with CONFIG_SYNC_FILE)")]
    Unsupported,

    /// The file descriptor does not refer to a dma-buf.
    #[error("the file descriptor is not a dma-buf")]
    NotADmaBuf,

    /// The file descriptor does not refer to a sync_file.
    #[error("the file descriptor is not a sync_file")]
    NotASyncFile,

    /// The kernel refused these access flags: the sync_file ioctls accept
    /// read (1), write (2) or both (3), and nothing else. The typed API
    /// cannot produce this; it carries the raw flags that were passed.
    #[error("access flags {0:#x} are not read (1), write (2) or read-write (3)")]
    InvalidAccess(u32),

    /// Any other failure, with the kernel's errno (`EBADF` for a closed file
    /// descriptor, `EMFILE` when the process is out of descriptors, ...).
    #[error("{0}")]
    Os(#[from] Errno),
}

impl Error {
    /// The errno the kernel returned for this error, where one errno stands
    /// behind it: `ENOTTY` for [`Error::Unsupported`], `EINVAL` for
    /// [`Error::InvalidAccess`], and the carried value for [`Error::Os`].
    /// Not-a-dma-buf and not-a-sync_file come from several errno values, so
    /// they have none.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Unsupported => Some(Errno::NOTTY),
            Error::InvalidAccess(_) => Some(Errno::INVAL),
            Error::Os(errno) => Some(*errno),
            Error::NotADmaBuf | Error::NotASyncFile => None,
        }
    }
}

impl From<Error> for std::io::Error {
    fn from(error: Error) -> Self {
        use std::io::ErrorKind;
        match error {
            Error::Os(errno) => errno.into(),
            Error::Unsupported => std::io::Error::new(ErrorKind::Unsupported, error),
            Error::NotADmaBuf | Error::NotASyncFile | Error::InvalidAccess(_) => {
                std::io::Error::new(ErrorKind::InvalidInput, error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_keep_their_errno() {
        let error = Error::from(Errno::BADF);
        assert_eq!(error.errno(), Some(Errno::BADF));
        let io: std::io::Error = error.into();
        assert_eq!(io.raw_os_error(), Some(Errno::BADF.raw_os_error()));
    }

    #[test]
    fn typed_errors_map_to_io_kinds() {
        let io: std::io::Error = Error::Unsupported.into();
        assert_eq!(io.kind(), std::io::ErrorKind::Unsupported);
        let io: std::io::Error = Error::NotADmaBuf.into();
        assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
        assert_eq!(Error::NotASyncFile.errno(), None);
        assert_eq!(Error::InvalidAccess(4).errno(), Some(Errno::INVAL));
    }
}
