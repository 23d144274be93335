//! No descriptor leaks: the number of open descriptors is the same before
//! and after 10 000 export/import/merge/info cycles on each source, with a
//! pending fence on the buffer so the exports carry real fences.
//!
//! The trials count the whole process's descriptors, so they run one at a
//! time in a binary of their own.

use syncfile::sources::vgem::Vgem;
use syncfile::sources::{FencedBuffer, Source};
use syncfile::Access;
use syncfile_tests::{Outcome, Suite};

const CYCLES: usize = 10_000;

fn main() {
    let mut suite = Suite::new();
    for source in Source::ALL {
        let needs = if source == Source::Vgem {
            vec![source]
        } else {
            vec![source, Source::Vgem]
        };
        suite.add(format!("fd-leak::{source}"), &needs, move || cycles(source));
    }
    suite.run(true)
}

fn open_fds() -> std::io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")?.count())
}

fn cycle(buffer: &FencedBuffer) -> Outcome {
    let dma_buf = buffer.dma_buf();
    let write = dma_buf.export_sync_file(Access::Write)?;
    dma_buf.import_sync_file(&write, Access::Write)?;
    let read = dma_buf.export_sync_file(Access::Read)?;
    dma_buf.import_sync_file(&read, Access::Read)?;
    let merged = read.merge(&write)?;
    merged.info()?;
    merged.try_clone()?.status()?;
    Ok(())
}

fn cycles(source: Source) -> Outcome {
    let vgem = Vgem::open()?;
    let buffer = FencedBuffer::new(source, &vgem, 4096)?;
    let fence = buffer.attach_fence(Access::Write)?;
    // One cycle first, so that anything opened once per process is open
    // before the count.
    cycle(&buffer)?;
    let before = open_fds()?;
    for _ in 0..CYCLES {
        cycle(&buffer)?;
    }
    let after = open_fds()?;
    assert!(
        !buffer.dma_buf().is_ready(Access::Read)?,
        "the fence was pending throughout"
    );
    fence.signal()?;
    assert!(buffer.dma_buf().is_ready(Access::Write)?);
    assert_eq!(
        before, after,
        "open descriptors before and after {CYCLES} cycles"
    );
    Ok(())
}
