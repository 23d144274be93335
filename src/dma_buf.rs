//! [`DmaBuf`]: the implicit fences of a shared buffer, as sync_files.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::PollFlags;
use rustix::fs::FsWord;
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::ioctl;
use crate::sync_file::SyncFile;

/// `DMA_BUF_MAGIC`: the filesystem type of dma-bufs since Linux 5.3.
const DMA_BUF_MAGIC: FsWord = 0x444d_4142;
/// `ANON_INODE_FS_MAGIC`: where dma-bufs lived before Linux 5.3.
const ANON_INODE_FS_MAGIC: FsWord = 0x0904_1934;

/// Which access an operation is about, as the dma-buf uapi's
/// `DMA_BUF_SYNC_READ`, `DMA_BUF_SYNC_WRITE` and `DMA_BUF_SYNC_RW`.
///
/// Implicit synchronization is a reader/writer rule: a reader waits for the
/// writers before it, a writer waits for everyone before it. For fences
/// ([`DmaBuf::export_sync_file`], [`DmaBuf::import_sync_file`], [`DmaBuf::wait`])
/// `ReadWrite` means the same as `Write`; for CPU access
/// ([`DmaBuf::cpu_access`]) it also tells the exporter which caches to mind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Reading the buffer.
    Read,
    /// Writing the buffer.
    Write,
    /// Reading and writing the buffer.
    ReadWrite,
}

impl Access {
    /// The uapi flag bits (1, 2 or 3).
    pub fn flags(self) -> u32 {
        match self {
            Access::Read => ioctl::SYNC_READ,
            Access::Write => ioctl::SYNC_WRITE,
            Access::ReadWrite => ioctl::SYNC_RW,
        }
    }

    /// `poll(2)` on a dma-buf reports `EPOLLIN` once the writers are done
    /// and `EPOLLOUT` once everyone is.
    fn poll_events(self) -> PollFlags {
        match self {
            Access::Read => PollFlags::IN,
            Access::Write | Access::ReadWrite => PollFlags::OUT,
        }
    }
}

/// A dma-buf: a buffer shared between drivers (and the CPU), whose
/// reservation object holds the implicit fences of everyone using it.
///
/// `Fd` is how the descriptor is held: [`OwnedFd`] (the default) closes it on
/// drop, `BorrowedFd` ([`BorrowedDmaBuf`]) leaves it to its owner. Any type
/// that implements [`AsFd`] works.
///
/// Creating one does not check what the descriptor is (see [`is_dma_buf`]);
/// the ioctls fail with [`Error::NotADmaBuf`] on other files. `poll(2)` does
/// not tell, so [`DmaBuf::wait`] on another kind of file reports whatever
/// that file does.
///
/// # Example
///
/// A producer that got a buffer from elsewhere (a driver's export, a
/// compositor's pool) hands its render to the buffer's next users; the
/// whole exchange, with a real buffer, is the [crate's example](crate#example).
///
/// ```
/// use std::os::fd::OwnedFd;
/// use syncfile::{Access, DmaBuf, SyncFile};
///
/// /// Before rendering: what the GPU must wait for. After: the render's
/// /// fence, for every later reader and writer to wait for.
/// fn render_into(
///     buffer: OwnedFd,
///     render: impl FnOnce(SyncFile) -> SyncFile,
/// ) -> syncfile::Result<()> {
///     let buffer = DmaBuf::from(buffer);
///     let before = buffer.export_sync_file(Access::Write)?;
///     let done = render(before);
///     buffer.import_sync_file(&done, Access::Write)
/// }
///
/// // Any other file is refused for what it is.
/// let not_a_buffer = std::fs::File::open("/dev/null")?;
/// let error = render_into(not_a_buffer.into(), |fence| fence).unwrap_err();
/// assert_eq!(error, syncfile::Error::NotADmaBuf);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct DmaBuf<Fd = OwnedFd> {
    fd: Fd,
}

/// A dma-buf whose descriptor belongs to someone else.
pub type BorrowedDmaBuf<'fd> = DmaBuf<BorrowedFd<'fd>>;

