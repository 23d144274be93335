//! The fallbacks `DESIGN.md` promises, on the real kernel with its
//! sync_file ioctls taken away (`seccomp.rs`: `ENOTTY`, as a kernel before
//! 6.0 answers), and on lavapipe with its SYNC_FD export hidden by a
//! test layer below this one (`test-layers/hide-sync-fd`).
//!
//! What each costs the driver is checked first, against the driver
//! itself: lavapipe makes its SYNC_FD payloads with
//! `DMA_BUF_IOCTL_EXPORT_SYNC_FILE` on a udmabuf, so with both ioctls gone
//! it offers no `VK_KHR_external_semaphore_fd`, and the layer must leave
//! the application to the driver's WSI; with only the import gone the
//! driver is whole and the layer's own path must change.

use std::path::Path;
use std::time::Duration;

use ash::vk;
use libtest_mimic::{Completion, Failed};
use serde_json::{json, Value};

use crate::client::{mode_name, Chain, Vk, COLOURS};
use crate::common::child::Result as ChildResult;
use crate::common::{check, child_json, run_ok, stat, Outcome};
use crate::fds;
use crate::seccomp::{self, SyncFileIoctl};
use crate::stats_keys;
use crate::support::{baseline, run_ok_within, Machine, Scratch};
use crate::vkmark::{captured, decode, first_frame, same_frame, vkmark_denied, Captured, Variant};

const BOTH: [SyncFileIoctl; 2] = [SyncFileIoctl::Export, SyncFileIoctl::Import];
const IMPORT: [SyncFileIoctl; 1] = [SyncFileIoctl::Import];

/// A child that meets a refusing kernel mid-run gets this long; a hang
/// fails the test with its output.
const LIMIT: Duration = Duration::from_secs(300);

fn needs(m: &Machine, more: &[&Result<(), String>]) -> Option<Outcome> {
    if baseline() {
        return Some(Ok(Completion::ignored_with(
            "the fallbacks are the layer's; not run against Mesa's WSI",
        )));
    }
    let mut all = vec![&m.vulkan];
    all.extend(more);
    m.lacks(&all)
}

fn lists_sync_fd_semaphores(s: &Scratch, denied: &[SyncFileIoctl]) -> Result<bool, Failed> {
    let mut c = s.command("vulkaninfo");
    c.env(VkLayer_syncfile_wsi::manifest::DISABLE_ENV, "1");
    seccomp::deny_in(&mut c, denied);
    let out = run_ok(&mut c)?;
    Ok(String::from_utf8_lossy(&out.stdout).contains("VK_KHR_external_semaphore_fd"))
}

/// Both ioctls gone from the start: lavapipe loses its SYNC_FD support
/// (read from vulkaninfo, with and without the filter), the layer leaves
/// the swapchain to the driver, and vkmark runs on Mesa's WSI.
pub fn no_ioctls_leave_the_driver_its_wsi(m: &Machine) -> Outcome {
    if let Some(skip) = needs(m, &[&m.vkmark]) {
        return skip;
    }
    let s = Scratch::new("no-ioctls")?;
    check(lists_sync_fd_semaphores(&s, &[])?, || {
        "lavapipe lists no VK_KHR_external_semaphore_fd even with the ioctls".into()
    })?;
    check(!lists_sync_fd_semaphores(&s, &BOTH)?, || {
        "lavapipe still lists VK_KHR_external_semaphore_fd without the ioctls: the filter missed"
            .into()
    })?;
    let (n, _) = vkmark_denied(&s, "fifo", 64, "2", &[], &BOTH)?;
    let stats = s.stats()?;
    check(stat(&stats, stats_keys::SWAPCHAINS) == 0, || {
        format!("the layer made a swapchain on a driver without SYNC_FD: {stats}")
    })?;
    check(stat(&stats, &["devices", "passed_through"]) >= 1, || {
        format!("the device was not left to the driver: {stats}")
    })?;
    println!("no ioctls: vkmark on Mesa's WSI, score {n}");
    Ok(Completion::Completed)
}

