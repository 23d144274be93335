//! The CPU fallback's present thread, one per swapchain: it waits for each
//! presented image's render fence and then hands the image to its
//! consumer, so that the application's thread never waits.
//!
//! Jobs arrive through a bounded channel sized for every image, so a
//! present never blocks and nothing allocates per frame. Its waits are
//! sliced, so that destruction can tell it to give up on a render that
//! does not finish.

use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ash::vk;

use super::pool::Pool;
use crate::plumbing::guard::try_guard;
use crate::plumbing::stats::{self, Wait};
use crate::wsi::platform::{Frame, Presenter};

/// How often a wait for a render looks whether to give up.
const SLICE: Duration = Duration::from_millis(50);

struct Job {
    frame: Frame,
    /// Signalled when the present submission (and so the render) is done.
    fence: vk::Fence,
}

pub struct PresentThread {
    tx: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// When set, the thread stops waiting for renders at that time.
    give_up: Arc<Mutex<Option<Instant>>>,
    /// The process that started the thread: a child forked without exec
    /// has no such thread.
    owner: rustix::process::Pid,
}

impl PresentThread {
    pub fn start(
        device: ash::Device,
        presenter: Arc<dyn Presenter>,
        pool: Arc<Pool>,
        images: usize,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Job>(images);
        let give_up = Arc::new(Mutex::new(None));
        let deadline = give_up.clone();
        let thread = std::thread::Builder::new()
            .name("sfwsi-present".into())
            .spawn(move || {
                for job in rx {
                    let ok = try_guard("the present thread", "the image is released", || {
                        serve(&device, &*presenter, &pool, &job, &deadline)
                    });
                    if ok.is_none() {
                        pool.release(job.frame.index);
                    }
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
            give_up,
            owner: rustix::process::getpid(),
        })
    }

    /// Queues `frame` to be handed over once `fence` signals; false if the
    /// thread is gone.
    pub fn send(&self, frame: Frame, fence: vk::Fence) -> bool {
        self.tx
            .as_ref()
            .is_some_and(|tx| tx.try_send(Job { frame, fence }).is_ok())
    }

    /// Lets the thread finish the jobs it has, waiting for their renders
    /// until `deadline` at most, and end.
    pub fn finish(&mut self, deadline: Instant) {
        *self.give_up.lock().unwrap_or_else(|e| e.into_inner()) = Some(deadline);
        self.tx = None;
        let Some(t) = self.thread.take() else {
            return;
        };
        if rustix::process::getpid() != self.owner {
            // A forked child: the thread is the parent's.
            std::mem::forget(t);
            return;
        }
        // The thread catches its own panics; a join error carries nothing
        // left to report.
        let _ = t.join();
    }
}

impl Drop for PresentThread {
    fn drop(&mut self) {
        self.finish(Instant::now());
    }
}

fn serve(
    device: &ash::Device,
    presenter: &dyn Presenter,
    pool: &Pool,
    job: &Job,
    give_up: &Mutex<Option<Instant>>,
) {
    let fences = [job.fence];
    // SAFETY: the fence is the image's own, alive until this
    // thread ends (the swapchain finishes the thread before freeing its
    // images); the application's thread resets it only after this thread
    // handed the image on.
    let mut status = unsafe { device.get_fence_status(job.fence) };
    if status == Ok(false) {
        let start = Instant::now();
        status = loop {
            // SAFETY: as above.
            match unsafe { device.wait_for_fences(&fences, true, SLICE.as_nanos() as u64) } {
                Err(vk::Result::TIMEOUT) => {
                    let deadline = *give_up.lock().unwrap_or_else(|e| e.into_inner());
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        // Destruction waits no longer: the image stays unshown.
                        pool.release(job.frame.index);
                        return;
                    }
                }
                done => break done.map(|()| true),
            }
        };
        stats::waited(Wait::RenderFence, start.elapsed());
    }
    if let Err(e) = status {
        pool.set_status(e);
        pool.release(job.frame.index);
        return;
    }
    if presenter.present(job.frame, None, None).as_raw() < 0 {
        pool.release(job.frame.index);
    }
}
