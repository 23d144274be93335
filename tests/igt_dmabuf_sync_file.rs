//! IGT's `dmabuf_sync_file` checklist, on each dma-buf source.
//!
//! IGT runs these on vgem buffers with vgem fences and sw_sync timelines.
//! Here the buffer comes from each source in turn, and every pending fence
//! is a vgem fence: attached to the buffer itself on vgem, imported as a
//! sync_file with the same access on the heap and udmabuf buffers.
//!
//! "Busy" is observed two ways, as IGT does: `poll(2)` on the dma-buf with
//! a zero timeout, and whether a freshly exported sync_file has signalled.

use std::time::Duration;

use libtest_mimic::Failed;
use syncfile::sources::vgem::Vgem;
use syncfile::sources::{FencedBuffer, Source};
use syncfile::{Access, DmaBuf, SyncFile};
use syncfile_tests::{Outcome, Suite};

/// Fences IGT's import-multiple tests import for reading.
const READERS: usize = 32;

type Test = fn(Source) -> Outcome;

fn main() {
    let tests: [(&str, Test); 7] = [
        ("export-basic", export_basic),
        ("export-before-signal", export_before_signal),
        ("export-multiwait", export_multiwait),
        ("export-wait-after-attach", export_wait_after_attach),
        ("import-basic", import_basic),
        ("import-multiple-read-only", |s| import_multiple(s, false)),
        ("import-multiple-read-write", |s| import_multiple(s, true)),
    ];
    let mut suite = Suite::new();
    for (name, test) in tests {
        for source in Source::ALL {
            suite.add(format!("{name}::{source}"), &needs(source), move || {
                test(source)
            });
        }
    }
    suite.run(false)
}

/// The buffer's source, and vgem for the fences.
fn needs(source: Source) -> Vec<Source> {
    if source == Source::Vgem {
        vec![source]
    } else {
        vec![source, Source::Vgem]
    }
}

/// A fresh one-page buffer from `source` and the vgem device for fences.
fn setup(source: Source) -> Result<(Vgem, FencedBuffer), Failed> {
    let vgem = Vgem::open()?;
    let buffer = FencedBuffer::new(source, &vgem, 4096)?;
    Ok((vgem, buffer))
}

/// Whether the sync_file has not signalled yet, by `poll(2)`; checked
/// against `SYNC_IOC_FILE_INFO`, which must agree.
fn sync_file_busy(sync_file: &SyncFile) -> Result<bool, Failed> {
    let polled = sync_file.wait(Some(Duration::ZERO))?;
    let status = sync_file.is_signaled()?;
    if polled != status {
        return Err(format!("poll says signalled={polled}, FILE_INFO says {status}").into());
    }
    Ok(!polled)
}

/// Checks both views of the buffer: a reader is blocked exactly when
/// `read_busy`, a writer exactly when `write_busy`.
fn expect(dma_buf: &DmaBuf, read_busy: bool, write_busy: bool, when: &str) -> Outcome {
    for (access, busy) in [
        (Access::Read, read_busy),
        (Access::Write, write_busy),
        (Access::ReadWrite, write_busy),
    ] {
        let polled = !dma_buf.is_ready(access)?;
        if polled != busy {
            return Err(format!("{when}: poll says {access:?} busy={polled}, want {busy}").into());
        }
        let exported = sync_file_busy(&dma_buf.export_sync_file(access)?)?;
        if exported != busy {
            return Err(format!("{when}: {access:?} export busy={exported}, want {busy}").into());
        }
    }
    Ok(())
}

fn export_basic(source: Source) -> Outcome {
    let (_vgem, buffer) = setup(source)?;
    let dma_buf = buffer.dma_buf();
    expect(dma_buf, false, false, "new buffer")?;

    let fence = buffer.attach_fence(Access::Read)?;
    expect(dma_buf, false, true, "read fence pending")?;
    fence.signal()?;
    expect(dma_buf, false, false, "read fence signalled")?;

    let fence = buffer.attach_fence(Access::Write)?;
    expect(dma_buf, true, true, "write fence pending")?;
    fence.signal()?;
    expect(dma_buf, false, false, "write fence signalled")
}

fn export_before_signal(source: Source) -> Outcome {
    let (_vgem, buffer) = setup(source)?;
    let dma_buf = buffer.dma_buf();
    assert!(!sync_file_busy(&dma_buf.export_sync_file(Access::Read)?)?);
    assert!(!sync_file_busy(&dma_buf.export_sync_file(Access::Write)?)?);

    let fence = buffer.attach_fence(Access::Read)?;
    let read = dma_buf.export_sync_file(Access::Read)?;
    let write = dma_buf.export_sync_file(Access::Write)?;
    assert!(!sync_file_busy(&read)?, "a reader waits for no reader");
    assert!(sync_file_busy(&write)?, "a writer waits for the reader");
    fence.signal()?;
    assert!(!sync_file_busy(&read)?);
    assert!(
        !sync_file_busy(&write)?,
        "the export signals with its fence"
    );

    let fence = buffer.attach_fence(Access::Write)?;
    let read = dma_buf.export_sync_file(Access::Read)?;
    let write = dma_buf.export_sync_file(Access::Write)?;
    assert!(sync_file_busy(&read)?, "a reader waits for the writer");
    assert!(sync_file_busy(&write)?, "a writer waits for the writer");
    fence.signal()?;
    assert!(!sync_file_busy(&read)?);
    assert!(!sync_file_busy(&write)?);
    Ok(())
}