/// Only `DMA_BUF_IOCTL_IMPORT_SYNC_FILE` gone: lavapipe is whole, the
/// layer's probe finds the kernel without the pair, and the fallback
/// (present thread, acquires polling the dma-buf) carries vkmark: the
/// first frame is the normal path's, nothing waited on the application's
/// thread for a render, and the log said it once.
pub fn import_refused_takes_the_fallback(m: &Machine) -> Outcome {
    if let Some(skip) = needs(m, &[&m.vkmark]) {
        return skip;
    }
    let normal = first_frame(&Variant::default())?;
    let denied = first_frame(&Variant {
        denied: &IMPORT,
        tag: "-no-import",
        ..Variant::default()
    })?;
    same_frame(&normal, &denied)?;
    on_the_fallback(&denied, "no_kernel_ioctls", seccomp::FALLBACK_LOGGED)?;
    check(stat(&denied.stats, stats_keys::WRITE_IMPORTS) == 0, || {
        format!(
            "write fences were imported on a kernel that refuses: {}",
            denied.stats
        )
    })?;
    // Each mode, briefly: vkmark ends with a score, the layer presenting.
    let mut report = Vec::new();
    for mode in crate::vkmark::MODES {
        let s = Scratch::new("import-refused")?;
        let (n, _) = vkmark_denied(&s, mode, 64, "2", &[], &IMPORT)?;
        let stats = s.stats()?;
        check(stat(&stats, stats_keys::PRESENTED) > 0, || {
            format!("{mode}: the layer presented nothing: {stats}")
        })?;
        report.push(format!("{mode} {n}"));
    }
    println!("import refused: vkmark {}", report.join(", "));
    Ok(Completion::Completed)
}

/// The run behind `c` took fallback `name` (counted, and `line` logged
/// once): renders went to the consumer through the present thread's
/// fence, and the application's thread never waited for one.
fn on_the_fallback(c: &Captured, name: &str, line: &str) -> Result<(), Failed> {
    let stats = &c.stats;
    check(stat(stats, &["fallbacks", name]) >= 1, || {
        format!("no swapchain took the {name} fallback: {stats}")
    })?;
    for cause in ["render_fence", "failed_import"] {
        check(
            stat(stats, &["cpu_waits", "app", cause, "count"]) == 0,
            || format!("the application's thread waited ({cause}): {stats}"),
        )?;
    }
    // The render reached the consumer through the present thread's fence,
    // not as a sync_file. (Whether that thread had to wait depends on how
    // far the render was: not asserted.)
    check(
        stat(stats, &["sync_files", "exported", "from_semaphores"]) == 0,
        || format!("the render was exported as a sync_file: {stats}"),
    )?;
    let said = c.stderr.matches(line).count();
    check(said == 1, || {
        format!("the fallback was logged {said} times: {}", c.stderr)
    })
}

/// The test layer's name and library (`test-layers/hide-sync-fd`), built
/// beside this layer's.
const HIDE_SYNC_FD: &str = "VK_LAYER_SYNCFILE_TEST_hide_sync_fd";
const HIDE_SYNC_FD_LIBRARY: &str = "libVkLayer_syncfile_test_hide_sync_fd.so";

/// A manifest for the test layer in `dir`, for `VK_ADD_LAYER_PATH`.
fn hide_sync_fd_manifest(dir: &Path) -> Result<(), Failed> {
    let lib = crate::common::library()?.with_file_name(HIDE_SYNC_FD_LIBRARY);
    check(lib.is_file(), || {
        format!(
            "{} is missing: cargo build --workspace builds it",
            lib.display()
        )
    })?;
    std::fs::create_dir_all(dir)?;
    let manifest = json!({
        "file_format_version": "1.2.0",
        "layer": {
            "name": HIDE_SYNC_FD,
            "type": "GLOBAL",
            "library_path": lib,
            "api_version": "1.3.0",
            "implementation_version": "1",
            "description": "syncfile-wsi tests: the driver without SYNC_FD semaphore export",
        }
    });
    std::fs::write(dir.join("hide_sync_fd.json"), manifest.to_string())?;
    Ok(())
}