impl<Fd: AsFd> DmaBuf<Fd> {
    /// Wraps a descriptor that refers to a dma-buf.
    pub const fn new(fd: Fd) -> Self {
        DmaBuf { fd }
    }

    /// Gives the descriptor back.
    pub fn into_inner(self) -> Fd {
        self.fd
    }

    /// The same buffer, borrowed.
    pub fn as_borrowed(&self) -> BorrowedDmaBuf<'_> {
        DmaBuf::new(self.fd.as_fd())
    }

    /// `DMA_BUF_IOCTL_EXPORT_SYNC_FILE`: a sync_file with the fences that
    /// an access of this kind must wait for, right now.
    ///
    /// * [`Access::Read`]: the fences of writers (added with write usage), the
    ///   ones a reader waits for.
    /// * [`Access::Write`] or [`Access::ReadWrite`]: every fence, readers' and
    ///   writers', the ones a writer waits for.
    ///
    /// Fences that have already signalled are left out. When none is left
    /// the kernel returns an already signalled stub fence (never "no file");
    /// one fence is returned as itself, several as a fence array. It is a
    /// snapshot: fences added to the buffer afterwards are not in it.
    ///
    /// Fails with [`Error::Unsupported`] on kernels before 6.0.
    pub fn export_sync_file(&self, access: Access) -> Result<SyncFile> {
        export_raw(self.fd.as_fd(), access.flags())
    }

    /// `DMA_BUF_IOCTL_IMPORT_SYNC_FILE`: adds the fences of `sync_file` to
    /// the buffer's implicit fences, as if a driver had used the buffer
    /// with this access.
    ///
    /// * [`Access::Read`]: added with read usage, so later writers (and
    ///   exports and waits for [`Access::Write`]) wait for them; readers do
    ///   not.
    /// * [`Access::Write`] or [`Access::ReadWrite`]: added with write usage,
    ///   so every later implicit access waits for them.
    ///
    /// Fences are added next to the ones already there, never instead of
    /// them (a fence only takes the place of an older one from its own
    /// timeline, which it implies). Fence arrays and chains are unpacked
    /// first (Linux 6.1+, and 6.0.y). `sync_file` stays with the caller.
    ///
    /// Fails with [`Error::Unsupported`] on kernels before 6.0.
    pub fn import_sync_file(&self, sync_file: &SyncFile, access: Access) -> Result<()> {
        import_raw(
            self.fd.as_fd(),
            sync_file.as_fd().as_raw_fd(),
            access.flags(),
        )
    }

    /// Whether an access of this kind would not have to wait, as `poll(2)`
    /// with a zero timeout sees it: for [`Access::Read`] `EPOLLIN` (the
    /// writers are done), otherwise `EPOLLOUT` (everyone is done). The
    /// same fences as [`DmaBuf::export_sync_file`] with that access.
    pub fn is_ready(&self, access: Access) -> Result<bool> {
        self.wait(access, Some(Duration::ZERO))
    }

    /// Waits with `poll(2)` until an access of this kind would not have to
    /// wait (see [`DmaBuf::is_ready`]). Returns `Ok(false)` if `timeout` ran
    /// out first; `None` waits for as long as it takes. Unlike an export,
    /// this also waits for fences added while it waits.
    pub fn wait(&self, access: Access, timeout: Option<Duration>) -> Result<bool> {
        crate::poll::wait(self.fd.as_fd(), access.poll_events(), timeout).map_err(Error::Os)
    }

    /// `DMA_BUF_IOCTL_SYNC` with `DMA_BUF_SYNC_START`: call before the CPU
    /// touches a mapping of the buffer, so the exporter can make its caches
    /// coherent for the CPU. Current kernels first wait for the fences this
    /// access conflicts with (writers for [`Access::Read`], everyone
    /// otherwise), but the uapi only promises cache coherency and asks
    /// callers to wait for devices themselves, e.g. with [`DmaBuf::wait`].
    /// Restarted when a signal interrupts it (`EINTR`, `EAGAIN`), as the
    /// kernel's documentation asks. Prefer [`DmaBuf::cpu_access`], which
    /// cannot forget the end.
    pub fn begin_cpu_access(&self, access: Access) -> Result<()> {
        sync_raw(self.fd.as_fd(), ioctl::SYNC_START, access.flags())
    }

    /// `DMA_BUF_IOCTL_SYNC` with `DMA_BUF_SYNC_END`: call when the CPU is
    /// done, with the access given to [`DmaBuf::begin_cpu_access`], so the
    /// exporter can flush CPU writes for the devices.
    pub fn end_cpu_access(&self, access: Access) -> Result<()> {
        sync_raw(self.fd.as_fd(), ioctl::SYNC_END, access.flags())
    }

    /// [`DmaBuf::begin_cpu_access`] now and [`DmaBuf::end_cpu_access`] when
    /// the returned guard is dropped (or [`CpuAccess::finish`]ed, to see the
    /// error).
    pub fn cpu_access(&self, access: Access) -> Result<CpuAccess<'_, Fd>> {
        self.begin_cpu_access(access)?;
        Ok(CpuAccess {
            dma_buf: self,
            access,
        })
    }
}