fn export_multiwait(source: Source) -> Outcome {
    let (_vgem, buffer) = setup(source)?;
    let dma_buf = buffer.dma_buf();
    let first = buffer.attach_fence(Access::Read)?;
    let second = buffer.attach_fence(Access::Read)?;
    let sync_file = dma_buf.export_sync_file(Access::Write)?;
    let third = buffer.attach_fence(Access::Read)?;

    assert!(sync_file_busy(&sync_file)?);
    first.signal()?;
    assert!(sync_file_busy(&sync_file)?, "the second fence is pending");
    second.signal()?;
    assert!(
        !sync_file_busy(&sync_file)?,
        "the third fence came after the export and is not in it"
    );
    third.signal()?;
    Ok(())
}

fn export_wait_after_attach(source: Source) -> Outcome {
    let (_vgem, buffer) = setup(source)?;
    let dma_buf = buffer.dma_buf();
    let read = dma_buf.export_sync_file(Access::Read)?;
    let write = dma_buf.export_sync_file(Access::Write)?;
    let first = buffer.attach_fence(Access::Write)?;
    assert!(!sync_file_busy(&read)?, "exported before the fence");
    assert!(!sync_file_busy(&write)?, "exported before the fence");

    let read = dma_buf.export_sync_file(Access::Read)?;
    let write = dma_buf.export_sync_file(Access::Write)?;
    assert!(sync_file_busy(&read)?);
    assert!(sync_file_busy(&write)?);

    first.signal()?;
    let second = buffer.attach_fence(Access::Write)?;
    assert!(!sync_file_busy(&read)?, "holds only the signalled fence");
    assert!(!sync_file_busy(&write)?, "holds only the signalled fence");
    assert!(sync_file_busy(&dma_buf.export_sync_file(Access::Read)?)?);
    assert!(sync_file_busy(&dma_buf.export_sync_file(Access::Write)?)?);
    second.signal()?;
    Ok(())
}

fn import_basic(source: Source) -> Outcome {
    let (vgem, buffer) = setup(source)?;
    let dma_buf = buffer.dma_buf();
    expect(dma_buf, false, false, "new buffer")?;

    let (fence, sync_file) = vgem.pending_sync_file()?;
    dma_buf.import_sync_file(&sync_file, Access::Read)?;
    expect(dma_buf, false, true, "imported for reading")?;
    fence.signal()?;
    expect(dma_buf, false, false, "read import signalled")?;

    for access in [Access::Write, Access::ReadWrite] {
        let (fence, sync_file) = vgem.pending_sync_file()?;
        dma_buf.import_sync_file(&sync_file, access)?;
        expect(dma_buf, true, true, &format!("imported for {access:?}"))?;
        fence.signal()?;
        expect(
            dma_buf,
            false,
            false,
            &format!("{access:?} import signalled"),
        )?;
    }
    Ok(())
}

fn import_multiple(source: Source, with_writer: bool) -> Outcome {
    let (vgem, buffer) = setup(source)?;
    let dma_buf = buffer.dma_buf();
    expect(dma_buf, false, false, "new buffer")?;

    let mut readers = Vec::with_capacity(READERS);
    for _ in 0..READERS {
        let (fence, sync_file) = vgem.pending_sync_file()?;
        dma_buf.import_sync_file(&sync_file, Access::Read)?;
        readers.push(fence);
    }
    let writer = if with_writer {
        let (fence, sync_file) = vgem.pending_sync_file()?;
        dma_buf.import_sync_file(&sync_file, Access::Write)?;
        Some(fence)
    } else {
        None
    };

    let read = dma_buf.export_sync_file(Access::Read)?;
    let write = dma_buf.export_sync_file(Access::Write)?;
    while let Some(reader) = readers.pop() {
        let left = readers.len() + 1;
        assert_eq!(
            !dma_buf.is_ready(Access::Read)?,
            with_writer,
            "{left} readers left"
        );
        assert_eq!(sync_file_busy(&read)?, with_writer, "{left} readers left");
        assert!(!dma_buf.is_ready(Access::Write)?, "{left} readers left");
        assert!(sync_file_busy(&write)?, "{left} readers left");
        reader.signal()?;
    }

    assert_eq!(!dma_buf.is_ready(Access::Read)?, with_writer);
    assert_eq!(sync_file_busy(&read)?, with_writer);
    assert_eq!(!dma_buf.is_ready(Access::Write)?, with_writer);
    assert_eq!(sync_file_busy(&write)?, with_writer);

    if let Some(writer) = writer {
        writer.signal()?;
    }
    expect(dma_buf, false, false, "every fence signalled")?;
    assert!(!sync_file_busy(&read)?);
    assert!(!sync_file_busy(&write)?);
    Ok(())
}