/// The counts the test layer wrote at `vkDestroyDevice` (the last
/// device's): property queries answered without SYNC_FD export, SYNC_FD
/// exports refused, semaphores created SYNC_FD-exportable.
fn hide_sync_fd_counts(stderr: &str) -> Result<[u64; 3], Failed> {
    let line = stderr
        .lines()
        .rfind(|l| l.starts_with("hide-sync-fd: "))
        .ok_or("the test layer below reported nothing: was it loaded below the layer?")?;
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    numbers
        .try_into()
        .map_err(|_| format!("not the test layer's report: {line}").into())
}

/// lavapipe with its SYNC_FD semaphore export hidden by a test layer below
/// this one: the layer asks the driver (the test layer counts the
/// questions), takes the present-thread fallback without ever exporting or
/// making an exportable semaphore (the test layer counts those too), and
/// vkmark's first frame is the normal path's.
pub fn no_semaphore_export_takes_the_fallback(m: &Machine) -> Outcome {
    if let Some(skip) = needs(m, &[&m.vkmark]) {
        return skip;
    }
    let below = std::env::temp_dir().join(format!("syncfile-wsi-hide-{}", std::process::id()));
    hide_sync_fd_manifest(&below)?;
    let normal = first_frame(&Variant::default())?;
    let hidden = first_frame(&Variant {
        env: vec![
            ("VK_ADD_LAYER_PATH", below.as_path()),
            ("VK_INSTANCE_LAYERS", Path::new(HIDE_SYNC_FD)),
        ],
        tag: "-no-export",
        ..Variant::default()
    });
    let _ = std::fs::remove_dir_all(&below);
    let hidden = hidden?;
    let [asked, refused, exportable] = hide_sync_fd_counts(&hidden.stderr)?;
    check(asked > 0 && refused == 0 && exportable == 0, || {
        format!(
            "below the layer: {asked} questions, {refused} exports refused, {exportable} exportable semaphores"
        )
    })?;
    same_frame(&normal, &hidden)?;
    on_the_fallback(
        &hidden,
        "no_semaphore_export",
        "fallback: the driver cannot export a semaphore as a sync_file",
    )?;
    println!("no SYNC_FD export: {asked} questions answered below the layer, none exported");
    Ok(Completion::Completed)
}

/// The export ioctl taken away under a running device and swapchain (the
/// child installs the filter itself, and holds every image with a pending
/// fence so that acquires must ask for it): acquires fall back to polling
/// the dma-buf, every present and acquire after it returns, the frames
/// that reach the consumer are the right ones, and the child ends in time.
pub fn export_refused_at_run_time(m: &Machine) -> Outcome {
    if let Some(skip) = needs(m, &[&m.vgem]) {
        return skip;
    }
    let s = Scratch::new("export-refused")?;
    let dir = s.path("frames");
    std::fs::create_dir_all(&dir)?;
    let mut c = s.child("export_refused")?;
    c.env("SYNCFILE_WSI_CAPTURE", &dir);
    let out = run_ok_within(&mut c, LIMIT)?;
    let r = child_json(&out)?;
    let stats = s.stats()?;
    let modes = r["modes"].as_array().ok_or("no modes")?;
    for mode in modes {
        let failed = &mode["failed"];
        check(failed.is_null(), || {
            format!(
                "{}: a frame failed after the export went: {r}",
                mode["mode"]
            )
        })?;
    }
    frames_are_their_images(&dir, &r)?;
    check(
        stat(&stats, &["fallbacks", "no_kernel_ioctls"]) >= 1,
        || format!("the refused export was not counted as a fallback: {stats}"),
    )?;
    check(
        stat(&stats, &["cpu_waits", "app", "dma_buf_poll", "count"]) >= 1,
        || format!("no acquire polled a busy dma-buf after the refusal: {stats}"),
    )?;
    println!("export refused at run time: {}", r["modes"]);
    Ok(Completion::Completed)
}

