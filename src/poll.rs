//! Waiting for readiness of one descriptor with `poll(2)`.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;

/// Polls `fd` for `events` until one is ready (`Ok(true)`) or `timeout`
/// passes (`Ok(false)`); `None` waits forever and `Some(Duration::ZERO)`
/// only looks. Signals do not cut the wait short: an interrupted poll is
/// restarted with what is left of the timeout.
pub(crate) fn wait(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    timeout: Option<Duration>,
) -> Result<bool, Errno> {
    // A deadline too far to represent is the same as no deadline.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let left = match (timeout, deadline) {
            (None, _) | (Some(_), None) => None,
            (Some(_), Some(deadline)) => Some(to_timespec(
                deadline.saturating_duration_since(Instant::now()),
            )),
        };
        let mut fds = [PollFd::from_borrowed_fd(fd, events)];
        match poll(&mut fds, left.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => {
                let revents = fds[0].revents();
                if revents.contains(PollFlags::NVAL) {
                    return Err(Errno::BADF);
                }
                return Ok(true);
            }
            Err(Errno::INTR) => continue,
            Err(errno) => return Err(errno),
        }
    }
}

fn to_timespec(duration: Duration) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: duration.subsec_nanos().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_readable_file_is_ready_and_a_silent_pipe_is_not() {
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        assert_eq!(
            wait(file.as_fd(), PollFlags::IN, Some(Duration::ZERO)),
            Ok(true)
        );

        let (reader, _writer) = rustix::pipe::pipe().unwrap();
        assert_eq!(
            wait(
                reader.as_fd(),
                PollFlags::IN,
                Some(Duration::from_millis(1))
            ),
            Ok(false)
        );
    }

    #[test]
    fn huge_timeouts_do_not_overflow() {
        assert_eq!(to_timespec(Duration::MAX).tv_sec, i64::MAX);
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        assert_eq!(
            wait(file.as_fd(), PollFlags::IN, Some(Duration::MAX)),
            Ok(true)
        );
    }
}
