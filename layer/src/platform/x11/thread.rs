//! The X11 swapchain's own thread: triggers the wait fences of frames
//! whose dma-bufs' writers are done, in the order they were presented
//! (polling the first one's dma-buf), and reads the connection's events
//! (polling its socket), until the presenter stops it or the connection
//! fails.

use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use syncfile::Access;
use x11rb::connection::Connection;
use x11rb::protocol::sync;

use super::link::Shared;
use super::X11Error;
use crate::platform::worker::Inbox;
use crate::plumbing::guard::try_guard;

/// How long the layer's thread sleeps when nothing happens; a stop or a
/// fence to bridge rings it awake.
const IDLE: Duration = Duration::from_secs(1);

/// A fence for the thread to trigger once image `index`'s writers are done.
pub struct Bridge {
    pub fence: sync::Fence,
    pub index: u32,
}

/// The layer's thread: triggers the wait fences of frames whose dma-bufs'
/// writers are done, in order, and handles the connection's events.
pub fn serve(shared: &Shared, inbox: Inbox<Bridge>) {
    let served = try_guard("the X11 thread", "its surface is lost", || {
        bridge_and_read(shared, &inbox)
    });
    let why = match served {
        Some(Ok(())) => return,
        Some(Err(e)) => e.to_string(),
        None => "an internal error".to_owned(),
    };
    shared.lost(why);
    // Lost: every image goes back, so that no acquire waits for it.
    for i in 0..shared.images.len() as u32 {
        shared.returns.release(i, None);
    }
}

fn bridge_and_read(shared: &Shared, inbox: &Inbox<Bridge>) -> Result<(), X11Error> {
    let mut waiting: VecDeque<Bridge> = VecDeque::new();
    while !inbox.stopping() {
        while let Ok(Some(b)) = inbox.next() {
            waiting.push_back(b);
        }
        let mut triggered = false;
        while let Some(b) = waiting.front() {
            let ready = shared
                .images
                .get(b.index)
                .is_none_or(|i| i.buffer.dma_buf.is_ready(Access::Read).unwrap_or(true));
            if !ready {
                break;
            }
            tracing::debug!(
                "image {}'s writers are done: triggering its wait fence",
                b.index
            );
            sync::trigger_fence(&shared.conn, b.fence)?;
            triggered = true;
            waiting.pop_front();
        }
        if triggered {
            shared.conn.flush()?;
        }
        shared.drain()?;
        let socket = shared.conn.stream().as_fd();
        let bell = inbox.bell();
        let first = waiting
            .front()
            .and_then(|b| shared.images.get(b.index))
            .map(|i| i.buffer.dma_buf.as_fd());
        let mut fds = vec![
            PollFd::new(&bell, PollFlags::IN),
            PollFd::new(&socket, PollFlags::IN),
        ];
        if let Some(fd) = &first {
            fds.push(PollFd::new(fd, PollFlags::IN));
        }
        let idle = rustix::event::Timespec::try_from(IDLE).ok();
        match rustix::event::poll(&mut fds, idle.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(X11Error::Unsupported(format!("poll: {e}"))),
        }
        inbox.hush();
    }
    Ok(())
}