/// Every captured frame of the child's is entirely the colour of the
/// image it presented (the client clears each image to its own; MAILBOX
/// frames replaced unshown are not captured), and frames presented after
/// the filter are among them.
fn frames_are_their_images(dir: &Path, r: &Value) -> Result<(), Failed> {
    let indices: Vec<u64> = r["indices"]
        .as_array()
        .ok_or("no image indices")?
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let first_after = r["first_after"].as_u64().ok_or("no first_after")?;
    let mut after = 0;
    for path in captured(dir)? {
        let seq: usize = path
            .file_stem()
            .and_then(|s| s.to_str()?.strip_prefix("frame-")?.parse().ok())
            .ok_or_else(|| format!("{} is not a frame", path.display()))?;
        let index = *indices
            .get(seq)
            .ok_or_else(|| format!("frame {seq} was never presented"))?;
        let want = COLOURS[index as usize % COLOURS.len()].map(|c| (c * 255.0) as u8);
        let f = decode(&path)?;
        let off = f.rgba.chunks_exact(4).filter(|p| *p != want).count();
        check(off == 0, || {
            format!("frame {seq} (image {index}): {off} pixels are not {want:?}")
        })?;
        after += usize::from(seq as u64 >= first_after);
    }
    check(after > 0, || {
        "no frame presented after the filter was captured".into()
    })
}

/// How long the vgem fence holds every image after the filter.
const HELD: Duration = Duration::from_millis(300);

/// Frames before the filter, in each mode the surface offers.
const BEFORE: u32 = 5;
/// Frames after it.
const AFTER: u32 = 20;

/// The child of [`export_refused_at_run_time`]: `BEFORE` frames in each
/// mode; the filter (checked on one of the process's dma-bufs); a pending
/// vgem write fence on every dma-buf, signalled a little later, so that
/// acquires find their images busy and must ask the kernel for the
/// fences; then `AFTER` more frames in each mode on the same swapchains.
pub fn export_refused_child() -> ChildResult<Value> {
    let vk = Vk::new(false)?;
    let mut chains = Vec::new();
    let mut indices = Vec::new();
    for mode in vk.test_modes()? {
        let mut chain = Chain::new(&vk, mode, 32, 0, vk::SwapchainKHR::null())?;
        for _ in 0..BEFORE {
            indices.push(chain.frame()?);
        }
        chains.push((mode, chain));
    }
    // The vgem fence comes out of its buffer as a sync_file by the export
    // ioctl: made before the kernel refuses it.
    let (fence, pending) = syncfile::sources::vgem::Vgem::open()?.pending_sync_file()?;
    seccomp::deny_now(&[SyncFileIoctl::Export])?;
    let first_after = indices.len();
    let refused = fds::dma_bufs()?
        .first()
        .ok_or("the process has no dma-buf")?
        .dma_buf
        .export_sync_file(syncfile::Access::Read);
    if !matches!(refused, Err(syncfile::Error::Unsupported)) {
        return Err(format!("the filter did not take: the export gave {refused:?}").into());
    }
    let fenced = fds::import_into_every_dma_buf(&pending)?;
    let signaller = std::thread::spawn(move || {
        std::thread::sleep(HELD);
        fence.signal()
    });
    let mut modes = Vec::new();
    for (mode, chain) in &mut chains {
        let mut failed = None;
        for k in 0..AFTER {
            match chain.frame() {
                Ok(i) => indices.push(i),
                Err(e) => {
                    failed = Some(format!("frame {k}: {e}"));
                    break;
                }
            }
        }
        chain.wait_idle()?;
        modes.push(json!({"mode": mode_name(*mode), "failed": failed}));
    }
    signaller
        .join()
        .map_err(|_| "the signalling thread panicked")??;
    drop(chains);
    Ok(json!({
        "modes": modes,
        "indices": indices,
        "first_after": first_after,
        "fenced_dma_bufs": fenced,
    }))
}
