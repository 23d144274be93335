//! A toolkit-like application: a Vulkan client whose own "toolkit" thread
//! commits the same `wl_surface` at random moments while the layer presents
//! on it, serialized with the presents by the application's own lock on the
//! surface (held around every `vkQueuePresentKHR`, inside which the layer
//! makes its requests). The oracle is the protocol on the wire, which
//! libwayland prints with `WAYLAND_DEBUG=client`: no protocol error, every
//! frame one whole commit of its own (with its acquire fence and release
//! object under explicit sync), the toolkit's commits in between, and in
//! FIFO every frame shown (its frame callback done) before the next commit,
//! unless the compositor kept the layer waiting for all of `FIFO_WAIT`.

use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ash::vk;
use libtest_mimic::{Completion, Failed};
use serde_json::{json, Value};
use syncfile::sources::Source;
use wayland_client::backend::WaylandError;
use wayland_client::protocol::wl_surface::WlSurface;
use wayland_client::{Connection, Proxy};
use VkLayer_syncfile_wsi::wayland::FIFO_WAIT;

use crate::app::App;
use crate::apps::{self, number, Layer, OUTPUT, RUN_LIMIT};
use crate::common::child::Result as ChildResult;
use crate::vulkan::{Chain, Vk};
use crate::wire::{self, Commit, Surface};
use crate::{check, missing, this_binary, Outcome, Weston, CHILD_VAR};

/// The child's present mode: `fifo`, `mailbox` or `immediate`.
const MODE_VAR: &str = "SYNCFILE_TEST_PRESENT_MODE";
/// How many frames the child presents.
const FRAMES_VAR: &str = "SYNCFILE_TEST_FRAMES";
const FRAMES: u64 = 60;
const SIZE: u32 = 64;
/// The toolkit sleeps up to this long between its commits.
const PAUSE_MS: u64 = 20;
/// Toolkit commits the run must have between the layer's first and last
/// frames, for the race to have been run at all (35 to 67 were seen in
/// runs of 60 frames, FIFO or MAILBOX).
const MIN_INTERLEAVED: usize = 5;
/// The layer's `damage_buffer`: the whole buffer.
const LAYER_DAMAGE: &str = "0, 0, 2147483647, 2147483647";
/// The toolkit's, told apart from it.
const TOOLKIT_DAMAGE: &str = "0, 0, 1, 1";

pub fn commits_from_another_thread_explicit() -> Outcome {
    commits_from_another_thread("explicit", &["fifo", "mailbox"])
}

pub fn commits_from_another_thread_implicit() -> Outcome {
    commits_from_another_thread("implicit", &["fifo"])
}

