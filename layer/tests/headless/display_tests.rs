//! The display platform end to end on vkms, in the test guest: vkcube and
//! vkmark on a display through the layer in each present mode it offers,
//! the sync modes' paths, the kernel holding a flip for a foreign write
//! fence (implicit) or not (explicit), what the display shows read back
//! through the writeback connector against the presented image, validation
//! above and below, and the display taken by another master or left by a
//! killed application.
//!
//! The oracles are the kernel's wherever it has one: whether the layer let
//! go of the card (another process becomes its DRM master, no plane shows a
//! framebuffer), the flip event's timestamp, vkms's writeback.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use libtest_mimic::{Completion, Failed};
use serde_json::Value;
use syncfile::kms::{client_cap, Card};

use crate::common::{check, child_json, run_ok, stat, Outcome};
use crate::support::{baseline, Machine, Scratch};
use crate::vkmark::{decode, score};

/// The setting that names the layer's KMS devices.
pub const DISPLAY_DEVICE: &str = "SYNCFILE_WSI_DISPLAY_DEVICE";
/// A vkcube that runs on displays (`scripts/vm/image` says why trixie's
/// does not).
pub const VKCUBE: &str = "/opt/vulkan-tools-1.4.341/vkcube";

/// vkcube's `--present_mode` numbers and vkmark's names of the modes vkms
/// offers (no IMMEDIATE: it has no tearing flips).
const MODES: [(&str, &str); 2] = [("2", "fifo"), ("1", "mailbox")];

/// The vkms card node, if this machine has one.
pub fn vkms_node() -> Result<String, String> {
    let mut cards: Vec<_> = std::fs::read_dir("/dev/dri")
        .map_err(|e| format!("no /dev/dri: {e}"))?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("card"))
        })
        .collect();
    cards.sort();
    cards
        .into_iter()
        .find(|p| {
            Card::open(p)
                .and_then(|c| c.driver_name())
                .is_ok_and(|n| n == "vkms")
        })
        .map(|p| p.to_string_lossy().into_owned())
        .ok_or_else(|| "no vkms card (the guest loads vkms)".to_owned())
}

/// The one display (the X11 tests' Xorg drives it too): its tests take
/// turns, and the valgrind run, which would starve their applications of
/// CPU (vkmark in MAILBOX then got one frame out in 5 s, and none on the
/// screen, in two CI runs), takes its turn with them.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static DISPLAY: Mutex<()> = Mutex::new(());
    DISPLAY.lock().unwrap_or_else(|e| e.into_inner())
}

fn needs(m: &Machine, more: &[&Result<(), String>]) -> Option<Outcome> {
    if baseline() {
        return Some(Ok(Completion::ignored_with(
            "Mesa has no displays here (lavapipe's VK_KHR_display lists none)",
        )));
    }
    let vkms = m.vkms.as_ref().map(|_| ()).map_err(Clone::clone);
    let mut all = vec![&m.vulkan, &vkms];
    all.extend(more);
    m.lacks(&all)
}

fn card(m: &Machine) -> &str {
    m.vkms.as_deref().unwrap_or_default()
}

/// `program` on the vkms display through the layer.
fn on_display(s: &Scratch, program: &str, card: &str) -> Command {
    let mut c = s.command(program);
    c.env(DISPLAY_DEVICE, card);
    c
}

fn vkcube(s: &Scratch, card: &str, mode: &str, frames: u32) -> Command {
    let mut c = on_display(s, VKCUBE, card);
    c.args(["--wsi", "display", "--present_mode", mode, "--c"])
        .arg(frames.to_string());
    c
}

/// What each plane of `card` shows (its framebuffer, 0 for none): before
/// an application, the console's.
fn screen(card: &str) -> Result<Vec<(u32, u32)>, Failed> {
    let c = Card::open(card)?;
    c.set_client_cap(client_cap::ATOMIC, 1)?;
    c.planes()?
        .into_iter()
        .map(|p| Ok((p, c.plane(p)?.framebuffer)))
        .collect()
}

