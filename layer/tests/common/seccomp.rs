//! A kernel without the dma-buf sync_file ioctls, for real: a seccomp
//! filter that answers them with `ENOTTY`, exactly as a kernel before 6.0
//! (or one without `CONFIG_SYNC_FILE`) does, while every other system
//! call, other ioctls on the same dma-buf included, goes through.
//!
//! [`deny_in`] installs it in a child between `fork` and `exec`, so the
//! program (vkmark, vkcube, a child scenario) meets it before it loads
//! Vulkan; [`deny_now`] installs it in a running process, on every thread,
//! as a kernel feature that disappears under a running driver.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// One of the two ioctls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncFileIoctl {
    Export,
    Import,
}

impl SyncFileIoctl {
    /// The request number, as in `REFERENCE.md` (the test's oracle is the
    /// kernel's uapi, not the crate under test).
    fn request(self) -> u32 {
        match self {
            // `_IOWR('b', 2, 8 bytes)`.
            SyncFileIoctl::Export => 0xC008_6202,
            // `_IOW('b', 3, 8 bytes)`.
            SyncFileIoctl::Import => 0x4008_6203,
        }
    }
}

/// `struct sock_filter`: one classic BPF instruction.
#[repr(C)]
#[derive(Clone, Copy)]
struct Instruction {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

/// `struct sock_fprog`.
#[repr(C)]
struct Program {
    len: u16,
    filter: *const Instruction,
}

/// `BPF_LD | BPF_W | BPF_ABS`, `BPF_JMP | BPF_JEQ | BPF_K`, `BPF_RET | BPF_K`.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// Offsets in `struct seccomp_data`: nr, arch, then (after the 8-byte
/// instruction pointer) the arguments; `args[1]`'s low half on a
/// little-endian machine. The low half alone: `ioctl` takes its request as
/// an `unsigned int`, whatever the caller sign-extended it to.
const NR: u32 = 0;
const ARCH: u32 = 4;
const REQUEST: u32 = 16 + 8;

fn op(code: u16, k: u32, jt: u8, jf: u8) -> Instruction {
    Instruction { code, jt, jf, k }
}

/// The filter: `ENOTTY` for `ioctl(_, request)` with a denied request on
/// x86-64, everything else allowed.
fn filter(denied: &[SyncFileIoctl]) -> Vec<Instruction> {
    let n = u8::try_from(denied.len()).expect("two ioctls at most");
    let mut f = vec![
        op(BPF_LD_W_ABS, ARCH, 0, 0),
        // Another ABI's numbers mean other calls: let them through.
        op(BPF_JEQ_K, AUDIT_ARCH_X86_64, 0, n + 3),
        op(BPF_LD_W_ABS, NR, 0, 0),
        op(BPF_JEQ_K, libc::SYS_ioctl as u32, 0, n + 1),
        op(BPF_LD_W_ABS, REQUEST, 0, 0),
    ];
    for (i, ioctl) in denied.iter().enumerate() {
        // Equal: jump over the remaining comparisons and the ALLOW.
        f.push(op(BPF_JEQ_K, ioctl.request(), n - i as u8, 0));
    }
    f.push(op(BPF_RET_K, SECCOMP_RET_ALLOW, 0, 0));
    f.push(op(BPF_RET_K, SECCOMP_RET_ERRNO | libc::ENOTTY as u32, 0, 0));
    f
}

/// Installs `filter` on every thread of this process. Async-signal-safe
/// (two system calls on memory prepared before), so a forked child may
/// call it before `exec`.
fn install(filter: &[Instruction]) -> io::Result<()> {
    let program = Program {
        len: u16::try_from(filter.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        filter: filter.as_ptr(),
    };
    // SAFETY: prctl with integer arguments only. Without this flag an
    // unprivileged process may not install a filter.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `program` points at `filter.len()` instructions that live
    // across the call; the kernel copies them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &program as *const Program,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The layer's one log line for the fallback a refusing kernel puts it in
/// (`stats::fallback`).
pub const FALLBACK_LOGGED: &str = "fallback: the kernel lacks the dma-buf sync_file ioctls";

/// `command`'s program starts with `denied` answered `ENOTTY` (nothing
/// changes for an empty list).
pub fn deny_in(command: &mut Command, denied: &[SyncFileIoctl]) {
    if denied.is_empty() {
        return;
    }
    let f = filter(denied);
    // SAFETY: the closure only makes system calls on memory it owns.
    unsafe { command.pre_exec(move || install(&f)) };
}

/// From now on, every thread of this process gets `ENOTTY` for `denied`.
pub fn deny_now(denied: &[SyncFileIoctl]) -> io::Result<()> {
    install(&filter(denied))
}
