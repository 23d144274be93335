//! Whole applications through the layer on weston: vkcube in each present
//! mode, with and without explicit sync, with the Khronos validation layer,
//! on a compositor without dma-buf, and with the compositor killed under it;
//! vkmark; and a screenshot of the cube.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Completion, Failed};
use serde_json::Value;
use VkLayer_syncfile_wsi::manifest::{self, Kind};

use crate::common::seccomp::{self, SyncFileIoctl};
use crate::{check, missing, weston_missing, Outcome, Weston};

/// Weston's output for these tests: small, so that its software repaint
/// keeps up in an emulated guest.
pub const OUTPUT: [&str; 2] = ["--width=640", "--height=480"];
/// vkcube's window, likewise.
const CUBE: [&str; 6] = ["--wsi", "wayland", "--width", "256", "--height", "256"];
/// Any one application run.
pub const RUN_LIMIT: Duration = Duration::from_secs(400);

/// The layer, as the loader finds it: an implicit manifest in a scratch
/// directory pointing at the library built with this test.
pub struct Layer {
    dir: PathBuf,
}

impl Layer {
    pub fn new(name: &str) -> Result<Layer, Failed> {
        let exe = std::env::current_exe()?;
        let target = exe
            .parent()
            .and_then(Path::parent)
            .ok_or("no target directory")?;
        let lib = target.join(manifest::LIBRARY_NAME);
        check(lib.is_file(), || {
            format!("{} is missing: build the layer first", lib.display())
        })?;
        let dir = target.join("wayland-tests").join(name);
        std::fs::create_dir_all(&dir)?;
        let lib = lib.to_str().ok_or("non-UTF-8 path")?;
        std::fs::write(
            dir.join(Kind::Implicit.file_name()),
            manifest::render(Kind::Implicit, lib),
        )?;
        Ok(Layer { dir })
    }

    /// A file in the layer's scratch directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn stats_path(&self) -> PathBuf {
        self.dir.join("stats.json")
    }

    /// `program args` against the compositor on `socket`, through the
    /// layer (`on`) or not, with `env` on top.
    pub fn command(
        &self,
        socket: &str,
        on: bool,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Command {
        let _ = std::fs::remove_file(self.stats_path());
        let mut c = Command::new(program);
        c.args(args)
            .current_dir(&self.dir)
            .env("WAYLAND_DISPLAY", socket)
            .env("VK_ADD_IMPLICIT_LAYER_PATH", &self.dir)
            .env("SYNCFILE_WSI_STATS", self.stats_path())
            // The swapchain's mode and sync path are logged at info.
            .env("SYNCFILE_WSI_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if on {
            c.env(manifest::ENABLE_ENV, "1");
        } else {
            c.env(manifest::DISABLE_ENV, "1");
        }
        c.envs(env.iter().copied());
        c
    }

    /// The statistics the layer wrote last.
    pub fn stats(&self) -> Result<Value, Failed> {
        let text = std::fs::read_to_string(self.stats_path())
            .map_err(|e| format!("no statistics in {}: {e}", self.stats_path().display()))?;
        Ok(serde_json::from_str(&text)?)
    }
}

/// Waits for `child` for at most `limit`, killing it after that. Its
/// output is read meanwhile: a child that logs more than a pipe holds
/// would otherwise stop in its next write and look hung.
pub fn finish(mut child: Child, limit: Duration) -> Result<Output, Failed> {
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = stdout.join().map_err(|_| "the stdout reader panicked")?;
    let stderr = stderr.join().map_err(|_| "the stderr reader panicked")?;
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(format!("killed after {limit:?}; stderr: {}", tail(&stderr)).into()),
    }
}

pub fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn run(mut c: Command) -> Result<Output, Failed> {
    finish(c.spawn()?, RUN_LIMIT)
}

pub fn succeeded(out: &Output) -> Result<(), Failed> {
    check(out.status.success(), || {
        format!(
            "{}; stdout: {}; stderr: {}",
            out.status,
            tail(&out.stdout),
            tail(&out.stderr)
        )
    })
}

