//! The X11 platform end to end in the test guest, on Xorg (modesetting,
//! glamor on llvmpipe, on vkms: DRI3 1.2, Present 1.2) and on Xvfb (no
//! DRI3), as `scripts/vm/xorg` starts them: vkcube (xcb and Xlib) and
//! vkmark in each present mode, what the window shows, flips, a pending
//! foreign write fence holding a frame back in copy and in flip mode, a
//! server killed mid-run, validation above and below, and Xvfb left to
//! the driver's WSI.
//!
//! The oracles are the server's: the requests on the wire (`xtrace`
//! between the application and the server: DRI3 pixmaps, no MIT-SHM), its
//! `CompleteNotify` events (copy, flip, skip, and when) and `GetImage`, all
//! read on connections the layer knows nothing of.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Completion, Failed};
use serde_json::Value;

use crate::child::PARAM;
use crate::common::{check, child_json, run_ok, stat, Outcome};
use crate::support::{baseline, run_ok_within, Machine, Scratch};
use crate::vkmark::score;
use crate::x11::WINDOW_VAR;

/// vkcube's `--present_mode` numbers and vkmark's and the child's names.
const MODES: [(&str, &str); 4] = [
    ("2", "fifo"),
    ("1", "mailbox"),
    ("0", "immediate"),
    ("3", "fiforelaxed"),
];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/vm/xorg")
}

/// An X server started by `scripts/vm/xorg`, stopped when dropped.
pub struct Server {
    pub display: String,
}

impl Server {
    /// Xorg with DRI3 on vkms, or (`xvfb`) Xvfb without.
    pub fn start(xvfb: bool) -> Result<Self, Failed> {
        let mut c = Command::new(script());
        c.arg("start");
        if xvfb {
            c.arg("--xvfb");
        }
        let out = run_ok(&mut c)?;
        let text = String::from_utf8_lossy(&out.stdout);
        let display = text
            .lines()
            .find_map(|l| l.strip_prefix("DISPLAY="))
            .ok_or_else(|| format!("scripts/vm/xorg start printed no DISPLAY: {text}"))?
            .to_owned();
        Ok(Self { display })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").status();
    }
}

/// The longest one application or child of these tests may run: a hang
/// is a failure with its output, not a stuck test run.
const LIMIT: Duration = Duration::from_secs(300);

/// Runs `c` as [`run_ok`] does, killing it after [`LIMIT`].
fn bounded(c: &mut Command) -> Result<std::process::Output, Failed> {
    run_ok_within(c, LIMIT)
}

fn needs(m: &Machine, more: &[&Result<(), String>]) -> Option<Outcome> {
    if baseline() {
        return Some(Ok(Completion::ignored_with(
            "the X11 tests compare the layer against Mesa's X11 WSI themselves",
        )));
    }
    let mut all = vec![&m.vulkan, &m.xorg];
    all.extend(more);
    m.lacks(&all)
}

fn x11_stat(stats: &Value, path: &[&str]) -> u64 {
    let mut p = vec!["x11"];
    p.extend(path);
    stat(stats, &p)
}

/// What `xtrace` saw of one application's requests: DRI3
/// `PixmapFromBuffers` (minor opcode 7) and Present `Pixmap` (1), and any
/// MIT-SHM request.
#[derive(Debug, Default)]
struct Wire {
    pixmaps_from_buffers: usize,
    present_pixmaps: usize,
    shm: usize,
}

fn wire(log: &Path) -> Result<Wire, Failed> {
    let text = std::fs::read_to_string(log)?;
    // xtrace 1.4 names these extensions' requests by number only:
    // `DRI3-Request(<major>,<minor>)`.
    let count = |ext: &str, minor: Option<&str>| {
        text.lines()
            .filter_map(|l| l.split_once(&format!("{ext}-Request("))?.1.split_once(')'))
            .filter(|(numbers, _)| minor.is_none_or(|m| numbers.split(',').nth(1) == Some(m)))
            .count()
    };
    Ok(Wire {
        pixmaps_from_buffers: count("DRI3", Some("7")),
        present_pixmaps: count("Present", Some("1")),
        shm: count("MIT-SHM", None),
    })
}

