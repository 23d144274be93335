//! Lifetimes the application gets wrong or the kernel stretches, in the
//! child process: a device destroyed with its swapchain alive, an instance
//! destroyed with its surface alive, a fork without exec, and a swapchain
//! destroyed while its last present's render cannot finish.

use std::time::{Duration, Instant};

use ash::vk;
use serde_json::{json, Value};
use syncfile::sources::vgem::Vgem;
use syncfile::Access;

use crate::client::{Chain, Vk};
use crate::common::child::{create_instance, Result};
use crate::fds;

const SIZE: u32 = 64;

/// The layer's threads in this process now (it names them `sfwsi-*`).
fn layer_threads() -> Result<usize> {
    let mut n = 0;
    for task in std::fs::read_dir("/proc/self/task")? {
        let comm = std::fs::read_to_string(task?.path().join("comm")).unwrap_or_default();
        if comm.starts_with("sfwsi-") {
            n += 1;
        }
    }
    Ok(n)
}

/// A device destroyed while a swapchain of the layer's is alive on it: the
/// layer destroys the swapchain and stops its threads.
pub fn device_with_live_swapchain() -> Result<Value> {
    let vk = Vk::new(false)?;
    let mut chain = Chain::new(&vk, vk.fast_mode()?, SIZE, 0, vk::SwapchainKHR::null())?;
    for _ in 0..5 {
        chain.frame()?;
    }
    chain.wait_idle()?;
    let with_swapchain = layer_threads()?;
    chain.leak_swapchain();
    drop(vk);
    Ok(json!({
        "layer_threads_with_swapchain": with_swapchain,
        "layer_threads_after": layer_threads()?,
    }))
}

/// An instance destroyed while a surface the layer owns is alive.
pub fn instance_with_live_surface() -> Result<Value> {
    // SAFETY: loading the system's loader, as every application does.
    let entry = unsafe { ash::Entry::load()? };
    let instance = create_instance(
        &entry,
        &[ash::khr::surface::NAME, ash::ext::headless_surface::NAME],
        None,
    )?;
    // SAFETY: a surface of the live instance, left alive on purpose.
    unsafe {
        ash::ext::headless_surface::Instance::new(&entry, &instance)
            .create_headless_surface(&vk::HeadlessSurfaceCreateInfoEXT::default(), None)?;
        instance.destroy_instance(None);
    }
    Ok(json!({ "destroyed": true }))
}

/// How a forked child fared: its exit status, or that it hung.
fn wait_child(pid: libc::pid_t) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut status = 0;
        // SAFETY: our own child; WNOHANG keeps this from blocking.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            let exited = libc::WIFEXITED(status);
            return Ok(
                json!({ "exited": exited, "code": if exited { libc::WEXITSTATUS(status) } else { -1 } }),
            );
        }
        if r < 0 || Instant::now() >= deadline {
            // SAFETY: our own child, which hangs.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return Ok(json!({ "exited": false, "hung": true }));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A fork without exec while a swapchain presents: the child destroys the
/// swapchain (as an `atexit` handler of a toolkit would) and exits through
/// the C library's `exit`, which runs the layer's unload code; the parent's
/// statistics file stays the parent's, and the parent goes on presenting.
pub fn fork() -> Result<Value> {
    let stats = std::env::var("SYNCFILE_WSI_STATS")?;
    let vk = Vk::new(false)?;
    let mut chain = Chain::new(&vk, vk.fast_mode()?, SIZE, 0, vk::SwapchainKHR::null())?;
    for _ in 0..5 {
        chain.frame()?;
    }
    chain.wait_idle()?;
    // The layer writes its statistics when a swapchain goes: make a file
    // of the parent's to compare against.
    let mut first = Chain::new(&vk, vk.fast_mode()?, SIZE, 0, vk::SwapchainKHR::null())?;
    first.destroy_swapchain(None);
    drop(first);
    let before = std::fs::read(&stats)?;
    let mtime_before = std::fs::metadata(&stats)?.modified()?;
    // SAFETY: fork(2); the child only destroys a swapchain and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        chain.destroy_swapchain(None);
        // SAFETY: the child ends here, through exit(3) and its handlers.
        unsafe { libc::exit(0) };
    }
    if pid < 0 {
        return Err("fork failed".into());
    }
    let child = wait_child(pid)?;
    let stats_unchanged =
        std::fs::read(&stats)? == before && std::fs::metadata(&stats)?.modified()? == mtime_before;
    for _ in 0..5 {
        chain.frame()?;
    }
    chain.wait_idle()?;
    drop(chain);
    Ok(json!({ "child": child, "stats_unchanged": stats_unchanged }))
}

/// A swapchain destroyed while its last present's render has not finished:
/// the write fence on its images' dma-bufs is a pending vgem fence (the
/// kernel says when it signals), as a driver's render fence would be. The
/// destruction must return while it is pending. (lavapipe runs a batch on
/// the submitting thread, so a render that really does not finish would
/// hold the application's own vkQueueSubmit, not the layer.)
pub fn unfinished() -> Result<Value> {
    let vk = Vk::new(false)?;
    let before = fds::dma_bufs()?;
    let mut chain = Chain::new(
        &vk,
        vk::PresentModeKHR::FIFO,
        SIZE,
        0,
        vk::SwapchainKHR::null(),
    )?;
    let images = fds::made_between(&before, fds::dma_bufs()?);
    drop(before);
    let vgem = Vgem::open()?;
    let (fence, sync_file) = vgem.pending_sync_file()?;
    chain.frame()?;
    chain.wait_idle()?;
    for f in &images {
        f.dma_buf.import_sync_file(&sync_file, Access::Write)?;
    }
    let t = Instant::now();
    chain.destroy_swapchain(None);
    let destroy_ms = t.elapsed().as_secs_f64() * 1e3;
    let pending_after_destroy = !sync_file.is_signaled()?;
    fence.signal()?;
    chain.wait_idle()?;
    drop(chain);
    Ok(json!({
        "dma_bufs": images.len(),
        "pending_after_destroy": pending_after_destroy,
        "destroy_ms": destroy_ms,
    }))
}