pub fn number(stats: &Value, path: &[&str]) -> u64 {
    path.iter().fold(stats, |v, k| &v[*k]).as_u64().unwrap_or(0)
}

/// Why this machine cannot run these tests, if it cannot.
pub fn prerequisites(programs: &[&str]) -> Option<String> {
    if let Some(why) = weston_missing() {
        return Some(why);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    programs
        .iter()
        .find(|p| !std::env::split_paths(&path).any(|d| d.join(p).is_file()))
        .map(|p| format!("{p} is not installed"))
}

/// The frame-path CPU waits of the layer's own that the application thread
/// may never do. (`driver_semaphore_export` is lavapipe's: its
/// vkGetSemaphoreFdKHR waits for the render itself.)
pub const APP_FENCE_WAITS: [&str; 2] = ["dma_buf_poll", "failed_import"];

/// The layer owned the surface and presented `frames` frames with the
/// `sync` path, and the application thread never waited on a fence.
pub fn owned_and_presented(stats: &Value, frames: u64, sync: &str) -> Result<(), Failed> {
    let show = || stats.to_string();
    check(number(stats, &["surfaces", "owned"]) == 1, || {
        format!("surface not owned: {}", show())
    })?;
    check(number(stats, &["frames", "presented"]) >= frames, || {
        format!("frames: {}", show())
    })?;
    let other = if sync == "explicit" {
        "implicit"
    } else {
        "explicit"
    };
    check(number(stats, &["wayland", "commits", sync]) > 0, || {
        format!("no {sync} commit: {}", show())
    })?;
    check(number(stats, &["wayland", "commits", other]) == 0, || {
        format!("{other} commits: {}", show())
    })?;
    for cause in APP_FENCE_WAITS {
        check(
            number(stats, &["cpu_waits", "app", cause, "count"]) == 0,
            || format!("app waited ({cause}): {}", show()),
        )?;
    }
    Ok(())
}

pub fn vkcube_each_present_mode() -> Outcome {
    if let Some(why) = prerequisites(&["vkcube"]) {
        return missing(why);
    }
    let weston = Weston::start(&OUTPUT)?;
    let layer = Layer::new("vkcube_each_present_mode")?;
    // vkcube numbers them as VkPresentModeKHR: IMMEDIATE, MAILBOX, FIFO.
    for (mode, name) in [("0", "IMMEDIATE"), ("1", "MAILBOX"), ("2", "FIFO")] {
        let args = [&CUBE[..], &["--c", "120", "--present_mode", mode]].concat();
        let out = run(layer.command(&weston.socket, true, "vkcube", &args, &[]))?;
        succeeded(&out).map_err(|e| format!("{name}: {}", e.message().unwrap_or_default()))?;
        let log = String::from_utf8_lossy(&out.stderr);
        check(log.contains(&format!("{name}, explicit sync")), || {
            format!("{name} not used: {log}")
        })?;
        owned_and_presented(&layer.stats()?, 120, "explicit")
            .map_err(|e| format!("{name}: {}", e.message().unwrap_or_default()))?;
    }
    Ok(Completion::Completed)
}

/// A kernel without `DMA_BUF_IOCTL_IMPORT_SYNC_FILE` (seccomp answers
/// `ENOTTY`, as before Linux 6.0; lavapipe does not use it): the layer
/// cannot attach write fences, but weston takes the render's sync_file with
/// each commit (explicit sync), so vkcube runs on the fallback with no wait
/// on its thread for a render — only acquires poll the dma-buf, which the
/// fallback allows — and the log says so once.
pub fn import_refused_takes_the_fallback() -> Outcome {
    if let Some(why) = prerequisites(&["vkcube"]) {
        return missing(why);
    }
    let weston = Weston::start(&OUTPUT)?;
    let layer = Layer::new("import_refused_takes_the_fallback")?;
    for (mode, name) in [("0", "IMMEDIATE"), ("1", "MAILBOX"), ("2", "FIFO")] {
        let args = [&CUBE[..], &["--c", "60", "--present_mode", mode]].concat();
        let mut c = layer.command(&weston.socket, true, "vkcube", &args, &[]);
        seccomp::deny_in(&mut c, &[SyncFileIoctl::Import]);
        let out = run(c)?;
        succeeded(&out).map_err(|e| format!("{name}: {}", e.message().unwrap_or_default()))?;
        let stats = layer.stats()?;
        let show = || format!("{name}: {stats}");
        check(number(&stats, &["surfaces", "owned"]) == 1, show)?;
        check(number(&stats, &["frames", "presented"]) >= 60, show)?;
        check(
            number(&stats, &["fallbacks", "no_kernel_ioctls"]) >= 1,
            show,
        )?;
        check(
            number(&stats, &["wayland", "commits", "explicit"]) >= 60,
            show,
        )?;
        for cause in ["render_fence", "failed_import"] {
            check(
                number(&stats, &["cpu_waits", "app", cause, "count"]) == 0,
                show,
            )?;
        }
        let log = String::from_utf8_lossy(&out.stderr);
        let said = log.matches(seccomp::FALLBACK_LOGGED).count();
        check(said == 1, || format!("{name}: logged {said} times: {log}"))?;
    }
    Ok(Completion::Completed)
}

pub fn implicit_sync_when_asked() -> Outcome {
    if let Some(why) = prerequisites(&["vkcube"]) {
        return missing(why);
    }
    let weston = Weston::start(&OUTPUT)?;
    let layer = Layer::new("implicit_sync_when_asked")?;
    let args = [&CUBE[..], &["--c", "30"]].concat();
    let out = run(layer.command(
        &weston.socket,
        true,
        "vkcube",
        &args,
        &[("SYNCFILE_WSI_SYNC", "implicit")],
    ))?;
    succeeded(&out)?;
    owned_and_presented(&layer.stats()?, 30, "implicit")?;
    Ok(Completion::Completed)
}

pub fn validation_reports_no_error() -> Outcome {
    if let Some(why) = prerequisites(&["vkcube"]) {
        return missing(why);
    }
    let weston = Weston::start(&OUTPUT)?;
    let layer = Layer::new("validation_reports_no_error")?;
    // The Khronos layer, with no messenger of the app's, prints every error
    // it finds to stdout as "Validation Error: [ VUID-... ] ...". (vkcube's
    // own --validate would exit 1 on the driver's false positive below.)
    let args = [&CUBE[..], &["--c", "30"]].concat();
    let env = [
        ("VK_INSTANCE_LAYERS", "VK_LAYER_KHRONOS_validation"),
        ("VK_LOADER_DEBUG", "layer"),
    ];
    let out = run(layer.command(&weston.socket, true, "vkcube", &args, &env))?;
    succeeded(&out)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let reports = text.split("Validation Error: ").skip(1);
    let (excused, errors): (Vec<_>, Vec<_>) =
        reports.partition(|r| is_modifier_features2_false_positive(r));
    check(errors.is_empty(), || tail(text.as_bytes()))?;
    // The loader's log proves the validation layer was really in the chain.
    check(
        text.lines().any(|l| {
            l.contains("Insert instance layer") && l.contains("VK_LAYER_KHRONOS_validation")
        }),
        || tail(text.as_bytes()),
    )?;
    if !excused.is_empty() {
        println!(
            "{} reports of lavapipe's empty VkDrmFormatModifierPropertiesList2EXT left uncounted",
            excused.len()
        );
    }
    owned_and_presented(&layer.stats()?, 30, "explicit")?;
    Ok(Completion::Completed)
}

/// The validation layer's one false positive on lavapipe 25.0.7: the driver
/// leaves `VkDrmFormatModifierPropertiesList2EXT` empty while the first
/// modifier list has LINEAR with its features, and the validation layer
/// reads the empty one, so every view of an image with modifier tiling is
/// reported as having no format features. The headless suite
/// (`validation::*`) proves that cause at run time on the same driver.
fn is_modifier_features2_false_positive(report: &str) -> bool {
    report.contains("VUID-VkImageViewCreateInfo-None-02273")
        && report
            .contains("VK_IMAGE_TILING_DRM_FORMAT_MODIFIER_EXT has no supported format features")
}

pub fn no_dma_buf_passes_through() -> Outcome {
    if let Some(why) = prerequisites(&["vkcube"]) {
        return missing(why);
    }
    let weston = Weston::start(&[&OUTPUT[..], &["--renderer=pixman"]].concat())?;
    let layer = Layer::new("no_dma_buf_passes_through")?;
    let args = [&CUBE[..], &["--c", "10"]].concat();
    let out = run(layer.command(&weston.socket, true, "vkcube", &args, &[]))?;
    succeeded(&out)?;
    let stats = layer.stats()?;
    check(
        number(&stats, &["surfaces", "owned"]) == 0
            && number(&stats, &["wayland", "surfaces_without_dma_buf"]) == 1
            && number(&stats, &["swapchains", "passed_through"]) >= 1,
        || stats.to_string(),
    )?;
    Ok(Completion::Completed)
}

pub fn vkmark_scores() -> Outcome {
    if let Some(why) = prerequisites(&["vkmark"]) {
        return missing(why);
    }
    let weston = Weston::start(&OUTPUT)?;
    let layer = Layer::new("vkmark_scores")?;
    let args = [
        "--winsys",
        "wayland",
        "-s",
        "256x256",
        "-b",
        "cube:duration=20",
    ];
    let out = run(layer.command(&weston.socket, true, "vkmark", &args, &[]))?;
    succeeded(&out)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let score = text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("vkmark Score:")?
            .trim()
            .parse::<u64>()
            .ok()
    });
    check(score.is_some_and(|s| s > 0), || {
        format!("no score: {}", tail(&out.stdout))
    })?;
    owned_and_presented(&layer.stats()?, 1, "explicit")?;
    eprintln!("vkmark --winsys wayland through the layer: {score:?}");
    Ok(Completion::Completed)
}

