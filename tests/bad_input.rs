//! Misuse gets the right typed error, never a panic: closed descriptors,
//! regular files, pipes, bad access flags, bad sync_file descriptors, and
//! the two kinds of file mistaken for each other. The first three need no
//! dma-buf source and run everywhere.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Mutex, PoisonError};

use libtest_mimic::Failed;
use rustix::io::Errno;
use rustix::process::{getrlimit, Resource};
use syncfile::sources::{raw, Source};
use syncfile::{is_dma_buf, probe, Access, DmaBuf, Error, SyncFile};
use syncfile_tests::{Outcome, Suite};

type Test = fn(Source) -> Outcome;

fn main() {
    let mut suite = Suite::new();
    suite.add("closed-fd", &[], closed_fd);
    suite.add("regular-file", &[], || {
        not_a_dma_buf_nor_sync_file(File::open(std::env::current_exe()?)?.into())
    });
    suite.add("pipe", &[], || {
        not_a_dma_buf_nor_sync_file(rustix::pipe::pipe()?.0)
    });
    let per_source: [(&str, Test); 5] = [
        ("enotty-means-unsupported", enotty_means_unsupported),
        ("access-flags", access_flags),
        ("import-not-a-sync-file", import_not_a_sync_file),
        ("sync-file-as-dma-buf", sync_file_as_dma_buf),
        ("dma-buf-as-sync-file", dma_buf_as_sync_file),
    ];
    for (name, test) in per_source {
        for source in Source::ALL {
            suite.add(format!("{name}::{source}"), &[source], move || test(source));
        }
    }
    suite.run(false)
}

/// Runs `use_it` with a descriptor number that is certainly closed: a
/// duplicate placed at the highest number `RLIMIT_NOFILE` allows, and
/// closed again. The kernel always hands out the lowest free number, so
/// nothing else gets that one; callers take turns, so it stays closed
/// while it is used.
fn with_closed_fd<T>(use_it: impl FnOnce(RawFd) -> T) -> Result<T, Failed> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let limit = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let highest = RawFd::try_from(limit).unwrap_or(RawFd::MAX) - 1;
    let null = File::open("/dev/null")?;
    let number = rustix::io::fcntl_dupfd_cloexec(&null, highest)?.as_raw_fd();
    Ok(use_it(number))
}

fn closed_fd() -> Outcome {
    with_closed_fd(|number| {
        // SAFETY: the number is closed while this runs (see
        // `with_closed_fd`); the borrow only hands it to system calls, which
        // answer EBADF, and never closes it.
        let closed = unsafe { BorrowedFd::borrow_raw(number) };
        let dma_buf = DmaBuf::new(closed);
        let badf = Error::Os(Errno::BADF);
        assert_eq!(dma_buf.export_sync_file(Access::Read).err(), Some(badf));
        assert_eq!(raw::import_sync_file(closed, -1, 2), Err(badf));
        assert_eq!(dma_buf.is_ready(Access::Read), Err(badf));
        assert_eq!(dma_buf.wait(Access::Write, None), Err(badf));
        assert_eq!(dma_buf.begin_cpu_access(Access::Read), Err(badf));
        assert_eq!(dma_buf.end_cpu_access(Access::Read), Err(badf));
        assert!(dma_buf.cpu_access(Access::Write).is_err());
        assert_eq!(is_dma_buf(closed), Err(badf));
        assert_eq!(probe::probe(closed), Err(badf));
    })
}

/// Regular files and pipes answer the dma-buf and sync_file ioctls with
/// `ENOTTY`, which must come out as "not that kind of file".
fn not_a_dma_buf_nor_sync_file(fd: OwnedFd) -> Outcome {
    let dma_buf = DmaBuf::new(fd.as_fd());
    assert_eq!(is_dma_buf(&fd), Ok(false));
    for access in [Access::Read, Access::Write, Access::ReadWrite] {
        assert_eq!(
            dma_buf.export_sync_file(access).err(),
            Some(Error::NotADmaBuf)
        );
        assert_eq!(dma_buf.begin_cpu_access(access), Err(Error::NotADmaBuf));
    }
    assert_eq!(raw::import_sync_file(&fd, -1, 2), Err(Error::NotADmaBuf));
    assert_eq!(raw::export_sync_file(&fd, 4).err(), Some(Error::NotADmaBuf));
    assert_eq!(probe::probe(&fd), Err(Error::NotADmaBuf));
    assert_eq!(probe::cached(), None, "a failed probe is not remembered");

    let sync_file = SyncFile::from(fd.try_clone()?);
    assert_eq!(sync_file.status(), Err(Error::NotASyncFile));
    assert_eq!(sync_file.is_signaled(), Err(Error::NotASyncFile));
    assert_eq!(sync_file.info(), Err(Error::NotASyncFile));
    assert_eq!(
        sync_file.merge(&SyncFile::from(fd)).err(),
        Some(Error::NotASyncFile)
    );
    Ok(())
}

