//! What the layer relies on: a pending fence crosses from explicit to
//! implicit sync and back; sync_files merge and describe themselves; CPU
//! access brackets work on every exporter; the probe finds the ioctls.

use std::os::fd::AsFd;
use std::thread;
use std::time::Duration;

use libtest_mimic::Failed;
use syncfile::sources::vgem::Vgem;
use syncfile::sources::{FencedBuffer, Source};
use syncfile::{probe, Access, DmaBuf, FenceStatus};
use syncfile_tests::{Outcome, Suite};

type Test = fn(Source) -> Outcome;

fn main() {
    let with_vgem: [(&str, Test); 2] = [
        ("bridge-round-trip", bridge_round_trip),
        ("merge-info-pending", merge_info_pending),
    ];
    let alone: [(&str, Test); 3] = [
        ("merge-info-signalled", merge_info_signalled),
        ("cpu-access", cpu_access),
        ("probe", probe_finds_the_ioctls),
    ];
    let mut suite = Suite::new();
    for source in Source::ALL {
        for (name, test) in with_vgem {
            let needs = if source == Source::Vgem {
                vec![source]
            } else {
                vec![source, Source::Vgem]
            };
            suite.add(format!("{name}::{source}"), &needs, move || test(source));
        }
        for (name, test) in alone {
            suite.add(format!("{name}::{source}"), &[source], move || test(source));
        }
    }
    suite.run(false)
}

/// Joins a waiter thread, turning its panic into a failure.
fn join<T>(waiter: thread::JoinHandle<T>) -> Result<T, Failed> {
    waiter
        .join()
        .map_err(|_| Failed::from("the waiting thread panicked"))
}

/// A pending vgem fence, exported as a sync_file and imported with write
/// access, makes a reader wait: `EPOLLIN` on the dma-buf and a read export
/// stay pending until the vgem fence signals, and then both complete.
fn bridge_round_trip(source: Source) -> Outcome {
    let vgem = Vgem::open()?;
    let buffer = FencedBuffer::new(source, &vgem, 4096)?;
    let dma_buf = buffer.dma_buf();
    let (fence, sync_file) = vgem.pending_sync_file()?;
    dma_buf.import_sync_file(&sync_file, Access::Write)?;

    assert!(
        !dma_buf.is_ready(Access::Read)?,
        "EPOLLIN before the signal"
    );
    assert!(
        !dma_buf.is_ready(Access::Write)?,
        "EPOLLOUT before the signal"
    );
    assert!(
        !dma_buf.wait(Access::Read, Some(Duration::from_millis(1)))?,
        "a bounded poll for EPOLLIN must time out"
    );
    let read = dma_buf.export_sync_file(Access::Read)?;
    assert!(
        !read.wait(Some(Duration::ZERO))?,
        "the read export is pending"
    );
    assert_eq!(read.status()?, FenceStatus::Active);
    let info = read.info()?;
    assert_eq!(info.fences.len(), 1, "{info:?}");
    assert_eq!(info.fences[0].driver, "vgem", "{info:?}");
    assert_eq!(info.fences[0].timestamp, None, "{info:?}");

    let poller = DmaBuf::from(dma_buf.as_fd().try_clone_to_owned()?);
    let polling = thread::spawn(move || poller.wait(Access::Read, None));
    let read_copy = read.try_clone()?;
    let waiting = thread::spawn(move || read_copy.wait(None));
    assert!(!polling.is_finished(), "poll returned before the signal");
    assert!(
        !waiting.is_finished(),
        "the sync_file wait returned before the signal"
    );

    fence.signal()?;
    assert!(
        join(polling)??,
        "poll for EPOLLIN completes after the signal"
    );
    assert!(
        join(waiting)??,
        "the read export completes after the signal"
    );
    assert!(read.is_signaled()?);
    assert!(dma_buf.is_ready(Access::Read)?);
    assert!(dma_buf.is_ready(Access::Write)?);
    let info = read.info()?;
    assert_eq!(info.status, FenceStatus::Signaled, "{info:?}");
    assert!(info.fences[0].timestamp.is_some(), "{info:?}");
    Ok(())
}

