//! The launcher stays until its command ends, whatever signal comes, so it
//! can report the command's status and statistics and remove its scratch
//! manifest. A signal someone sent the launcher (`kill`, a session
//! manager, a game launcher stopping its child) is passed on to the
//! command, as `sudo` does; one the terminal sent is not, because the
//! terminal sent it to the command as well (its whole foreground group).

use std::io;
use std::mem::MaybeUninit;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};

/// What is passed on: the signals that ask a program to stop.
const RELAYED: [libc::c_int; 4] = [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM];

/// The relayed signals and `SIGCHLD`, blocked on the launcher's thread
/// from before the command starts (so none is lost or kills the launcher
/// meanwhile) until dropped. The command starts with the mask the
/// launcher had ([`Relay::command`]).
pub struct Relay {
    set: libc::sigset_t,
    before: libc::sigset_t,
}

impl Relay {
    /// Blocks the signals. Call it on the only thread: a thread that has
    /// them unblocked would take them in the default way.
    pub fn block() -> io::Result<Relay> {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        let mut before = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: `set` is initialised by sigemptyset before it is read,
        // `before` by pthread_sigmask, which succeeds for a valid `how`.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            for sig in RELAYED.iter().chain(&[libc::SIGCHLD]) {
                libc::sigaddset(set.as_mut_ptr(), *sig);
            }
            let err = libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), before.as_mut_ptr());
            if err != 0 {
                return Err(io::Error::from_raw_os_error(err));
            }
            Ok(Relay {
                set: set.assume_init(),
                before: before.assume_init(),
            })
        }
    }

    /// Makes `c` start with the signal mask the launcher was given, not
    /// the relay's, which a child would otherwise inherit.
    pub fn command(&self, c: &mut Command) {
        let before = self.before;
        // SAFETY: the hook runs in the forked child before exec, where
        // only async-signal-safe calls are allowed; pthread_sigmask on a
        // copied set is one, and it allocates nothing.
        unsafe {
            c.pre_exec(move || {
                match libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut()) {
                    0 => Ok(()),
                    err => Err(io::Error::from_raw_os_error(err)),
                }
            });
        }
    }

    /// Waits for `child` to end, passing on each relayed signal sent to
    /// the launcher by a process.
    pub fn wait(&self, child: &mut Child) -> io::Result<ExitStatus> {
        loop {
            // A child that ends after this look leaves SIGCHLD pending,
            // which ends the wait below at once.
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            let mut info = MaybeUninit::<libc::siginfo_t>::uninit();
            // SAFETY: `set` is a valid signal set and `info` has room for
            // the siginfo the kernel writes.
            let sig = unsafe { libc::sigwaitinfo(&self.set, info.as_mut_ptr()) };
            if sig < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            // SAFETY: sigwaitinfo succeeded, so it filled `info` in.
            let from_terminal = unsafe { info.assume_init() }.si_code == libc::SI_KERNEL;
            if sig == libc::SIGCHLD || from_terminal {
                continue;
            }
            let pid = libc::pid_t::try_from(child.id()).unwrap_or(libc::pid_t::MAX);
            // SAFETY: kill takes plain integers. The child is not reaped
            // yet (try_wait above found it running), so its pid is still
            // its own.
            unsafe { libc::kill(pid, sig) };
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // SAFETY: `before` is the mask pthread_sigmask returned. Signals
        // that came after the child ended stay pending and take effect
        // here, as they would have without the relay.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.before, std::ptr::null_mut()) };
    }
}