fn commits_from_another_thread(sync: &str, modes: &[&str]) -> Outcome {
    if let Some(why) = apps::prerequisites(&[]).or_else(|| Source::Udmabuf.missing()) {
        return missing(why);
    }
    let weston = Weston::start(&OUTPUT)?;
    let layer = Layer::new(&format!("toolkit_{sync}"))?;
    let exe = this_binary()?;
    // Weston's first dma-buf frames cost it seconds to tens of seconds in
    // the emulated guest (llvmpipe compiling its shaders, seen at 20 s):
    // a short run first, unjudged, so that FIFO is judged on a compositor
    // that keeps up.
    let warm = [
        (CHILD_VAR, "toolkit"),
        (FRAMES_VAR, "5"),
        ("SYNCFILE_WSI_SYNC", sync),
    ];
    let out = apps::finish(
        layer
            .command(&weston.socket, true, &exe, &[], &warm)
            .spawn()?,
        RUN_LIMIT,
    )?;
    apps::succeeded(&out).map_err(|e| format!("warm-up: {}", e.message().unwrap_or_default()))?;
    for mode in modes {
        let frames = FRAMES.to_string();
        let env = [
            (CHILD_VAR, "toolkit"),
            (MODE_VAR, mode),
            (FRAMES_VAR, &frames),
            ("SYNCFILE_WSI_SYNC", sync),
            ("WAYLAND_DEBUG", "client"),
        ];
        // The wire log goes to a file: libwayland writes it holding the
        // display's lock, so a full pipe nobody reads would stop the child.
        let path = layer.file(&format!("{mode}.stderr"));
        let mut command = layer.command(&weston.socket, true, &exe, &[], &env);
        command.stderr(std::fs::File::create(&path)?);
        let started = Instant::now();
        let out = apps::finish(command.spawn()?, RUN_LIMIT);
        let took = started.elapsed();
        let log = std::fs::read_to_string(&path)?;
        let context = |e: Failed| {
            let m = e.message().unwrap_or_default();
            format!("{sync} {mode}: {m}; stderr: {}", apps::tail(log.as_bytes()))
        };
        let out = out.map_err(context)?;
        apps::succeeded(&out).map_err(context)?;
        let text = String::from_utf8_lossy(&out.stdout);
        let last = text.lines().last().ok_or("the child printed nothing")?;
        let report: Value =
            serde_json::from_str(last).map_err(|e| format!("child output {last:?}: {e}"))?;
        let seen = judge(&report, &log, &layer.stats()?, sync, mode).map_err(context)?;
        let longest = report["present_us"].as_array().into_iter().flatten();
        let longest = longest.filter_map(Value::as_u64).max().unwrap_or(0);
        eprintln!(
            "{sync} {mode} in {took:.1?}: {seen}, longest vkQueuePresentKHR {} ms; seed {}",
            longest / 1000,
            report["seed"]
        );
    }
    Ok(Completion::Completed)
}

/// Checks the child's run from its report, its wire log and the layer's
/// statistics; says what it counted.
fn judge(
    report: &Value,
    log: &str,
    stats: &Value,
    sync: &str,
    mode: &str,
) -> Result<String, Failed> {
    let errors = wire::protocol_errors(log);
    check(errors.is_empty(), || format!("protocol error: {errors:?}"))?;
    // The layer logs its failures (a lost surface among them) as errors.
    let failures: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    check(failures.is_empty(), || {
        format!("the layer failed: {failures:?}")
    })?;
    let presented = number(report, &["presented"]);
    check(presented == FRAMES, || {
        format!("{presented} frames presented")
    })?;
    let messages = wire::parse(log);
    let id = number(report, &["surface"]) as u32;
    let surface = Surface::of(&messages, id);
    let (frames, toolkit): (Vec<&Commit>, Vec<&Commit>) = surface
        .commits
        .iter()
        .filter(|c| !c.requests.is_empty())
        .partition(|c| c.attaches(&surface.buffers));
    // Each commit is all the layer's or all the toolkit's: no half frame.
    let explicit = sync == "explicit";
    check(surface.synchronized == explicit, || {
        format!(
            "explicit-synchronization object made: {}",
            surface.synchronized
        )
    })?;
    let fifo = mode == "fifo";
    for (n, c) in frames.iter().enumerate() {
        let layer_only = c.requests.iter().all(|m| match m.name {
            "set_acquire_fence" | "get_release" => m.interface != "wl_surface",
            "damage_buffer" => m.args == LAYER_DAMAGE,
            "attach" | "frame" => true,
            _ => false,
        });
        let whole = c.count("attach") == 1
            && c.count("damage_buffer") == 1
            && c.count("frame") == usize::from(fifo)
            && c.count("set_acquire_fence") == usize::from(explicit)
            && c.count("get_release") == usize::from(explicit);
        check(layer_only && whole, || format!("frame {n}: {}", c.show()))?;
    }
    for c in &toolkit {
        let toolkit_only = c.requests.iter().all(|m| match m.name {
            "set_buffer_scale" => m.args == "1",
            "damage_buffer" => m.args == TOOLKIT_DAMAGE,
            _ => false,
        });
        check(toolkit_only, || format!("a toolkit commit: {}", c.show()))?;
    }
    // The application's own first commit, before its first configure, is
    // of nothing; no other commit may be.
    let empty = surface.commits.len() - frames.len() - toolkit.len();
    let first_empty = surface
        .commits
        .first()
        .is_some_and(|c| c.requests.is_empty());
    check(empty <= 1 && (empty == 0 || first_empty), || {
        format!("{empty} commits of nothing on wl_surface#{id}")
    })?;
    check(surface.trailing.iter().all(|m| m.name == "destroy"), || {
        let t: Vec<String> = surface.trailing.iter().map(|m| m.to_string()).collect();
        format!("requests left uncommitted: {t:?}")
    })?;
    check(frames.len() as u64 == presented, || {
        format!(
            "{} commits attach the layer's buffers {:?} for {presented} frames presented",
            frames.len(),
            surface.buffers
        )
    })?;
    let stat = |path: &[&str]| number(stats, path);
    check(stat(&["frames", "presented"]) == presented, || {
        format!("statistics: {stats}")
    })?;
    check(stat(&["wayland", "commits", sync]) == presented, || {
        format!("statistics: {stats}")
    })?;
    check(stat(&["wayland", "lost"]) == 0, || {
        format!("statistics: {stats}")
    })?;
    apps::owned_and_presented(stats, presented, sync)?;
    let toolkit_commits = number(report, &["toolkit_commits"]);
    check(toolkit.len() as u64 == toolkit_commits, || {
        format!(
            "{} toolkit commits on the wire, {toolkit_commits} made",
            toolkit.len()
        )
    })?;
    let (first, last) = (frames[0].at, frames[frames.len() - 1].at);
    let interleaved = toolkit
        .iter()
        .filter(|c| first < c.at && c.at < last)
        .count();
    check(interleaved >= MIN_INTERLEAVED, || {
        format!("only {interleaved} toolkit commits between the first and last frames")
    })?;
    let done = wire::callbacks_done(&messages);
    let (shown, late) = if fifo {
        fifo_paced(&frames, &done, report, stats)?
    } else {
        (0, 0)
    };
    Ok(format!(
        "{presented} frames, {} layer commits, {} toolkit commits ({interleaved} between frames), {shown} frames after their predecessor's callback, {late} after the whole FIFO wait, {} wl_callback.done in all, {} messages",
        frames.len(),
        toolkit.len(),
        done.len(),
        messages.len()
    ))
}