/// The kernel says the layer let go of `card`: this process becomes its
/// DRM master, and the planes show what they showed before the application
/// (`before`: the console's framebuffer, which the kernel's fbdev
/// emulation puts back once no master holds the card).
fn released(card: &str, before: &[(u32, u32)]) -> Result<(), Failed> {
    let c = Card::open(card)?;
    c.set_master(true)
        .map_err(|e| format!("{card} still has another DRM master: {e}"))?;
    c.set_master(false)?;
    drop(c);
    let after = screen(card)?;
    check(after == before, || {
        format!("the planes (id, framebuffer) showed {before:?} before the application and {after:?} after")
    })
}

fn display_stat(stats: &Value, key: &str) -> u64 {
    stat(stats, &["display", key])
}

fn commits(stats: &Value) -> (u64, u64) {
    (
        stat(stats, &["display", "commits", "implicit"]),
        stat(stats, &["display", "commits", "in_fence"]),
    )
}

/// vkcube --c 120 on the display in each mode: it exits 0, the layer made
/// and presented its swapchain, the kernel flipped its frames (FIFO shows
/// nearly all of them; MAILBOX may replace most), and afterwards the
/// layer has let go of the card.
pub fn vkcube_each_present_mode(m: &Machine) -> Outcome {
    if let Some(skip) = needs(m, &[&m.display_vkcube]) {
        return skip;
    }
    let _display = exclusive();
    let mut report = Vec::new();
    for (mode, name) in MODES {
        let s = Scratch::new("display-vkcube")?;
        let before = screen(card(m))?;
        run_ok(&mut vkcube(&s, card(m), mode, 120))?;
        let stats = s.stats()?;
        let presented = stat(&stats, &["frames", "presented"]);
        let shown = stat(&stats, &["frames", "displayed"]);
        let replaced = stat(&stats, &["frames", "replaced"]);
        check(
            stat(&stats, &["swapchains", "created"]) >= 1 && presented >= 120,
            || format!("{name}: the layer did not present vkcube's 120 frames: {stats}"),
        )?;
        let enough = if name == "fifo" { presented - 3 } else { 1 };
        check(shown >= enough, || {
            format!("{name}: only {shown} of {presented} frames reached the screen: {stats}")
        })?;
        check(display_stat(&stats, "mode_sets") >= 1, || {
            format!("{name}: the output was never lit: {stats}")
        })?;
        released(card(m), &before)?;
        report.push(format!(
            "{name}: {presented} presented, {shown} flipped, {replaced} replaced"
        ));
    }
    println!("vkcube on the display: {}", report.join("; "));
    Ok(Completion::Completed)
}

/// vkmark's cube on the display in each mode: exit 0 with a score.
pub fn vkmark_each_present_mode(m: &Machine) -> Outcome {
    if let Some(skip) = needs(m, &[&m.vkmark]) {
        return skip;
    }
    let _display = exclusive();
    let mut report = Vec::new();
    for (_, name) in MODES {
        let s = Scratch::new("display-vkmark")?;
        let before = screen(card(m))?;
        let mut c = on_display(&s, "vkmark", card(m));
        c.args(["--winsys", "display", "-p", name, "-b", "cube:duration=5"]);
        let out = run_ok(&mut c)?;
        let n = score(&out)?;
        let stats = s.stats()?;
        let shown = stat(&stats, &["frames", "displayed"]);
        check(shown > 0, || {
            format!("{name}: no frame reached the screen: {stats}")
        })?;
        released(card(m), &before)?;
        report.push(format!("{name} {n} ({shown} flipped)"));
    }
    println!("vkmark on the display: {}", report.join(", "));
    Ok(Completion::Completed)
}

/// `SYNCFILE_WSI_SYNC` picks the commits' fences: `implicit` passes no
/// `IN_FENCE_FD`, `explicit` passes one with every commit, `auto` does
/// where the plane takes one (vkms's does), `cpu` waits in a present thread
/// and commits like `implicit`.
pub fn sync_modes_take_their_paths(m: &Machine) -> Outcome {
    if let Some(skip) = needs(m, &[&m.display_vkcube]) {
        return skip;
    }
    let _display = exclusive();
    let mut report = Vec::new();
    for sync in ["auto", "implicit", "explicit", "cpu"] {
        let s = Scratch::new("display-sync")?;
        let mut c = vkcube(&s, card(m), "2", 30);
        c.env("SYNCFILE_WSI_SYNC", sync);
        run_ok(&mut c)?;
        let stats = s.stats()?;
        let (implicit, in_fence) = commits(&stats);
        let ok = match sync {
            "implicit" | "cpu" => implicit >= 30 && in_fence == 0,
            _ => in_fence >= 30 && implicit == 0,
        };
        check(ok, || {
            format!("{sync}: {implicit} implicit and {in_fence} IN_FENCE_FD commits: {stats}")
        })?;
        if sync == "cpu" {
            check(stat(&stats, &["fallbacks", "forced_cpu"]) >= 1, || {
                format!("cpu: no swapchain in the forced CPU fallback: {stats}")
            })?;
        }
        report.push(format!("{sync}: {implicit} implicit, {in_fence} in-fence"));
    }
    println!("display commits by sync mode: {}", report.join("; "));
    Ok(Completion::Completed)
}

