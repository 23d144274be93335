//! Sync_files on their own: merge two, look inside, wait, and duplicate
//! one for an API that takes ownership of its descriptor.
//!
//! The sync_files are exported from a dma-buf of the system dma-heap
//! (`/dev/dma_heap/system`); on a machine without one, or without the
//! sync_file ioctls (Linux 6.0+), the example says so and stops.
//! `cargo run --example fences`.

use std::os::fd::OwnedFd;
use std::time::Duration;

use syncfile::heap::{self, DmaHeap};
use syncfile::{Access, Error};

fn main() -> Result<(), Error> {
    let buffer = match DmaHeap::open(heap::SYSTEM).and_then(|heap| heap.alloc(4096)) {
        Ok(buffer) => buffer,
        // This project's test guest (SYNCFILE_WSI_VM=1) has the heap and
        // the ioctls: there their absence is a failure.
        Err(e) if std::env::var_os("SYNCFILE_WSI_VM").is_none() => {
            println!("skipped: {}/{}: {e}", heap::DIR, heap::SYSTEM);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let (writers, everyone) = match (
        buffer.export_sync_file(Access::Read),
        buffer.export_sync_file(Access::Write),
    ) {
        (Ok(writers), Ok(everyone)) => (writers, everyone),
        (Err(Error::Unsupported), _) | (_, Err(Error::Unsupported))
            if std::env::var_os("SYNCFILE_WSI_VM").is_none() =>
        {
            println!("skipped: {}", Error::Unsupported);
            return Ok(());
        }
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };

    // One sync_file that signals once both have: what a consumer of two
    // buffers waits for.
    let both = writers.merge_named(&everyone, "both")?;
    let info = both.info()?;
    println!("{:?}: {:?}", info.name, info.status);
    for fence in &info.fences {
        println!(
            "  {} on {}: {:?}, at {:?}",
            fence.driver, fence.timeline, fence.status, fence.timestamp
        );
    }

    // Waiting: nothing is pending on an idle buffer, so this is at once.
    let signalled = both.wait(Some(Duration::from_secs(1)))?;
    println!("signalled: {signalled}, {:?}", both.status()?);

    // An API that takes the descriptor (a Wayland request, a KMS plane's
    // IN_FENCE_FD) gets its own duplicate; `both` stays usable here.
    let handed_over: OwnedFd = both.try_clone()?.into();
    drop(handed_over);
    assert!(both.is_signaled()?);
    Ok(())
}