/// FIFO: the layer commits a frame only once the one before is shown (its
/// callback done), or once it has waited FIFO_WAIT for that in vain inside
/// vkQueuePresentKHR, which the guest's weston makes it do now and then
/// (seen: stalls of 1.5 to 20 s without a single event): such a frame is
/// late, and the layer counts each as a timeout. Returns how many frames
/// were shown and how many late.
fn fifo_paced(
    frames: &[&Commit],
    done: &[(usize, u32)],
    report: &Value,
    stats: &Value,
) -> Result<(usize, u64), Failed> {
    let present_us = report["present_us"].as_array().ok_or("no present times")?;
    let (mut shown, mut late) = (0, 0);
    for (n, pair) in frames.windows(2).enumerate() {
        let callback = pair[0]
            .callback()
            .ok_or("a FIFO frame without a callback")?;
        let (after, before) = (pair[0].at, pair[1].first);
        if done
            .iter()
            .any(|&(at, c)| c == callback && after < at && at < before)
        {
            shown += 1;
            continue;
        }
        let us = present_us.get(n + 1).and_then(Value::as_u64).unwrap_or(0);
        let waited = Duration::from_micros(us);
        check(waited >= FIFO_WAIT * 95 / 100, || {
            format!(
                "frame {} was committed before frame {n}'s callback wl_callback#{callback} was done, {waited:?} into its vkQueuePresentKHR",
                n + 1
            )
        })?;
        late += 1;
    }
    let timeouts = number(stats, &["wayland", "frame_callback_timeouts"]);
    check(timeouts == late, || {
        format!("{late} late frames, {timeouts} timeouts counted: {stats}")
    })?;
    Ok((shown, late))
}