/// The held frame (`display.rs`) under `sync`: when its flip happened
/// against when the foreign fence signalled, by the flip event's kernel
/// timestamp.
fn held(m: &Machine, sync: &str) -> Result<(i64, Value), Failed> {
    let s = Scratch::new("display-held")?;
    let mut c = s.child("display_held")?;
    c.env(DISPLAY_DEVICE, card(m))
        .env("SYNCFILE_WSI_SYNC", sync);
    let r = child_json(&run_ok(&mut c)?)?;
    let shown = r["shown_ns"]
        .as_u64()
        .ok_or_else(|| format!("the held frame was never reported shown: {r}"))?;
    let signalled = r["signalled_ns"].as_u64().unwrap_or(u64::MAX);
    let stats = s.stats()?;
    Ok((shown as i64 - signalled as i64, json_with(r, stats)))
}

fn json_with(mut r: Value, stats: Value) -> Value {
    r["stats"] = stats;
    r
}

/// `implicit`: a pending vgem write fence in the image's dma-buf holds the
/// frame's flip until the test signals it: the fences the layer leaves in
/// the dma-buf reach the display.
pub fn implicit_fence_holds_the_flip(m: &Machine) -> Outcome {
    if let Some(skip) = needs(m, &[&m.vgem]) {
        return skip;
    }
    let _display = exclusive();
    let (after, r) = held(m, "implicit")?;
    check(after >= 0, || {
        format!(
            "the flip happened {} µs before the foreign write fence signalled: {r}",
            -after / 1000
        )
    })?;
    println!(
        "implicit: the held frame flipped {} µs after its foreign write fence signalled",
        after / 1000
    );
    Ok(Completion::Completed)
}

/// `explicit`: the commit's `IN_FENCE_FD` (the render's fence, here
/// already signalled) is all the kernel waits for, so the same foreign
/// fence does not hold the flip; the render itself waited, through the
/// acquire, for every fence its dma-buf held before it.
pub fn explicit_in_fence_replaces_the_implicit(m: &Machine) -> Outcome {
    if let Some(skip) = needs(m, &[&m.vgem]) {
        return skip;
    }
    let _display = exclusive();
    let (after, r) = held(m, "explicit")?;
    check(after < 0, || {
        format!("with IN_FENCE_FD the flip still waited for the dma-buf's foreign fence: {r}")
    })?;
    println!(
        "explicit: the frame flipped {} µs before the foreign fence signalled",
        -after / 1000
    );
    Ok(Completion::Completed)
}

/// vkcube with capture on: what vkms's writeback read back from the
/// display while frame N was on it matches the presented image of frame N
/// (every channel within 1 in all but 0.1 % of the pixels), and shows the
/// cube (the frame is not one colour).
pub fn read_back_shows_the_cube(m: &Machine) -> Outcome {
    if let Some(skip) = needs(m, &[&m.display_vkcube]) {
        return skip;
    }
    let _display = exclusive();
    let s = Scratch::new("display-readback")?;
    let dir = s.path("capture");
    let mut c = vkcube(&s, card(m), "2", 45);
    c.env("SYNCFILE_WSI_CAPTURE", &dir)
        .env("SYNCFILE_WSI_CAPTURE_EVERY", "20");
    run_ok(&mut c)?;
    let stats = s.stats()?;
    check(stat(&stats, &["frames", "read_back"]) >= 1, || {
        format!("nothing was read back from the display: {stats}")
    })?;
    let (presented, shown) = (dir.join("frame-000040.png"), dir.join("display-000040.png"));
    let (a, b) = (decode(&presented)?, decode(&shown)?);
    check((a.width, a.height) == (b.width, b.height), || {
        format!(
            "the read back is {}x{}, the frame {}x{}",
            b.width, b.height, a.width, a.height
        )
    })?;
    let pixels = a.rgba.len() / 4;
    let off = a
        .rgba
        .chunks_exact(4)
        .zip(b.rgba.chunks_exact(4))
        .filter(|(p, q)| (0..3).any(|i| p[i].abs_diff(q[i]) > 1))
        .count();
    check(off * 1000 <= pixels, || {
        format!("{off} of {pixels} pixels read back differ from the presented frame")
    })?;
    let corner = &b.rgba[..4];
    let cube = b
        .rgba
        .chunks_exact(4)
        .filter(|p| p[..3] != corner[..3])
        .count();
    check(cube * 100 >= pixels, || {
        format!("the display shows almost only one colour ({cube} of {pixels} pixels differ)")
    })?;
    println!(
        "read back frame 40 ({}x{}): {off} of {pixels} pixels off by more than 1; {cube} not background",
        a.width, a.height
    );
    Ok(Completion::Completed)
}

