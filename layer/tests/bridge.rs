//! The sync bridge on its own, with pending vgem fences standing in for a
//! GPU's (lavapipe's exports are always already signalled): a render fence
//! attached at present holds back every implicit-sync reader until it
//! signals, and the fences a consumer leaves on a buffer hold back the next
//! acquire.
//!
//! Needs dma-bufs and vgem: reported ignored where they are missing, failed
//! inside the test guest (`SYNCFILE_WSI_VM=1`), where they must be there.

use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use syncfile::sources::vgem::Vgem;
use syncfile::sources::{availability, Availability, FencedBuffer, Source, VM_ENV};
use syncfile::{Access, FenceStatus};
use VkLayer_syncfile_wsi::bridge;

type Outcome = Result<Completion, Failed>;
type Test = fn(Source) -> Result<(), Failed>;

fn check(ok: bool, what: &str) -> Result<(), Failed> {
    if ok {
        Ok(())
    } else {
        Err(what.into())
    }
}

fn main() {
    let tests: [(&str, Test); 3] = [
        ("present_carries_the_render", present_carries_the_render),
        (
            "acquire_waits_for_the_consumer",
            acquire_waits_for_the_consumer,
        ),
        ("write_fences_add_up", write_fences_add_up),
    ];
    let mut trials = Vec::new();
    for source in Source::ALL {
        for (name, test) in tests {
            let needs = if source == Source::Vgem {
                vec![source]
            } else {
                vec![source, Source::Vgem]
            };
            trials.push(Trial::ignorable_test(
                format!("{name}::{source}"),
                move || -> Outcome {
                    match availability(&needs) {
                        Availability::Ready => test(source).map(|()| Completion::Completed),
                        Availability::Skip(why) => Ok(Completion::ignored_with(why.join(", "))),
                        Availability::Fail(why) => Err(format!(
                            "{}, but {VM_ENV}=1 says this is the VM",
                            why.join(", ")
                        )
                        .into()),
                    }
                },
            ));
        }
    }
    libtest_mimic::run(&Arguments::from_args(), trials).exit()
}

/// Present: the render's sync_file, attached as the write fence, keeps the
/// buffer's readers waiting (EPOLLIN, a READ export, the CPU fallback's
/// poll) until it signals; then all of them complete.
fn present_carries_the_render(source: Source) -> Result<(), Failed> {
    let vgem = Vgem::open()?;
    let buffer = FencedBuffer::new(source, &vgem, 4096)?;
    let dma_buf = buffer.dma_buf();
    let (render, sync_file) = vgem.pending_sync_file()?;
    bridge::attach_write_fence(dma_buf, &sync_file)?;

    check(
        !dma_buf.is_ready(Access::Read)?,
        "EPOLLIN before the render signalled",
    )?;
    let read = dma_buf.export_sync_file(Access::Read)?;
    check(
        read.status()? == FenceStatus::Active,
        "the READ export is not pending",
    )?;
    let next_writer = bridge::writer_fence(dma_buf)?;
    check(
        !next_writer.is_signaled()?,
        "the next acquire's fence is not pending",
    )?;
    let start = Instant::now();
    let polled = bridge::wait_for_writer(dma_buf, Some(start + Duration::from_millis(20)))?;
    check(!polled, "the CPU fallback's poll did not wait")?;
    check(
        start.elapsed() >= Duration::from_millis(20),
        "the poll returned early",
    )?;

    render.signal()?;
    check(
        dma_buf.is_ready(Access::Read)?,
        "no EPOLLIN after the render signalled",
    )?;
    check(
        read.wait(Some(Duration::from_secs(1)))?,
        "the READ export never signalled",
    )?;
    check(
        next_writer.is_signaled()?,
        "the acquire fence never signalled",
    )?;
    check(
        bridge::wait_for_writer(dma_buf, Some(Instant::now()))?,
        "the CPU fallback's poll still waits",
    )?;
    Ok(())
}

/// Acquire: a consumer still reading the image (a pending READ fence) holds
/// back the next writer's fence, but not readers.
fn acquire_waits_for_the_consumer(source: Source) -> Result<(), Failed> {
    let vgem = Vgem::open()?;
    let buffer = FencedBuffer::new(source, &vgem, 4096)?;
    let dma_buf = buffer.dma_buf();
    let reading = buffer.attach_fence(Access::Read)?;

    check(
        dma_buf.is_ready(Access::Read)?,
        "a reader waits for another reader",
    )?;
    let acquire = bridge::writer_fence(dma_buf)?;
    check(
        acquire.status()? == FenceStatus::Active,
        "the acquire fence is not pending",
    )?;
    check(
        !bridge::wait_for_writer(dma_buf, Some(Instant::now()))?,
        "the CPU fallback would hand out an image still being read",
    )?;

    reading.signal()?;
    check(
        acquire.wait(Some(Duration::from_secs(1)))?,
        "the acquire fence never signalled",
    )?;
    check(
        bridge::wait_for_writer(dma_buf, Some(Instant::now()))?,
        "the CPU fallback still waits",
    )?;
    Ok(())
}

/// Fences are only ever added: a second present's render does not replace
/// a first one that is still pending.
fn write_fences_add_up(source: Source) -> Result<(), Failed> {
    let vgem = Vgem::open()?;
    let buffer = FencedBuffer::new(source, &vgem, 4096)?;
    let dma_buf = buffer.dma_buf();
    let (first, first_file) = vgem.pending_sync_file()?;
    let (second, second_file) = vgem.pending_sync_file()?;
    bridge::attach_write_fence(dma_buf, &first_file)?;
    bridge::attach_write_fence(dma_buf, &second_file)?;

    second.signal()?;
    check(
        !dma_buf.is_ready(Access::Read)?,
        "the second fence replaced the first",
    )?;
    first.signal()?;
    check(
        dma_buf.is_ready(Access::Read)?,
        "both signalled, still not readable",
    )?;
    Ok(())
}