/// The child: the application, its toolkit thread and its Vulkan frames.
pub fn child() -> ChildResult<Value> {
    let mut app = App::for_child()?;
    let frames: u64 = match std::env::var(FRAMES_VAR) {
        Ok(n) => n.parse()?,
        Err(_) => FRAMES,
    };
    let mode = crate::child_mode();
    let surface_lock = Arc::new(Mutex::new(()));
    // SAFETY: the application's display and surface outlive `vk`, which is
    // dropped first.
    let vk = unsafe { Vk::new(app.display_ptr(), app.surface_ptr())? };
    let mut chain = Chain::new(&vk, mode, SIZE)?;
    let seed = seed();
    let toolkit = Toolkit::start(&app, surface_lock.clone(), seed)?;
    let (mut presented, mut suboptimal) = (0u64, 0u64);
    let mut present_us = Vec::new();
    let mut failed = None;
    for frame in 0..frames {
        let t = frame as f32 / frames as f32;
        let colour = [t, 1.0 - t, (frame % 2) as f32, 1.0];
        match chain.frame(colour, &surface_lock, &mut present_us) {
            Ok(vk::Result::SUCCESS) => presented += 1,
            Ok(vk::Result::SUBOPTIMAL_KHR) => {
                presented += 1;
                suboptimal += 1;
            }
            Ok(e) => failed = Some(format!("vkQueuePresentKHR of frame {frame}: {e:?}")),
            Err(e) => failed = Some(format!("frame {frame}: {e}")),
        }
        if failed.is_some() {
            break;
        }
        // The application's own events (configures, pings), under its
        // surface lock as well.
        let _surface = surface_lock.lock().unwrap_or_else(|e| e.into_inner());
        app.queue.dispatch_pending(&mut app.state)?;
    }
    let toolkit_commits = toolkit.stop();
    drop(chain);
    drop(vk);
    // What the compositor still had to say, a protocol error included.
    app.queue.roundtrip(&mut app.state)?;
    if let Some(why) = failed {
        return Err(why.into());
    }
    Ok(json!({
        "presented": presented,
        "suboptimal": suboptimal,
        "present_us": present_us,
        "toolkit_commits": toolkit_commits?,
        "surface": app.surface.id().protocol_id(),
        "seed": seed,
    }))
}

fn seed() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (now ^ (u64::from(std::process::id()) << 32)) | 1
}

/// xorshift64: enough randomness for when the toolkit commits.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The toolkit's thread: every 0–20 ms, under the surface lock, requests
/// on the surface as a toolkit acknowledging a configure makes them (a
/// buffer scale, a damage, or both; never a buffer) and a commit.
struct Toolkit {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<u64, String>>,
}

impl Toolkit {
    fn start(app: &App, lock: Arc<Mutex<()>>, seed: u64) -> ChildResult<Toolkit> {
        let (conn, surface): (Connection, WlSurface) = (app.conn.clone(), app.surface.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("toolkit".into())
            .spawn(move || {
                let mut rng = Rng(seed);
                let mut commits = 0;
                while !stopped.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(rng.below(PAUSE_MS + 1)));
                    let _surface = lock.lock().unwrap_or_else(|e| e.into_inner());
                    let what = rng.below(3);
                    if what != 1 {
                        surface.set_buffer_scale(1);
                    }
                    if what != 0 {
                        surface.damage_buffer(0, 0, 1, 1);
                    }
                    surface.commit();
                    commits += 1;
                    // A full socket (a compositor busy for long) is no
                    // error: the next flush sends the rest.
                    match conn.flush() {
                        Err(WaylandError::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
                        r => r.map_err(|e| format!("toolkit commit {commits}: {e}"))?,
                    }
                }
                Ok(commits)
            })?;
        Ok(Toolkit { stop, thread })
    }

    /// Stops the thread; its commits, or why it failed.
    fn stop(self) -> Result<u64, String> {
        self.stop.store(true, Ordering::Release);
        self.thread
            .join()
            .map_err(|_| "the toolkit thread panicked".to_owned())?
    }
}