pub fn validation_below(m: &Machine) -> Outcome {
    if let Some(skip) = needs(m, &[&m.validation]) {
        return skip;
    }
    let _display = exclusive();
    crate::tests::validated(true, crate::tests::On::Display(card(m)))
}

pub fn validation_above(m: &Machine) -> Outcome {
    if let Some(skip) = needs(m, &[&m.validation]) {
        return skip;
    }
    let _display = exclusive();
    crate::tests::validated(false, crate::tests::On::Display(card(m)))
}

/// Another process is the card's DRM master: the layer cannot make vkcube's
/// swapchain, says why, and vkcube exits with an error; once that master
/// goes, the layer drives the display again.
pub fn another_master_takes_the_display(m: &Machine) -> Outcome {
    if let Some(skip) = needs(m, &[&m.display_vkcube]) {
        return skip;
    }
    let _display = exclusive();
    let before = screen(card(m))?;
    let other = Card::open(card(m))?;
    other.set_master(true)?;
    let s = Scratch::new("display-master")?;
    let out = vkcube(&s, card(m), "2", 30)
        .env("SYNCFILE_WSI_LOG", "error")
        .output()?;
    drop(other);
    let log = String::from_utf8_lossy(&out.stderr);
    check(!out.status.success(), || {
        "vkcube succeeded on a display another process drives".to_owned()
    })?;
    let said = log
        .lines()
        .find(|l| l.contains("vkCreateSwapchainKHR") && l.contains("DRM master"));
    check(said.is_some(), || {
        format!("the layer did not say why it could not make the swapchain: {log}")
    })?;
    let s = Scratch::new("display-master-after")?;
    run_ok(&mut vkcube(&s, card(m), "2", 10))?;
    released(card(m), &before)?;
    println!(
        "another master: vkcube exited with {} after the layer said {:?}; it ran once that master was gone",
        out.status,
        said.unwrap_or_default().trim()
    );
    Ok(Completion::Completed)
}

/// vkcube killed mid-run while the layer drives the display: nothing
/// hangs, and the kernel hands the card to the next master.
pub fn killed_application_releases_the_display(m: &Machine) -> Outcome {
    if let Some(skip) = needs(m, &[&m.display_vkcube]) {
        return skip;
    }
    let _display = exclusive();
    let s = Scratch::new("display-killed")?;
    let before = screen(card(m))?;
    let mut child = vkcube(&s, card(m), "2", 1_000_000)
        .env("SYNCFILE_WSI_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    // Until the layer made the swapchain (its log says so): opening the
    // card before would make this process its master by the kernel's rule
    // for the first opener, and take the display from the layer.
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("swapchain created") {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(300)).is_err() {
        let _ = child.kill();
        return Err("vkcube made no swapchain on the display".into());
    }
    std::thread::sleep(Duration::from_secs(3));
    child.kill()?;
    let status = child.wait()?;
    released(card(m), &before)?;
    println!("killed vkcube ({status}); the card's next master finds it free");
    Ok(Completion::Completed)
}

/// Whether `path` is an executable file.
pub fn executable(path: &str) -> Result<(), String> {
    if Path::new(path).is_file() {
        Ok(())
    } else {
        Err(format!("{path} is missing (scripts/vm/image installs it)"))
    }
}
