//! `syncfile-wsi doctor` and `run`, the built binary itself, on real parts:
//! the guest's kernel (its ioctls taken away with seccomp where a test
//! says so), lavapipe through the real loader, a real weston, and vkmark
//! through the layer. Only the JSON output is judged, except for `run`,
//! whose child's statistics and exit status are.
//!
//! Tests that need the guest report themselves ignored elsewhere; one
//! runs anywhere (the report's shape, and its exit status agreeing with
//! its verdicts).

// The headless suite also refuses the export mid-run; this one only at
// the start.
#[allow(dead_code)]
#[path = "common/seccomp.rs"]
mod seccomp;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use serde_json::Value;
use syncfile::sources::VM_ENV;

use seccomp::SyncFileIoctl;

type Outcome = Result<Completion, Failed>;
type Test = fn() -> Outcome;

const BINARY: &str = env!("CARGO_BIN_EXE_syncfile-wsi");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Ignored outside the guest, which alone has dma-bufs, lavapipe with
/// SYNC_FD, weston and vkmark.
fn guest_only() -> Option<Outcome> {
    (!syncfile::sources::in_vm()).then(|| {
        Ok(Completion::ignored_with(format!(
            "needs the test guest ({VM_ENV}=1)"
        )))
    })
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok {
        Ok(())
    } else {
        Err(what().into())
    }
}

/// The binary with none of the user's Vulkan, layer or window-system
/// settings: only what a test adds counts.
fn command(args: &[&str]) -> Command {
    let mut c = Command::new(BINARY);
    c.args(args);
    clean(&mut c);
    c
}

fn clean(c: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if (k.starts_with("SYNCFILE_WSI_") && k != VM_ENV)
            || k.starts_with("VK_")
            || k.ends_with("_SYNCFILE_WSI")
            || k == "WAYLAND_DISPLAY"
            || k == "DISPLAY"
        {
            c.env_remove(&k);
        }
    }
}

fn output(c: &mut Command) -> Result<Output, Failed> {
    c.output()
        .map_err(|e| format!("cannot run {c:?}: {e}").into())
}