/// A CPU access window opened by [`DmaBuf::cpu_access`]; dropping it sends
/// `DMA_BUF_SYNC_END` and ignores an error.
#[derive(Debug)]
#[must_use = "dropping the guard ends the CPU access at once"]
pub struct CpuAccess<'a, Fd: AsFd> {
    dma_buf: &'a DmaBuf<Fd>,
    access: Access,
}

impl<Fd: AsFd> CpuAccess<'_, Fd> {
    /// Ends the access and reports whether the kernel accepted that.
    pub fn finish(self) -> Result<()> {
        let result = self.dma_buf.end_cpu_access(self.access);
        // The end has been sent; the guard must not send it twice.
        core::mem::forget(self);
        result
    }
}

impl<Fd: AsFd> Drop for CpuAccess<'_, Fd> {
    fn drop(&mut self) {
        // Nobody is left to tell; `finish` is there for callers who care.
        let _ = self.dma_buf.end_cpu_access(self.access);
    }
}

impl From<OwnedFd> for DmaBuf {
    fn from(fd: OwnedFd) -> Self {
        DmaBuf::new(fd)
    }
}

impl From<DmaBuf> for OwnedFd {
    fn from(dma_buf: DmaBuf) -> Self {
        dma_buf.fd
    }
}

impl<Fd: AsFd> AsFd for DmaBuf<Fd> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Whether `fd` refers to a dma-buf, by the filesystem it lives on
/// (`fstatfs(2)`; on kernels before 5.3, where dma-bufs were anonymous
/// inodes, by their name in `/proc/self/fd`).
pub fn is_dma_buf(fd: impl AsFd) -> Result<bool> {
    let fd = fd.as_fd();
    let fs_type = rustix::fs::fstatfs(fd)?.f_type;
    if fs_type == DMA_BUF_MAGIC {
        return Ok(true);
    }
    if fs_type != ANON_INODE_FS_MAGIC {
        return Ok(false);
    }
    let link = rustix::fs::readlink(format!("/proc/self/fd/{}", fd.as_raw_fd()), Vec::new());
    Ok(link.is_ok_and(|name| name.as_bytes() == b"anon_inode:dmabuf"))
}

/// Which dma-buf ioctl failed, for [`dma_buf_error`].
#[derive(Clone, Copy)]
pub(crate) enum Op {
    Export,
    Import,
    Sync,
}