pub fn killed_compositor_loses_the_surface() -> Outcome {
    if let Some(why) = prerequisites(&["vkcube"]) {
        return missing(why);
    }
    let weston = Weston::start(&OUTPUT)?;
    let layer = Layer::new("killed_compositor_loses_the_surface")?;
    let args = [&CUBE[..], &["--c", "100000"]].concat();
    let child = layer
        .command(&weston.socket, true, "vkcube", &args, &[])
        .spawn()?;
    // Long enough for the swapchain to be presenting.
    std::thread::sleep(Duration::from_secs(20));
    weston.kill()?;
    let started = Instant::now();
    let out = finish(child, Duration::from_secs(60))?;
    let log = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "vkcube ended {:?} after weston died: {}",
        started.elapsed(),
        out.status
    );
    // The presenter saw the connection fail and made the surface lost...
    check(log.contains("the Wayland surface is lost"), || {
        format!("not lost: {}", tail(&out.stderr))
    })?;
    // ...and vkcube saw VK_ERROR_SURFACE_LOST_KHR: that is the only result
    // on which it makes its surface again. The layer owns that new surface
    // on the dead display as lost, so vkcube's next query is refused
    // (vkcube then stops on its own assert: it treats any error there as
    // fatal).
    check(
        log.contains("on a display whose connection is lost"),
        || format!("the new surface was not refused: {}", tail(&out.stderr)),
    )?;
    check(
        !log.contains("the driver's WSI serves this Wayland surface"),
        || format!("the new surface went to the driver: {}", tail(&out.stderr)),
    )?;
    // vkcube ends through its own `assert(!err)` on that query, as it does
    // over Mesa's WSI (seen in the guest: cube.c demo_prepare_buffers, exit
    // status 134); anything else, such as a crash in the layer, fails here.
    let its_own_assert = log.contains("cube.c") && log.contains("Assertion `!err' failed");
    check(out.status.success() || its_own_assert, || {
        format!("vkcube ended with {}: {}", out.status, tail(&out.stderr))
    })?;
    Ok(Completion::Completed)
}