/// `program` through `xtrace` (logging to `log`) on `server`.
fn traced(s: &Scratch, server: &Server, log: &Path, program: &[&str]) -> Command {
    let mut c = s.command("xtrace");
    c.args(["-n", "-k", "-D", ":9", "-d", &server.display, "-o"])
        .arg(log)
        .arg("--")
        .args(program);
    c
}

/// vkcube --c 120 on Xorg through xcb and through Xlib, in each present
/// mode: it exits 0; the layer made and presented its swapchain; on the
/// wire, its images became DRI3 pixmaps and every frame a PresentPixmap,
/// and nothing went through MIT-SHM.
pub fn vkcube_each_present_mode(m: &Machine) -> Outcome {
    if let Some(skip) = needs(m, &[&m.xtrace]) {
        return skip;
    }
    let _x = crate::display_tests::exclusive();
    let server = Server::start(false)?;
    for wsi in ["xcb", "xlib"] {
        for (number, name) in MODES {
            let s = Scratch::new("x11-vkcube")?;
            let log = s.path("xtrace.log");
            let program = [
                "vkcube",
                "--wsi",
                wsi,
                "--present_mode",
                number,
                "--c",
                "120",
                "--width",
                "128",
                "--height",
                "128",
            ];
            bounded(&mut traced(&s, &server, &log, &program))?;
            let stats = s.stats()?;
            let w = wire(&log)?;
            let presented = stat(&stats, &["frames", "presented"]);
            let pixmaps = x11_stat(&stats, &["pixmaps"]);
            check(
                stat(&stats, &["swapchains", "created"]) >= 1 && presented == 120,
                || format!("{wsi} {name}: the layer did not present 120 frames: {stats}"),
            )?;
            check(
                w.pixmaps_from_buffers as u64 == pixmaps
                    && pixmaps >= 3
                    && w.present_pixmaps >= 120
                    && w.shm == 0,
                || format!("{wsi} {name}: on the wire {w:?}; the layer made {pixmaps} pixmaps"),
            )?;
            println!(
                "vkcube --wsi {wsi} {name}: 120 frames, {} PixmapFromBuffers, {} PresentPixmap, {} MIT-SHM requests; server: {} copies, {} flips, {} skipped",
                w.pixmaps_from_buffers,
                w.present_pixmaps,
                w.shm,
                x11_stat(&stats, &["completes", "copy"]),
                x11_stat(&stats, &["completes", "flip"]),
                x11_stat(&stats, &["completes", "skip"]),
            );
        }
    }
    Ok(Completion::Completed)
}

/// vkmark --winsys xcb in each present mode: it exits 0 with a score, and
/// the layer presented its frames as DRI3 pixmaps.
pub fn vkmark_each_present_mode(m: &Machine) -> Outcome {
    if let Some(skip) = needs(m, &[&m.vkmark]) {
        return skip;
    }
    let _x = crate::display_tests::exclusive();
    let server = Server::start(false)?;
    for (_, name) in MODES {
        let s = Scratch::new("x11-vkmark")?;
        let out = bounded(
            s.command("vkmark")
                .env("DISPLAY", &server.display)
                .args(["--winsys", "xcb", "-s", "128x128", "-p", name])
                .args(["-b", "cube:duration=3"]),
        )?;
        let points = score(&out)?;
        let stats = s.stats()?;
        let presented = stat(&stats, &["frames", "presented"]);
        check(presented > 0 && x11_stat(&stats, &["pixmaps"]) >= 3, || {
            format!("vkmark {name}: the layer presented no pixmaps: {stats}")
        })?;
        println!("vkmark --winsys xcb -p {name}: score {points}, {presented} frames presented");
    }
    Ok(Completion::Completed)
}

/// The child's frames on a window of `window` (`WxH` or `full`) in `mode`
/// (`PARAM` `MODE:N`), with `env` added.
fn frames_on(
    server: &Server,
    window: &str,
    param: &str,
    env: &[(&str, &str)],
) -> Result<(Value, Value), Failed> {
    let s = Scratch::new("x11-frames")?;
    let mut c = s.child("x11_frames")?;
    c.env("DISPLAY", &server.display)
        .env(WINDOW_VAR, window)
        .env(PARAM, param)
        .envs(env.iter().copied());
    let r = child_json(&bounded(&mut c)?)?;
    let stats = s.stats_if_written()?.unwrap_or(Value::Null);
    Ok((r, stats))
}