fn merge_info_pending(source: Source) -> Outcome {
    let vgem = Vgem::open()?;
    let first_buffer = FencedBuffer::new(source, &vgem, 4096)?;
    let signalled = first_buffer.dma_buf().export_sync_file(Access::Write)?;
    let first_fence = first_buffer.attach_fence(Access::Write)?;
    let first = first_buffer.dma_buf().export_sync_file(Access::Read)?;
    let second_buffer = FencedBuffer::new(source, &vgem, 4096)?;
    let second_fence = second_buffer.attach_fence(Access::Write)?;
    let second = second_buffer.dma_buf().export_sync_file(Access::Read)?;

    let merged = first.merge_named(&second, "syncfile-test")?;
    let info = merged.info()?;
    assert_eq!(info.name, "syncfile-test");
    assert_eq!(info.status, FenceStatus::Active);
    assert_eq!(info.fences.len(), 2, "{info:?}");
    for fence in &info.fences {
        assert_eq!(fence.driver, "vgem", "{info:?}");
        assert_eq!(fence.status, FenceStatus::Active, "{info:?}");
        assert_eq!(fence.timestamp, None, "{info:?}");
    }
    assert!(
        !merged.merge(&first)?.info()?.name.is_empty(),
        "the kernel names it"
    );
    assert_eq!(
        first.merge(&first)?.info()?.fences.len(),
        1,
        "duplicates go"
    );
    let with_signalled = first.merge(&signalled)?.info()?;
    assert_eq!(
        with_signalled.fences.len(),
        1,
        "signalled fences are left out"
    );
    assert_eq!(with_signalled.status, FenceStatus::Active);

    first_fence.signal()?;
    assert!(!merged.is_signaled()?, "the second fence is pending");
    assert!(!merged.wait(Some(Duration::ZERO))?);
    let info = merged.info()?;
    let signalled_now: Vec<_> = info.fences.iter().map(|f| f.status).collect();
    assert!(signalled_now.contains(&FenceStatus::Signaled), "{info:?}");
    assert!(signalled_now.contains(&FenceStatus::Active), "{info:?}");
    assert!(
        info.fences.iter().any(|f| f.timestamp.is_some()),
        "{info:?}"
    );

    second_fence.signal()?;
    assert!(merged.is_signaled()?);
    assert!(merged.wait(Some(Duration::ZERO))?);
    let info = merged.info()?;
    assert_eq!(info.status, FenceStatus::Signaled, "{info:?}");
    assert!(
        info.fences.iter().all(|f| f.timestamp.is_some()),
        "{info:?}"
    );
    Ok(())
}

fn merge_info_signalled(source: Source) -> Outcome {
    let dma_buf = source.alloc(4096)?;
    let write = dma_buf.export_sync_file(Access::Write)?;
    let read = dma_buf.export_sync_file(Access::Read)?;
    for file in [&write, &read] {
        let info = file.info()?;
        assert_eq!(info.status, FenceStatus::Signaled, "{info:?}");
        assert!(!info.fences.is_empty(), "an idle export holds a stub fence");
        for fence in &info.fences {
            assert_eq!(fence.status, FenceStatus::Signaled, "{info:?}");
            assert!(fence.timestamp.is_some(), "{info:?}");
        }
    }
    let merged = write.merge(&read)?;
    assert!(merged.is_signaled()?);
    assert_eq!(merged.status()?, FenceStatus::Signaled);
    assert!(
        merged.wait(None)?,
        "waiting for a signalled file returns at once"
    );
    assert_eq!(merged.info()?.status, FenceStatus::Signaled);
    Ok(())
}

fn cpu_access(source: Source) -> Outcome {
    use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};
    const LEN: usize = 4096;
    let dma_buf = source.alloc(LEN)?;
    // SAFETY: a fresh shared mapping of our own buffer, at an address the
    // kernel picks; it is only touched through the slice below and unmapped
    // before the buffer is dropped.
    let map = unsafe {
        mmap(
            core::ptr::null_mut(),
            LEN,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            &dma_buf,
            0,
        )
    }?;
    // SAFETY: `map` is LEN readable and writable bytes that nothing else in
    // this process aliases.
    let bytes = unsafe { core::slice::from_raw_parts_mut(map.cast::<u8>(), LEN) };

    let writing = dma_buf.cpu_access(Access::Write)?;
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = (i % 251) as u8;
    }
    writing.finish()?;
    let reading = dma_buf.cpu_access(Access::Read)?;
    let intact = bytes.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8);
    drop(reading);
    dma_buf.begin_cpu_access(Access::ReadWrite)?;
    dma_buf.end_cpu_access(Access::ReadWrite)?;

    // SAFETY: `map` came from the mmap above and `bytes` is not used again.
    unsafe { munmap(map, LEN) }?;
    assert!(intact, "what the CPU wrote reads back");
    Ok(())
}

fn probe_finds_the_ioctls(source: Source) -> Outcome {
    let dma_buf = source.alloc(4096)?;
    assert_eq!(probe::probe(&dma_buf)?, probe::Support::Available);
    assert_eq!(probe::cached(), Some(probe::Support::Available));
    Ok(())
}
