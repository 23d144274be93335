//! The Wayland backend against a real compositor: weston in the test guest
//! (headless backend, GL renderer on llvmpipe, as `scripts/vm/weston` starts
//! it), with this process as the application that owns the `wl_display` and
//! the `wl_surface` and the layer's Wayland code as its guest on them.
//!
//! Each test decides when it runs whether this machine has what it needs;
//! one that cannot run is reported ignored with the reason, or failed inside
//! the guest (`SYNCFILE_WSI_VM=1`), where everything must be present.

mod app;
mod apps;
mod compositor;
mod latency;
mod misbehaving;
mod modern_apps;
mod protocol;
mod soak;
mod timing;
mod toolkit;
mod vulkan;
mod wire;

/// The child scenarios' error type and Vulkan instance, shared with the
/// headless suite (whose `record.rs` the Vulkan client includes too).
#[path = "../common"]
mod common {
    pub mod child;
    // The headless suite also refuses the export, mid-run.
    #[allow(dead_code)]
    pub mod seccomp;
}

/// The process's descriptors and memory, for the soak: the headless
/// suite's.
#[path = "../headless/fds.rs"]
#[allow(dead_code)]
mod fds;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use libtest_mimic::{Arguments, Completion, Failed, Trial};

pub type Outcome = Result<Completion, Failed>;
type Test = fn() -> Outcome;

const VM_VAR: &str = "SYNCFILE_WSI_VM";
/// Set in a child process of this binary: the scenario it runs.
pub const CHILD_VAR: &str = "SYNCFILE_TEST_CHILD";
/// A child's present mode: `fifo` (the default), `mailbox` or `immediate`.
pub const MODE_VAR: &str = "SYNCFILE_TEST_PRESENT_MODE";

/// The present mode [`MODE_VAR`] names, in a child.
pub fn child_mode() -> ash::vk::PresentModeKHR {
    match std::env::var(MODE_VAR).as_deref() {
        Ok("mailbox") => ash::vk::PresentModeKHR::MAILBOX,
        Ok("immediate") => ash::vk::PresentModeKHR::IMMEDIATE,
        _ => ash::vk::PresentModeKHR::FIFO,
    }
}

/// A child scenario: its JSON, printed as the last line of its standard
/// output, or why it failed.
type Scenario = fn() -> common::child::Result<serde_json::Value>;

/// The scenarios a child process of this binary can run, by name.
const SCENARIOS: &[(&str, Scenario)] = &[
    ("toolkit", toolkit::child),
    ("timing", timing::child),
    ("latency", latency::child),
    ("lost_wait", timing::lost_wait_child),
    ("misbehaving", misbehaving::child),
    ("soak", soak::child),
];

/// `module::test` entries named as they are written.
macro_rules! tests {
    ($($m:ident::$f:ident),* $(,)?) => {
        &[$((concat!(stringify!($m), "::", stringify!($f)), $m::$f as Test)),*]
    };
}

const TESTS: &[(&str, Test)] = tests![
    protocol::globals_and_formats,
    protocol::pixman_offers_no_dma_buf,
    protocol::own_queue_leaves_app_events,
    protocol::implicit_commit_frame_release,
    protocol::explicit_commit_and_release,
    protocol::release_fence_holds_next_writer,
    protocol::protocol_error_is_lost,
    protocol::killed_compositor_is_lost,
    apps::vkcube_each_present_mode,
    apps::implicit_sync_when_asked,
    apps::import_refused_takes_the_fallback,
    apps::validation_reports_no_error,
    apps::no_dma_buf_passes_through,
    apps::vkmark_scores,
    apps::killed_compositor_loses_the_surface,
    apps::screenshot_shows_the_cube,
    toolkit::commits_from_another_thread_explicit,
    toolkit::commits_from_another_thread_implicit,
    timing::waits_follow_presentation_feedback,
    timing::wait_on_a_killed_compositor_is_lost,
    modern_apps::vkcube_incremental_present,
    modern_apps::mpv_libplacebo,
    misbehaving::never_released_acquire_times_out,
    misbehaving::no_frame_callbacks_never_freeze,
    misbehaving::pending_read_fence_holds_the_next_render,
    misbehaving::refused_buffers_fail_creation,
    misbehaving::refused_deferred_buffer_loses_the_surface,
    misbehaving::disconnect_mid_frame_is_lost,
    soak::every_mode_and_path,
];

fn main() -> ExitCode {
    if let Ok(name) = std::env::var(CHILD_VAR) {
        return child(&name);
    }
    let mut args = Arguments::from_args();
    // Each test starts its own weston; one at a time on the guest's two CPUs.
    args.test_threads.get_or_insert(1);
    let trials = TESTS
        .iter()
        .map(|&(name, test)| Trial::ignorable_test(name, test))
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// Runs the child scenario `name`.
fn child(name: &str) -> ExitCode {
    let Some(&(_, scenario)) = SCENARIOS.iter().find(|(n, _)| *n == name) else {
        eprintln!("no child scenario {name}");
        return ExitCode::FAILURE;
    };
    match scenario() {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("child {name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The path of this test binary: a child's program, with [`CHILD_VAR`]
/// naming its scenario.
pub fn this_binary() -> Result<String, Failed> {
    let exe = std::env::current_exe()?;
    Ok(exe.to_str().ok_or("non-UTF-8 test binary path")?.to_owned())
}

pub fn in_vm() -> bool {
    std::env::var(VM_VAR).is_ok_and(|v| v == "1")
}

/// A test that cannot run here: ignored with the reason, or failed in the VM.
pub fn missing(reason: impl Into<String>) -> Outcome {
    let reason = reason.into();
    if in_vm() {
        Err(format!("{reason}, but {VM_VAR}=1 says this is the VM").into())
    } else {
        Ok(Completion::ignored_with(reason))
    }
}

pub fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok {
        Ok(())
    } else {
        Err(what().into())
    }
}

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Why this machine cannot run weston, if it cannot.
pub fn weston_missing() -> Option<String> {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").unwrap_or_default();
    if !Path::new(&runtime).is_dir() {
        return Some("XDG_RUNTIME_DIR is not a directory".into());
    }
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("weston").is_file()));
    (!found).then(|| "weston is not installed".into())
}

/// A weston of this test's own (its own socket), stopped when dropped.
pub struct Weston {
    pub socket: String,
    runtime: PathBuf,
}

impl Weston {
    /// Starts weston with `scripts/vm/weston`; `args` win over its defaults.
    pub fn start(args: &[&str]) -> Result<Weston, Failed> {
        let runtime =
            PathBuf::from(std::env::var_os("XDG_RUNTIME_DIR").ok_or("XDG_RUNTIME_DIR is not set")?);
        let socket = format!("wayland-sfw-test-{}", std::process::id());
        let out = Command::new(repo().join("scripts/vm/weston"))
            .arg("start")
            .args(args)
            .env("SYNCFILE_WSI_WESTON_SOCKET", &socket)
            .output()?;
        check(out.status.success(), || {
            format!(
                "weston did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        Ok(Weston { socket, runtime })
    }

    /// Kills weston at once (SIGKILL), as a crash would.
    pub fn kill(&self) -> Result<(), Failed> {
        let pid =
            std::fs::read_to_string(self.runtime.join(format!("{}.weston-pid", self.socket)))?;
        let status = Command::new("kill").args(["-KILL", pid.trim()]).status()?;
        check(status.success(), || format!("kill -KILL {pid} failed"))
    }
}

impl Drop for Weston {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/vm/weston"))
            .arg("stop")
            .env("SYNCFILE_WSI_WESTON_SOCKET", &self.socket)
            .status();
    }
}