/// This kernel has the ioctls, so what an older one answers (`ENOTTY` on a
/// dma-buf) goes through the same classification by hand: the layer's
/// fallback hangs on it being `Unsupported` on a dma-buf only.
fn enotty_means_unsupported(source: Source) -> Outcome {
    let dma_buf = source.alloc(4096)?;
    let sync_file = dma_buf.export_sync_file(Access::Write)?;
    let write = Access::Write.flags();
    assert_eq!(
        raw::export_error(&dma_buf, Errno::NOTTY, write),
        Error::Unsupported
    );
    assert_eq!(
        raw::import_error(&dma_buf, Errno::NOTTY, write),
        Error::Unsupported
    );
    assert_eq!(
        raw::export_error(&sync_file, Errno::NOTTY, write),
        Error::NotADmaBuf
    );
    assert_eq!(
        raw::import_error(&dma_buf, Errno::INVAL, write),
        Error::NotASyncFile
    );
    assert_eq!(
        raw::import_error(&dma_buf, Errno::INVAL, 0),
        Error::InvalidAccess(0)
    );
    assert_eq!(
        raw::export_error(&dma_buf, Errno::INVAL, 4),
        Error::InvalidAccess(4)
    );
    assert_eq!(
        raw::export_error(&dma_buf, Errno::MFILE, write),
        Error::Os(Errno::MFILE)
    );
    Ok(())
}

fn access_flags(source: Source) -> Outcome {
    let dma_buf = source.alloc(4096)?;
    let sync_file = dma_buf.export_sync_file(Access::Write)?;
    for flags in [0, 4, 7, 0x8000_0000] {
        assert_eq!(
            raw::export_sync_file(&dma_buf, flags).err(),
            Some(Error::InvalidAccess(flags))
        );
        assert_eq!(
            raw::import_sync_file(&dma_buf, sync_file.as_fd().as_raw_fd(), flags),
            Err(Error::InvalidAccess(flags))
        );
    }
    for access in [Access::Read, Access::Write, Access::ReadWrite] {
        raw::export_sync_file(&dma_buf, access.flags())?;
        raw::import_sync_file(&dma_buf, sync_file.as_fd().as_raw_fd(), access.flags())?;
    }
    Ok(())
}

fn import_not_a_sync_file(source: Source) -> Outcome {
    let dma_buf = source.alloc(4096)?;
    let (pipe, _writer) = rustix::pipe::pipe()?;
    let file = File::open(std::env::current_exe()?)?;
    with_closed_fd(|closed| {
        assert_eq!(
            raw::import_sync_file(&dma_buf, closed, Access::Write.flags()),
            Err(Error::NotASyncFile),
            "importing a closed fd"
        );
    })?;
    let candidates = [
        ("fd -1", -1),
        ("a pipe", pipe.as_raw_fd()),
        ("a regular file", file.as_raw_fd()),
        ("the dma-buf itself", dma_buf.as_fd().as_raw_fd()),
    ];
    for (what, fd) in candidates {
        for access in [Access::Read, Access::Write] {
            assert_eq!(
                raw::import_sync_file(&dma_buf, fd, access.flags()),
                Err(Error::NotASyncFile),
                "importing {what} for {access:?}"
            );
        }
    }
    let pipe = SyncFile::from(pipe);
    assert_eq!(
        dma_buf.import_sync_file(&pipe, Access::Write),
        Err(Error::NotASyncFile)
    );
    Ok(())
}

fn sync_file_as_dma_buf(source: Source) -> Outcome {
    let dma_buf = source.alloc(4096)?;
    assert_eq!(is_dma_buf(&dma_buf), Ok(true));
    let sync_file = dma_buf.export_sync_file(Access::Write)?;
    assert_eq!(is_dma_buf(&sync_file), Ok(false));

    let wrong = DmaBuf::new(sync_file.as_fd());
    assert_eq!(
        wrong.export_sync_file(Access::Read).err(),
        Some(Error::NotADmaBuf)
    );
    assert_eq!(
        wrong.import_sync_file(&sync_file, Access::Write),
        Err(Error::NotADmaBuf)
    );
    assert_eq!(wrong.begin_cpu_access(Access::Read), Err(Error::NotADmaBuf));
    assert_eq!(probe::probe(&sync_file), Err(Error::NotADmaBuf));
    Ok(())
}

fn dma_buf_as_sync_file(source: Source) -> Outcome {
    let dma_buf = source.alloc(4096)?;
    let sync_file = dma_buf.export_sync_file(Access::Write)?;
    let wrong = SyncFile::from(dma_buf.as_fd().try_clone_to_owned()?);
    assert_eq!(wrong.status(), Err(Error::NotASyncFile));
    assert_eq!(wrong.info(), Err(Error::NotASyncFile));
    assert_eq!(wrong.merge(&sync_file).err(), Some(Error::NotASyncFile));
    assert_eq!(sync_file.merge(&wrong).err(), Some(Error::NotASyncFile));
    Ok(())
}