/// The doctor's JSON and exit status.
fn doctor(c: &mut Command) -> Result<(Value, Option<i32>), Failed> {
    let out = output(c)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(&text).map_err(|e| {
        format!(
            "doctor's output is not JSON ({e}):\n{text}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((v, out.status.code()))
}

/// A weston of this test's own, stopped when dropped.
struct Weston(String);

impl Weston {
    fn start() -> Result<Weston, Failed> {
        // Tests run in parallel: a socket (and weston) each.
        static N: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "wayland-sfw-doctor-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new(repo().join("scripts/vm/weston"))
            .arg("start")
            .env("SYNCFILE_WSI_WESTON_SOCKET", &socket)
            .output()?;
        check(out.status.success(), || {
            format!(
                "weston did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        Ok(Weston(socket))
    }
}

impl Drop for Weston {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/vm/weston"))
            .arg("stop")
            .env("SYNCFILE_WSI_WESTON_SOCKET", &self.0)
            .status();
    }
}

fn owns(v: &Value, platform: &str) -> bool {
    v["verdict"][platform]["owns"] == true
}

/// The verdict leaves `platform` to the driver, for a reason that names
/// `why`.
fn passed_through(v: &Value, platform: &str, why: &str) -> Result<(), Failed> {
    let verdict = &v["verdict"][platform];
    check(
        verdict["owns"] == false && verdict["reason"].as_str().is_some_and(|r| r.contains(why)),
        || format!("{platform}: {verdict:#}"),
    )
}

fn report_has_every_section_and_its_status_agrees() -> Outcome {
    let (v, status) = doctor(
        command(&["doctor", "--json"])
            .env("WAYLAND_DISPLAY", "")
            .env("DISPLAY", ""),
    )?;
    for section in ["kernel", "layer", "vulkan", "window systems", "verdict"] {
        check(!v[section].is_null(), || format!("no {section} in {v:#}"))?;
    }
    let any = ["headless", "wayland", "x11", "display"]
        .iter()
        .any(|p| owns(&v, p));
    check(status == Some(if any { 0 } else { 1 }), || {
        format!("exit status {status:?} with verdicts {:#}", v["verdict"])
    })?;
    let table = output(&mut command(&["doctor"]))?;
    let text = String::from_utf8_lossy(&table.stdout);
    check(
        text.starts_with("kernel\n") && text.contains("\nverdict\n"),
        || text.into_owned(),
    )?;
    Ok(Completion::Completed)
}

/// The settings in force, each with where it came from: the environment
/// over the file `SYNCFILE_WSI_CONFIG` names (at its line) over the
/// default.
fn settings_say_where_they_came_from() -> Outcome {
    let dir = std::env::temp_dir().join(format!("sfw-doctor-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("game.conf");
    std::fs::write(
        &file,
        "# a game's settings\nSYNCFILE_WSI_CAPTURE_EVERY=5\nSYNCFILE_WSI_SYNC=implicit\n",
    )?;
    let (v, _) = doctor(
        command(&["doctor", "--json"])
            .env("SYNCFILE_WSI_CONFIG", &file)
            .env("SYNCFILE_WSI_SYNC", "cpu"),
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    let settings = &v["layer"]["settings"];
    let (values, sources) = (&settings["values"], &settings["sources"]);
    let file = file.display().to_string();
    check(
        values["SYNCFILE_WSI_SYNC"] == "cpu" && sources["SYNCFILE_WSI_SYNC"] == "environment",
        || format!("{settings:#}"),
    )?;
    check(
        values["SYNCFILE_WSI_CAPTURE_EVERY"] == "5"
            && sources["SYNCFILE_WSI_CAPTURE_EVERY"] == format!("{file}:2").as_str(),
        || format!("{settings:#}"),
    )?;
    check(sources["SYNCFILE_WSI_LOG"] == "default", || {
        format!("{settings:#}")
    })?;
    Ok(Completion::Completed)
}

/// `--exe NAME`: the settings the application NAME would read (its own
/// file under the configuration directory, and whether
/// `SYNCFILE_WSI_DISABLE_FOR` names it), not the doctor's.
fn another_applications_settings() -> Outcome {
    let home = std::env::temp_dir().join(format!("sfw-doctor-exe-{}", std::process::id()));
    std::fs::create_dir_all(home.join("syncfile-wsi"))?;
    let own = home.join("syncfile-wsi/vkcube.conf");
    std::fs::write(&own, "SYNCFILE_WSI_SYNC=cpu\n")?;
    let doctor_as = |exe: Option<&str>, disable_for: &str| {
        let mut c = command(&["doctor", "--json"]);
        c.args(exe.map(|e| ["--exe", e]).into_iter().flatten())
            .env("XDG_CONFIG_HOME", &home)
            .env("SYNCFILE_WSI_DISABLE_FOR", disable_for);
        doctor(&mut c).map(|(v, _)| v)
    };
    let vkcube = doctor_as(Some("vkcube"), "mpv");
    let own_doctor = doctor_as(None, "mpv");
    let disabled = doctor_as(Some("vkcube"), "mpv,vkcube");
    let _ = std::fs::remove_dir_all(&home);
    let (vkcube, own_doctor, disabled) = (vkcube?, own_doctor?, disabled?);
    let settings = &vkcube["layer"]["settings"];
    check(
        settings["application"] == "vkcube"
            && settings["values"]["SYNCFILE_WSI_SYNC"] == "cpu"
            && settings["sources"]["SYNCFILE_WSI_SYNC"] == format!("{}:1", own.display()).as_str(),
        || format!("--exe vkcube: {settings:#}"),
    )?;
    let settings = &own_doctor["layer"]["settings"];
    check(
        settings["values"]["SYNCFILE_WSI_SYNC"] == "auto"
            && settings["sources"]["SYNCFILE_WSI_SYNC"] == "default",
        || format!("the doctor's own: {settings:#}"),
    )?;
    let settings = &disabled["layer"]["settings"];
    check(
        settings["values"]["SYNCFILE_WSI_PLATFORMS"] == "none",
        || format!("--exe vkcube, disabled for it: {settings:#}"),
    )?;
    let verdicts = disabled["verdict"].to_string();
    check(
        verdicts.contains("SYNCFILE_WSI_DISABLE_FOR names vkcube"),
        || format!("--exe vkcube, disabled for it: {verdicts}"),
    )?;
    Ok(Completion::Completed)
}

fn with_weston_the_layer_owns_wayland() -> Outcome {
    if let Some(skip) = guest_only() {
        return skip;
    }
    let weston = Weston::start()?;
    let (v, status) = doctor(command(&["doctor", "--json"]).env("WAYLAND_DISPLAY", &weston.0))?;
    let globals = &v["window systems"]["wayland"]["globals"];
    check(globals["zwp_linux_dmabuf_v1"].as_u64() >= Some(3), || {
        format!("globals {globals:#}")
    })?;
    check(
        !globals["zwp_linux_explicit_synchronization_v1"].is_null(),
        || format!("globals {globals:#}"),
    )?;
    let w = &v["verdict"]["wayland"];
    check(
        w["owns"] == true && w["fallback"].is_null() && w["explicit_sync"] == true,
        || format!("{w:#}"),
    )?;
    check(v["kernel"]["ioctls"]["available"] == true, || {
        format!("{:#}", v["kernel"])
    })?;
    check(status == Some(0), || format!("exit status {status:?}"))?;
    Ok(Completion::Completed)
}

fn without_weston_wayland_is_the_drivers() -> Outcome {
    if let Some(skip) = guest_only() {
        return skip;
    }
    let (v, status) = doctor(&mut command(&["doctor", "--json"]))?;
    passed_through(&v, "wayland", "WAYLAND_DISPLAY")?;
    let h = &v["verdict"]["headless"];
    check(h["owns"] == true && h["sync"] == "sync_file", || {
        format!("{h:#}")
    })?;
    check(status == Some(0), || format!("exit status {status:?}"))?;
    Ok(Completion::Completed)
}

/// Xorg on vkms offers DRI3 1.2 and Present 1.2 (glamor on llvmpipe).
fn with_xorg_the_layer_owns_x11() -> Outcome {
    if let Some(skip) = guest_only() {
        return skip;
    }
    let mut xorg = Command::new(repo().join("scripts/vm/xorg"));
    xorg.args(["run", "--", BINARY, "doctor", "--json"]);
    clean(&mut xorg);
    let (v, status) = doctor(&mut xorg)?;
    let x = &v["window systems"]["x11"];
    check(
        x["dri3"] == "1.2" && x["present"].as_str() >= Some("1.2"),
        || format!("{x:#}"),
    )?;
    let verdict = &v["verdict"]["x11"];
    check(
        verdict["owns"] == true && verdict["sync"] == "sync_file",
        || format!("{verdict:#}"),
    )?;
    check(status == Some(0), || format!("exit status {status:?}"))?;
    Ok(Completion::Completed)
}

/// Both ioctls gone: lavapipe then offers no SYNC_FD semaphores, so the
/// layer leaves every surface to the driver (README's fault table), and the
/// doctor says the layer cannot work here.
fn without_the_ioctls_everything_passes_through() -> Outcome {
    if let Some(skip) = guest_only() {
        return skip;
    }
    let mut c = command(&["doctor", "--json"]);
    seccomp::deny_in(&mut c, &[SyncFileIoctl::Export, SyncFileIoctl::Import]);
    let (v, status) = doctor(&mut c)?;
    let k = &v["kernel"]["ioctls"];
    check(
        k["export"]
            .as_str()
            .is_some_and(|e| e.starts_with("missing"))
            && k["available"] == false,
        || format!("{k:#}"),
    )?;
    passed_through(&v, "headless", "VK_KHR_external_semaphore_fd")?;
    check(status == Some(1), || format!("exit status {status:?}"))?;
    Ok(Completion::Completed)
}

/// Only the import gone (the driver whole): headless takes the
/// present-thread fallback, Wayland with explicit sync carries the
/// render's fence with each frame instead.
fn without_the_import_the_fallbacks_are_named() -> Outcome {
    if let Some(skip) = guest_only() {
        return skip;
    }
    let weston = Weston::start()?;
    let mut c = command(&["doctor", "--json"]);
    c.env("WAYLAND_DISPLAY", &weston.0);
    seccomp::deny_in(&mut c, &[SyncFileIoctl::Import]);
    let (v, status) = doctor(&mut c)?;
    let k = &v["kernel"]["ioctls"];
    check(
        k["export"] == "works"
            && k["import"]
                .as_str()
                .is_some_and(|i| i.starts_with("missing")),
        || format!("{k:#}"),
    )?;
    let h = &v["verdict"]["headless"];
    check(
        h["owns"] == true && h["fallback"] == "no_kernel_ioctls" && h["sync"] == "cpu",
        || format!("{h:#}"),
    )?;
    let w = &v["verdict"]["wayland"];
    check(
        w["owns"] == true
            && w["fallback"] == "no_kernel_ioctls"
            && w["sync"] == "sync_file with the frame, no kernel ioctls",
        || format!("{w:#}"),
    )?;
    check(status == Some(0), || format!("exit status {status:?}"))?;
    Ok(Completion::Completed)
}

/// The test layer below (`test-layers/hide-sync-fd`), built beside the
/// binary, in a manifest of its own in `dir`.
fn hide_sync_fd(dir: &Path) -> Result<(), Failed> {
    let lib = Path::new(BINARY).with_file_name("libVkLayer_syncfile_test_hide_sync_fd.so");
    check(lib.is_file(), || {
        format!(
            "{} is missing: cargo build --workspace builds it",
            lib.display()
        )
    })?;
    std::fs::create_dir_all(dir)?;
    let manifest = serde_json::json!({
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

const HIDE_SYNC_FD: &str = "VK_LAYER_SYNCFILE_TEST_hide_sync_fd";

/// The doctor with the test layer between it and lavapipe, `hide_dma_buf`
/// taking dma-buf export away too.
fn doctor_over_hidden_driver(hide_dma_buf: bool) -> Result<(Value, Option<i32>), Failed> {
    let dir = std::env::temp_dir().join(format!("syncfile-wsi-doctor-hide-{}", std::process::id()));
    hide_sync_fd(&dir)?;
    let mut c = command(&["doctor", "--json"]);
    c.env("VK_ADD_LAYER_PATH", &dir)
        .env("VK_INSTANCE_LAYERS", HIDE_SYNC_FD);
    if hide_dma_buf {
        c.env("SYNCFILE_TEST_HIDE_DMA_BUF", "1");
    }
    let found = doctor(&mut c);
    let _ = std::fs::remove_dir_all(&dir);
    found
}

/// A driver without SYNC_FD semaphore export: the layer still owns
/// headless surfaces, on the present-thread fallback.
fn without_semaphore_export_the_present_thread_waits() -> Outcome {
    if let Some(skip) = guest_only() {
        return skip;
    }
    let (v, status) = doctor_over_hidden_driver(false)?;
    let d = &v["vulkan"][0];
    check(
        d["sync_fd_semaphore"]["export"] == false && d["sync_fd_semaphore"]["import"] == true,
        || format!("{d:#}"),
    )?;
    let h = &v["verdict"]["headless"];
    check(
        h["owns"] == true && h["fallback"] == "no_semaphore_export" && h["sync"] == "cpu",
        || format!("{h:#}"),
    )?;
    check(status == Some(0), || format!("exit status {status:?}"))?;
    Ok(Completion::Completed)
}

/// A driver that cannot export memory as a dma-buf: the layer owns
/// nothing, says why, and the doctor fails.
fn without_dma_buf_export_nothing_is_owned() -> Outcome {
    if let Some(skip) = guest_only() {
        return skip;
    }
    let (v, status) = doctor_over_hidden_driver(true)?;
    let d = &v["vulkan"][0];
    check(
        d["dma_buf_export"] == false && d["layer"]["owns"] == false,
        || format!("{d:#}"),
    )?;
    passed_through(&v, "headless", "VK_EXT_external_memory_dma_buf")?;
    check(status == Some(1), || format!("exit status {status:?}"))?;
    Ok(Completion::Completed)
}

/// `run` loads this build's layer into vkmark (not installed anywhere),
/// which owns its headless swapchain; the statistics summary follows.
fn run_puts_vkmark_through_the_layer() -> Outcome {
    if let Some(skip) = guest_only() {
        return skip;
    }
    let out = output(&mut command(&[
        "run",
        "--stats",
        "--",
        "vkmark",
        "--winsys",
        "headless",
        "-s",
        "64x64",
        "-b",
        "cube:duration=2",
    ]))?;
    let err = String::from_utf8_lossy(&out.stderr);
    check(out.status.success(), || {
        format!("vkmark: {}\n{err}", out.status)
    })?;
    check(
        err.contains("layer statistics") && err.contains("  swapchains       owned 1,"),
        || err.into_owned(),
    )?;
    check(
        String::from_utf8_lossy(&out.stdout).contains("vkmark Score"),
        || "no score".into(),
    )?;
    Ok(Completion::Completed)
}

/// The command's status comes back, a signal's as 128+N.
fn run_passes_the_exit_status_through() -> Outcome {
    let code = output(&mut command(&["run", "--", "sh", "-c", "exit 7"]))?
        .status
        .code();
    check(code == Some(7), || format!("exit 7 gave {code:?}"))?;
    let code = output(&mut command(&["run", "--", "sh", "-c", "kill -TERM $$"]))?
        .status
        .code();
    check(code == Some(128 + 15), || format!("SIGTERM gave {code:?}"))?;
    let code = output(&mut command(&["run", "--", "/nonexistent/program"]))?
        .status
        .code();
    check(code == Some(127), || {
        format!("a missing program gave {code:?}")
    })?;
    Ok(Completion::Completed)
}

/// A signal sent to the launcher reaches the command, which ends as it
/// chooses (here with its own status, from its trap); the launcher waits
/// for it and removes its scratch manifest.
fn run_relays_the_signals_it_is_sent() -> Outcome {
    for (signal, name, code) in [
        (rustix::process::Signal::TERM, "TERM", 9),
        (rustix::process::Signal::INT, "INT", 8),
    ] {
        let script = format!("trap 'exit {code}' {name}; echo ready; while :; do sleep 0.05; done");
        let mut launcher = command(&["run", "--", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the launcher: {e}"))?;
        let mut line = String::new();
        let stdout = launcher.stdout.take().ok_or("no stdout")?;
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        check(line == "ready\n", || format!("the command said {line:?}"))?;
        let pid = rustix::process::Pid::from_raw(launcher.id() as i32).ok_or("no pid")?;
        let scratch = std::env::temp_dir().join(format!("syncfile-wsi-run-{}", launcher.id()));
        check(scratch.is_dir(), || format!("no {}", scratch.display()))?;
        rustix::process::kill_process(pid, signal).map_err(|e| e.to_string())?;
        let status = launcher.wait().map_err(|e| e.to_string())?;
        check(status.code() == Some(code), || {
            format!("SIG{name} to the launcher: it ended with {status}, the command's trap exits {code}")
        })?;
        check(!scratch.exists(), || {
            format!("SIG{name}: {} is left", scratch.display())
        })?;
    }
    Ok(Completion::Completed)
}

const TESTS: &[(&str, Test)] = &[
    (
        "doctor::report_has_every_section_and_its_status_agrees",
        report_has_every_section_and_its_status_agrees,
    ),
    (
        "doctor::settings_say_where_they_came_from",
        settings_say_where_they_came_from,
    ),
    (
        "doctor::another_applications_settings",
        another_applications_settings,
    ),
    (
        "doctor::with_weston_the_layer_owns_wayland",
        with_weston_the_layer_owns_wayland,
    ),
    (
        "doctor::without_weston_wayland_is_the_drivers",
        without_weston_wayland_is_the_drivers,
    ),
    (
        "doctor::with_xorg_the_layer_owns_x11",
        with_xorg_the_layer_owns_x11,
    ),
    (
        "doctor::without_the_ioctls_everything_passes_through",
        without_the_ioctls_everything_passes_through,
    ),
    (
        "doctor::without_the_import_the_fallbacks_are_named",
        without_the_import_the_fallbacks_are_named,
    ),
    (
        "doctor::without_semaphore_export_the_present_thread_waits",
        without_semaphore_export_the_present_thread_waits,
    ),
    (
        "doctor::without_dma_buf_export_nothing_is_owned",
        without_dma_buf_export_nothing_is_owned,
    ),
    (
        "run::puts_vkmark_through_the_layer",
        run_puts_vkmark_through_the_layer,
    ),
    (
        "run::passes_the_exit_status_through",
        run_passes_the_exit_status_through,
    ),
    (
        "run::relays_the_signals_it_is_sent",
        run_relays_the_signals_it_is_sent,
    ),
];

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let trials = TESTS
        .iter()
        .map(|&(name, test)| Trial::ignorable_test(name, test))
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}