/// A screenshot's pixels, RGBA.
struct Shot {
    rgba: Vec<u8>,
}

/// Takes a screenshot of `weston` with `weston-screenshooter` (weston runs
/// with `--debug`, which allows it) in `dir`.
fn screenshot(weston: &Weston, dir: &Path) -> Result<Shot, Failed> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let out = Command::new("weston-screenshooter")
        .current_dir(dir)
        .env("WAYLAND_DISPLAY", &weston.socket)
        .output()?;
    succeeded(&out)?;
    let path = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "png"))
        .ok_or("weston-screenshooter wrote no PNG")?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path)?));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or("PNG too large")?];
    let info = reader.next_frame(&mut buf)?;
    buf.truncate(info.buffer_size());
    let rgba = match info.color_type {
        png::ColorType::Rgba => buf,
        png::ColorType::Rgb => buf
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        other => return Err(format!("unexpected PNG colour type {other:?}").into()),
    };
    Ok(Shot { rgba })
}

/// What an application added to the empty desktop `base`: how many pixels
/// differ (a channel more than 32 apart) and their mean colour.
fn content(shot: &Shot, base: &Shot) -> (usize, [f64; 3]) {
    let mut n = 0;
    let mut sum = [0u64; 3];
    for (p, q) in shot.rgba.chunks_exact(4).zip(base.rgba.chunks_exact(4)) {
        if p.iter().zip(q).take(3).any(|(x, y)| x.abs_diff(*y) > 32) {
            n += 1;
            for c in 0..3 {
                sum[c] += u64::from(p[c]);
            }
        }
    }
    let mean = sum.map(|s| s as f64 / n.max(1) as f64);
    (n, mean)
}

