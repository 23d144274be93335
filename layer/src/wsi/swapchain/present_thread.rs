//! The CPU fallback's present thread, one per swapchain: it waits for each
//! presented image's render fence and then hands the image to the backend,
//! so that the application's thread never waits.
//!
//! Jobs arrive through a bounded channel sized for every image, so a
//! present never blocks and nothing allocates per frame.

use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use ash::vk;

use crate::backend::{Frame, Presenter};
use crate::entry::try_guard;
use crate::stats::{self, Wait};
use crate::swapchain::pool::Pool;

struct Job {
    frame: Frame,
    /// Signalled when the present submission (and so the render) is done.
    fence: vk::Fence,
}

pub struct PresentThread {
    tx: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl PresentThread {
    pub fn start(
        device: ash::Device,
        presenter: Arc<dyn Presenter>,
        pool: Arc<Pool>,
        images: usize,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Job>(images);
        let thread = std::thread::Builder::new()
            .name("sfwsi-present".into())
            .spawn(move || {
                for job in rx {
                    let ok = try_guard("the present thread", "the image is released", || {
                        serve(&device, &*presenter, &pool, &job)
                    });
                    if ok.is_none() {
                        pool.release(job.frame.index);
                    }
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues `frame` to be handed over once `fence` signals; false if the
    /// thread is gone.
    pub fn send(&self, frame: Frame, fence: vk::Fence) -> bool {
        self.tx
            .as_ref()
            .is_some_and(|tx| tx.try_send(Job { frame, fence }).is_ok())
    }

    /// Lets the thread finish the jobs it has (waiting for their renders)
    /// and end.
    pub fn finish(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            // The thread catches its own panics; a join error carries
            // nothing left to report.
            let _ = t.join();
        }
    }
}

impl Drop for PresentThread {
    fn drop(&mut self) {
        self.finish();
    }
}

fn serve(device: &ash::Device, presenter: &dyn Presenter, pool: &Pool, job: &Job) {
    let fences = [job.fence];
    // SAFETY: the fence is the image's own, alive until this thread ends
    // (the swapchain finishes the thread before destroying it), and only
    // this thread waits on or resets it.
    let status = unsafe { device.get_fence_status(job.fence) };
    let waited = match status {
        Ok(true) => Ok(()),
        Ok(false) => {
            let start = Instant::now();
            // SAFETY: as above.
            let r = unsafe { device.wait_for_fences(&fences, true, u64::MAX) };
            stats::waited(Wait::RenderFence, start.elapsed());
            r
        }
        Err(e) => Err(e),
    };
    if let Err(e) = waited {
        pool.set_status(e);
        pool.release(job.frame.index);
        return;
    }
    // SAFETY: as above; the fence has signalled and nothing else uses it.
    if let Err(e) = unsafe { device.reset_fences(&fences) } {
        pool.set_status(e);
    }
    if presenter.present(job.frame, None).as_raw() < 0 {
        pool.release(job.frame.index);
    }
}
