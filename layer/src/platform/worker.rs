//! The thread behind a presenter: the application's thread hands it jobs
//! through a bounded channel and rings an eventfd, so a present never
//! blocks and nothing allocates per frame; the thread sleeps in `poll(2)`
//! on that eventfd together with whatever it waits for (a dma-buf, the
//! compositor's socket).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rustix::event::EventfdFlags;

use crate::wsi::platform::PlatformError;

/// The presenter's side: sends jobs, and stops the thread.
pub struct Worker<Job> {
    /// Taken away on stop, which disconnects the thread's inbox.
    tx: Mutex<Option<SyncSender<Job>>>,
    bell: Arc<Bell>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The process that started the thread: a child forked without exec
    /// has no such thread, and must leave the parent's state alone.
    owner: rustix::process::Pid,
}

/// The thread's side: receives jobs, and learns when to stop.
pub struct Inbox<Job> {
    rx: Receiver<Job>,
    bell: Arc<Bell>,
}

/// The eventfd both sides share, and the stop flag it announces.
struct Bell {
    fd: OwnedFd,
    stop: AtomicBool,
}

impl Bell {
    fn ring(&self) {
        // A full counter (never, at one increment per job) still wakes.
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }
}

impl<Job> Drop for Worker<Job> {
    fn drop(&mut self) {
        self.stop();
    }
}

impl<Job> Worker<Job> {
    /// Tells the thread to stop and waits until it has.
    pub fn stop(&self) {
        if rustix::process::getpid() != self.owner {
            let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
            std::mem::forget(thread);
            return;
        }
        self.bell.stop.store(true, Ordering::Release);
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.bell.ring();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            // The thread catches its own panics; a join error cannot carry
            // anything left to report.
            let _ = t.join();
        }
    }
}

impl<Job: Send + 'static> Worker<Job> {
    /// Starts the thread `name` running `serve`, with room for `capacity`
    /// jobs in flight (a swapchain's image count: never more are presented
    /// and not yet handed back).
    pub fn spawn(
        name: &'static str,
        capacity: usize,
        serve: impl FnOnce(Inbox<Job>) + Send + 'static,
    ) -> Result<Self, PlatformError> {
        let (tx, rx) = mpsc::sync_channel(capacity);
        let bell = Arc::new(Bell {
            fd: rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?,
            stop: AtomicBool::new(false),
        });
        let inbox = Inbox {
            rx,
            bell: bell.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("sfwsi-{name}"))
            .spawn(move || serve(inbox))
            .map_err(|e| PlatformError::Thread(name, e))?;
        Ok(Worker {
            tx: Mutex::new(Some(tx)),
            bell,
            thread: Mutex::new(Some(thread)),
            owner: rustix::process::getpid(),
        })
    }

    /// Hands `job` to the thread; false once it is stopped (or, against
    /// the capacity's promise, full).
    pub fn send(&self, job: Job) -> bool {
        // Uncontended: only stop takes this lock otherwise.
        let sent = match &*self.tx.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(tx) => tx.try_send(job).is_ok(),
            None => false,
        };
        if sent {
            self.bell.ring();
        }
        sent
    }
}

impl<Job> Inbox<Job> {
    /// Whether the presenter asked the thread to stop.
    pub fn stopping(&self) -> bool {
        self.bell.stop.load(Ordering::Acquire)
    }

    /// The next job: `Ok(None)` when none waits, `Err(Stopped)` once the
    /// presenter is gone.
    pub fn next(&self) -> Result<Option<Job>, Stopped> {
        match self.rx.try_recv() {
            Ok(job) => Ok(Some(job)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(Stopped),
        }
    }

    /// What to poll for `IN` to wake on a new job or a stop.
    pub fn bell(&self) -> BorrowedFd<'_> {
        self.bell.fd.as_fd()
    }

    /// Silences the bell after a wake, so the next poll sleeps again.
    pub fn hush(&self) {
        let mut buf = [0u8; 8];
        // Nothing to read is fine: the eventfd is non-blocking.
        let _ = rustix::io::read(&self.bell.fd, &mut buf);
    }
}

/// The presenter is gone: no job will come again.
#[derive(Debug)]
pub struct Stopped;