/// A window of the child's, 30 frames each in FIFO and MAILBOX: the
/// server reports them shown by copies (a window smaller than the screen
/// is not flipped), and every pixel of the window is the last frame's
/// colour.
pub fn window_shows_the_last_frame(m: &Machine) -> Outcome {
    if let Some(skip) = needs(m, &[]) {
        return skip;
    }
    let _x = crate::display_tests::exclusive();
    let server = Server::start(false)?;
    for mode in ["fifo", "mailbox"] {
        let (r, stats) = frames_on(&server, "96x64", &format!("{mode}:30"), &[])?;
        check(r["wrong_pixels"] == 0 && r["pixels"] == 96 * 64, || {
            format!("{mode}: the window does not show the last frame: {r}")
        })?;
        check(
            r["completes"]["copy"].as_u64() > Some(0) && r["completes"]["flip"] == 0,
            || format!("{mode}: the server did not copy the frames: {r}"),
        )?;
        check(x11_stat(&stats, &["pixmaps"]) >= 3, || {
            format!("{mode}: the layer made no pixmaps: {stats}")
        })?;
        println!(
            "{mode}: 30 frames, server {}; window 96x64, every pixel the last frame's",
            r["completes"]
        );
    }
    Ok(Completion::Completed)
}

/// A window covering the screen: the server flips the frames, and the
/// window shows the last one, every pixel.
pub fn full_screen_flips(m: &Machine) -> Outcome {
    if let Some(skip) = needs(m, &[]) {
        return skip;
    }
    let _x = crate::display_tests::exclusive();
    let server = Server::start(false)?;
    let (r, _) = frames_on(&server, "full", "fifo:30", &[])?;
    check(r["completes"]["flip"].as_u64() > Some(0), || {
        format!("the server flipped no frame of a full-screen window: {r}")
    })?;
    check(r["wrong_pixels"] == 0, || {
        format!("the full-screen window does not show the last frame: {r}")
    })?;
    println!(
        "full screen {}: server {}, every pixel the last frame's",
        r["extent"], r["completes"]
    );
    Ok(Completion::Completed)
}

/// A pending vgem write fence in the image's dma-buf keeps the frame from
/// the window until it signals: the server completes it only after the
/// signal, in copy mode (the layer's wait fence holds the present) and in
/// flip mode (the kernel's page flip waits), and until then a copied
/// window shows the frame before. The same with `SYNCFILE_WSI_SYNC=implicit` in copy mode
/// shows why the layer bridges: that server does not wait.
pub fn pending_fence_holds_the_frame(m: &Machine) -> Outcome {
    if let Some(skip) = needs(m, &[&m.vgem]) {
        return skip;
    }
    let _x = crate::display_tests::exclusive();
    let server = Server::start(false)?;
    let held = |window: &str, sync: &str| -> Result<Value, Failed> {
        let s = Scratch::new("x11-held")?;
        let mut c = s.child("x11_held")?;
        c.env("DISPLAY", &server.display)
            .env(WINDOW_VAR, window)
            .env("SYNCFILE_WSI_SYNC", sync);
        child_json(&bounded(&mut c)?)
    };
    for (window, how) in [("96x64", "copy"), ("full", "flip")] {
        let r = held(window, "auto")?;
        let completed = r["completed_ns"].as_u64().unwrap_or(0);
        let signalled = r["signalled_ns"].as_u64().unwrap_or(u64::MAX);
        check(
            r["completed_while_pending"] == 0
                && r["shown_while_pending"] != true
                && r["shown_after_signal"] == true
                && completed >= signalled,
            || format!("{how}: the frame reached the window while its fence was pending: {r}"),
        )?;
        check(r["completes"][how].as_u64() > Some(0), || {
            format!("{how}: the server did not {how}: {r}")
        })?;
        println!(
            "{how}: held frame completed {:.1} ms after the signal; {}",
            (completed - signalled) as f64 / 1e6,
            if how == "copy" {
                "until then the window showed the frame before"
            } else {
                "no frame completed while it was pending"
            }
        );
    }
    let r = held("96x64", "implicit")?;
    check(r["shown_while_pending"] == true, || {
        format!("SYNCFILE_WSI_SYNC=implicit: the copying server waited for the fence after all, so the held test proves nothing: {r}")
    })?;
    println!("implicit, copy: the server showed the frame while its fence was pending (it does not wait)");
    Ok(Completion::Completed)
}

