//! A producer hands a buffer to a consumer that relies on implicit sync:
//! it attaches its render's fence to the dma-buf, and the consumer waits
//! for the buffer, never for the producer.
//!
//! The buffer comes from the system dma-heap (`/dev/dma_heap/system`,
//! `CONFIG_DMABUF_HEAPS_SYSTEM`, often root only); on a machine without
//! one the example says so and stops. `cargo run --example handoff`.

use std::time::Duration;

use syncfile::heap::{self, DmaHeap};
use syncfile::probe::{self, Support};
use syncfile::{Access, DmaBuf};

fn main() -> Result<(), syncfile::Error> {
    let Some(buffer) = buffer()? else {
        return Ok(());
    };

    // Once per process: does the kernel have the two ioctls (Linux 6.0+)?
    // Without them a consumer can still wait for the buffer with poll(2).
    if probe::probe(&buffer)? == Support::Unavailable {
        println!("no sync_file ioctls in this kernel: waiting on the dma-buf");
        let idle = buffer.wait(Access::Write, Some(Duration::from_secs(1)))?;
        println!("buffer idle: {idle}");
        return Ok(());
    }

    // Before it writes, the producer takes every fence a writer must wait
    // for (the consumer's reads of the last frame) as one sync_file, for
    // its GPU to wait on instead of the CPU.
    let before_writing = buffer.export_sync_file(Access::Write)?;

    // Here a GPU would render, waiting for `before_writing`, and its driver
    // would give a sync_file that signals when the render is done. With no
    // GPU, `before_writing` stands in for it. Importing it as a write fence
    // makes every later user of the buffer wait for it.
    let render_done = before_writing;
    buffer.import_sync_file(&render_done, Access::Write)?;

    // The consumer: the fences a reader must wait for, as a sync_file to
    // hand to its own driver, or a plain wait on the buffer.
    let before_reading = buffer.export_sync_file(Access::Read)?;
    let info = before_reading.info()?;
    println!(
        "a reader waits for {} fence(s), {:?}",
        info.fences.len(),
        info.status
    );
    let ready = buffer.wait(Access::Read, Some(Duration::from_secs(1)))?;
    println!("ready to read: {ready}");

    // A consumer on the CPU brackets its access to a mapping, so that the
    // exporter keeps its caches coherent.
    buffer.cpu_access(Access::Read)?.finish()?;
    Ok(())
}

/// A small dma-buf from the system heap, or `None` (saying why) where this
/// machine has none.
fn buffer() -> Result<Option<DmaBuf>, syncfile::Error> {
    match DmaHeap::open(heap::SYSTEM) {
        Ok(heap) => heap.alloc(4096).map(Some),
        // This project's test guest (SYNCFILE_WSI_VM=1) has the heap: there
        // a missing one is a failure, not a reason to stop.
        Err(e) if std::env::var_os("SYNCFILE_WSI_VM").is_none() => {
            println!("skipped: {}/{}: {e}", heap::DIR, heap::SYSTEM);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