/// The cube on the screen through the layer, normally and on a kernel
/// without the write-fence import, looks like the cube through Mesa's own
/// WSI: its window adds as many pixels to the desktop (within a third; the
/// cube turns between captures) of about the same mean colour (each
/// channel within 40 of 255).
pub fn screenshot_shows_the_cube() -> Outcome {
    if let Some(why) = prerequisites(&["vkcube", "weston-screenshooter"]) {
        return missing(why);
    }
    let weston = Weston::start(&OUTPUT)?;
    let layer = Layer::new("screenshot_shows_the_cube")?;
    let mut shots = Vec::new();
    // Mesa's WSI, the layer, and the layer on a kernel that refuses the
    // write-fence import (the fallback's frames are the same cube).
    for (on, denied) in [
        (false, &[][..]),
        (true, &[]),
        (true, &[SyncFileIoctl::Import]),
    ] {
        let args = [&CUBE[..], &["--c", "100000"]].concat();
        let mut c = layer.command(&weston.socket, on, "vkcube", &args, &[]);
        seccomp::deny_in(&mut c, denied);
        let child = c.spawn()?;
        // Long enough for the cube to be on the screen.
        std::thread::sleep(Duration::from_secs(25));
        let name = match (on, denied.is_empty()) {
            (false, _) => "mesa",
            (true, true) => "layer",
            (true, false) => "layer-no-import",
        };
        let shot = screenshot(&weston, &layer.dir.join(name));
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
        shots.push(shot?);
    }
    // The empty desktop, once vkcube's window is gone (taken last: weston
    // draws its desktop some time after it starts).
    std::thread::sleep(Duration::from_secs(3));
    let base = screenshot(&weston, &layer.dir.join("desktop"))?;
    let [(mesa, mesa_colour), ours @ ..] =
        [&shots[0], &shots[1], &shots[2]].map(|s| content(s, &base));
    eprintln!("pixels added: Mesa's WSI {mesa} {mesa_colour:.0?}, the layer {ours:.0?} (normal, no import)");
    for (path, (n, colour)) in ["layer", "layer without the import"].iter().zip(ours) {
        // The window is 256×256; a blank one would add (nearly) nothing.
        check(n > 256 * 256 / 4, || {
            format!("{path}: blank: {n} pixels added")
        })?;
        check(n.abs_diff(mesa) * 3 <= mesa, || {
            format!("{path}: {n} pixels vs {mesa}")
        })?;
        check(
            colour
                .iter()
                .zip(mesa_colour)
                .all(|(a, b)| (a - b).abs() <= 40.0),
            || format!("{path}: colour {colour:?} vs {mesa_colour:?}"),
        )?;
    }
    Ok(Completion::Completed)
}