/// The X server killed while the child presents: its next present or
/// acquire answers `VK_ERROR_SURFACE_LOST_KHR` and it exits, no hang.
pub fn killed_server_is_lost(m: &Machine) -> Outcome {
    if let Some(skip) = needs(m, &[]) {
        return skip;
    }
    let _x = crate::display_tests::exclusive();
    let server = Server::start(false)?;
    let s = Scratch::new("x11-lost")?;
    let mut child = s
        .child("x11_until_lost")?
        .env("DISPLAY", &server.display)
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().transpose()?.unwrap_or_default();
    check(first == "presenting", || {
        format!("the child did not start presenting: {first:?}")
    })?;
    std::thread::sleep(Duration::from_secs(3));
    let killed = Instant::now();
    drop(server);
    let last = lines.map_while(Result::ok).last().unwrap_or_default();
    let status = child.wait()?;
    let r: Value = serde_json::from_str(&last).map_err(|e| format!("{last:?}: {e}"))?;
    check(status.success(), || format!("the child failed: {status}"))?;
    let ended = r["ended"].as_str().unwrap_or_default();
    check(ended.contains("ERROR_SURFACE_LOST_KHR"), || {
        format!("the child's frames ended with {ended:?}, not VK_ERROR_SURFACE_LOST_KHR: {r}")
    })?;
    println!(
        "server killed after {} frames: {ended} within {:.1} s",
        r["frames"],
        killed.elapsed().as_secs_f64()
    );
    Ok(Completion::Completed)
}

/// The window resized while the child presents: a present or acquire
/// answers `VK_ERROR_OUT_OF_DATE_KHR` within a few frames, and a new
/// swapchain (replacing the old) takes the new size from the surface's
/// capabilities and presents.
pub fn resize_is_out_of_date(m: &Machine) -> Outcome {
    if let Some(skip) = needs(m, &[]) {
        return skip;
    }
    let _x = crate::display_tests::exclusive();
    let server = Server::start(false)?;
    let s = Scratch::new("x11-resized")?;
    let mut c = s.child("x11_resized")?;
    c.env("DISPLAY", &server.display).env(WINDOW_VAR, "96x64");
    let r = child_json(&bounded(&mut c)?)?;
    let ended = r["ended"].as_str().unwrap_or_default();
    check(ended.contains("ERROR_OUT_OF_DATE_KHR"), || {
        format!("the resized window's swapchain did not go out of date: {r}")
    })?;
    check(r["new_extent"] == r["resized_to"], || {
        format!("the new swapchain does not have the window's new size: {r}")
    })?;
    println!(
        "resized to {}: {ended} after {} more frames; the new swapchain is {}",
        r["resized_to"], r["frames_after_resize"], r["new_extent"]
    );
    Ok(Completion::Completed)
}

pub fn validation_below(m: &Machine) -> Outcome {
    validation(m, true)
}

pub fn validation_above(m: &Machine) -> Outcome {
    validation(m, false)
}

fn validation(m: &Machine, below: bool) -> Outcome {
    if let Some(skip) = needs(m, &[&m.validation]) {
        return skip;
    }
    let _x = crate::display_tests::exclusive();
    let server = Server::start(false)?;
    crate::tests::validated(below, crate::tests::On::X11(&server.display))
}

/// On Xvfb (no DRI3) the driver's WSI serves the window: the layer says
/// so, owns no swapchain, and the window shows the child's last frame.
pub fn xvfb_passes_through(m: &Machine) -> Outcome {
    if let Some(skip) = needs(m, &[]) {
        return skip;
    }
    let _x = crate::display_tests::exclusive();
    let server = Server::start(true)?;
    let (r, stats) = frames_on(&server, "96x64", "fifo:30", &[])?;
    check(r["wrong_pixels"] == 0, || {
        format!("on Xvfb, the window does not show the last frame: {r}")
    })?;
    check(
        x11_stat(&stats, &["surfaces_without_dri3"]) == 1
            && stat(&stats, &["swapchains", "created"]) == 0
            && x11_stat(&stats, &["pixmaps"]) == 0,
        || format!("on Xvfb, the layer did not leave the window to the driver: {stats}"),
    )?;
    println!("Xvfb: the driver's WSI presented 30 frames; every pixel the last frame's");
    Ok(Completion::Completed)
}