/// Names the failure behind an errno from a dma-buf ioctl. The kernel says
/// `ENOTTY` both for "no such ioctl on this file" and "no such ioctl in this
/// kernel", and `EINVAL` both for bad flags and (on import) a descriptor
/// that is not a sync_file; asking the file what it is settles both.
pub(crate) fn dma_buf_error(fd: BorrowedFd<'_>, errno: Errno, op: Op, access: u32) -> Error {
    if errno != Errno::NOTTY && errno != Errno::INVAL {
        return Error::Os(errno);
    }
    match is_dma_buf(fd) {
        Ok(true) => {}
        Ok(false) => return Error::NotADmaBuf,
        Err(error) => return error,
    }
    match (errno, op) {
        (Errno::NOTTY, Op::Export | Op::Import) => Error::Unsupported,
        (Errno::INVAL, _) if !(1..=ioctl::SYNC_RW).contains(&access) => {
            Error::InvalidAccess(access)
        }
        (Errno::INVAL, Op::Import) => Error::NotASyncFile,
        (errno, _) => Error::Os(errno),
    }
}

/// [`DmaBuf::export_sync_file`] with raw access flags.
pub(crate) fn export_raw(fd: BorrowedFd<'_>, access: u32) -> Result<SyncFile> {
    ioctl::dma_buf_export_sync_file(fd, access)
        .map(SyncFile::from)
        .map_err(|errno| dma_buf_error(fd, errno, Op::Export, access))
}

/// [`DmaBuf::import_sync_file`] with raw access flags and a raw descriptor.
pub(crate) fn import_raw(fd: BorrowedFd<'_>, sync_file: i32, access: u32) -> Result<()> {
    ioctl::dma_buf_import_sync_file(fd, access, sync_file)
        .map_err(|errno| dma_buf_error(fd, errno, Op::Import, access))
}

fn sync_raw(fd: BorrowedFd<'_>, phase: u64, access: u32) -> Result<()> {
    loop {
        match ioctl::dma_buf_sync(fd, phase | u64::from(access)) {
            // The kernel's fence wait is interruptible, and its documentation
            // asks callers to restart the ioctl.
            Err(Errno::INTR | Errno::AGAIN) => continue,
            result => return result.map_err(|errno| dma_buf_error(fd, errno, Op::Sync, access)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> OwnedFd {
        rustix::pipe::pipe().unwrap().0
    }

    #[test]
    fn access_flags_are_the_uapi_bits() {
        assert_eq!(Access::Read.flags(), 1);
        assert_eq!(Access::Write.flags(), 2);
        assert_eq!(Access::ReadWrite.flags(), 3);
        assert_eq!(Access::Read.poll_events(), PollFlags::IN);
        assert_eq!(Access::ReadWrite.poll_events(), PollFlags::OUT);
    }

    #[test]
    fn other_files_are_not_dma_bufs() {
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        assert_eq!(is_dma_buf(&file), Ok(false));
        assert_eq!(is_dma_buf(pipe()), Ok(false));

        for fd in [OwnedFd::from(file), pipe()] {
            let buf = DmaBuf::from(fd);
            assert_eq!(
                buf.export_sync_file(Access::Read).err(),
                Some(Error::NotADmaBuf)
            );
            assert_eq!(buf.begin_cpu_access(Access::Write), Err(Error::NotADmaBuf));
            assert!(buf.cpu_access(Access::Read).is_err());
        }
    }

    #[test]
    fn errors_on_other_files_name_the_file() {
        let pipe = pipe();
        let fd = pipe.as_fd();
        for op in [Op::Export, Op::Import, Op::Sync] {
            assert_eq!(dma_buf_error(fd, Errno::NOTTY, op, 2), Error::NotADmaBuf);
            assert_eq!(dma_buf_error(fd, Errno::INVAL, op, 0), Error::NotADmaBuf);
            assert_eq!(
                dma_buf_error(fd, Errno::BUSY, op, 2),
                Error::Os(Errno::BUSY)
            );
        }
    }

    #[test]
    fn borrowing_keeps_the_descriptor() {
        let buf = DmaBuf::from(pipe());
        let raw = buf.as_fd().as_raw_fd();
        assert_eq!(buf.as_borrowed().as_fd().as_raw_fd(), raw);
        assert_eq!(OwnedFd::from(buf).as_raw_fd(), raw);
    }
}
