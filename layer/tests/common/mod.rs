//! What the loader and headless test binaries share: each runs its tests
//! against the built layer behind scratch manifests, in child processes of
//! itself whose environment holds none of the user's Vulkan or layer
//! settings, and decides at run time whether this machine can run a test.

pub mod child;
pub mod validation;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use serde_json::Value;
use syncfile::sources::VM_ENV;
use VkLayer_syncfile_wsi::manifest::{self, Kind};

/// Set in a child process of a test binary: the scenario it runs.
const CHILD_VAR: &str = "SYNCFILE_TEST_CHILD";

pub type Outcome = Result<Completion, Failed>;

/// A test, given what the machine has.
pub type Test<M> = fn(&M) -> Outcome;

/// A test binary's `main`: the child scenario `CHILD_VAR` names (see
/// [`Scratch::child`]), printing its JSON as the last line; otherwise the
/// `tests`, probing the machine once, and only if a test runs, because
/// probing loads the loader and a driver.
pub fn main<M: Send + Sync + 'static>(
    tests: &'static [(&'static str, Test<M>)],
    probe: fn() -> M,
    scenario: fn(&str) -> child::Result<Value>,
) -> ExitCode {
    if let Ok(name) = std::env::var(CHILD_VAR) {
        return match scenario(&name) {
            Ok(v) => {
                println!("{v}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("child {name}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let args = Arguments::from_args();
    let machine: Arc<OnceLock<M>> = Arc::new(OnceLock::new());
    let trials = tests
        .iter()
        .map(|&(name, test)| {
            let machine = machine.clone();
            Trial::ignorable_test(name, move || test(machine.get_or_init(probe)))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// A test that cannot run here: ignored with the reason, or failed in the
/// test guest, where everything it needs must be present.
pub fn missing(reason: impl Into<String>) -> Outcome {
    let reason = reason.into();
    if syncfile::sources::in_vm() {
        Err(format!("{reason}, but {VM_ENV}=1 says this is the VM").into())
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

pub fn have_program(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

/// The layer library of the same build profile as this test binary
/// (`target/<profile>/deps/<this>` → `target/<profile>/<library>`).
pub fn library() -> Result<PathBuf, Failed> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot tell the target directory from the test binary's path")?;
    let lib = dir.join(manifest::LIBRARY_NAME);
    if lib.is_file() {
        Ok(lib)
    } else {
        Err(format!(
            "{} is missing: build the layer first (`cargo build --workspace`, as scripts/test does)",
            lib.display()
        )
        .into())
    }
}

/// A scratch directory, removed when dropped, with its own home and
/// configuration directory, and the layer's manifests where asked for.
pub struct Scratch {
    pub root: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Result<Self, Failed> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "syncfile-wsi-test-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("home"))?;
        std::fs::create_dir_all(root.join("config"))?;
        Ok(Self { root })
    }

    /// Writes the manifests, pointing at the built library, where each
    /// discovery mechanism looks: `explicit/` (for `VK_ADD_LAYER_PATH`),
    /// `implicit/` (for `VK_ADD_IMPLICIT_LAYER_PATH`) and
    /// `data/vulkan/implicit_layer.d/` (for `XDG_DATA_HOME`).
    pub fn with_manifests(self) -> Result<Self, Failed> {
        let lib = library()?;
        let lib = lib.to_str().ok_or("library path is not UTF-8")?;
        for (dir, kind) in [
            ("explicit", Kind::Explicit),
            ("implicit", Kind::Implicit),
            ("data/vulkan/implicit_layer.d", Kind::Implicit),
        ] {
            let dir = self.root.join(dir);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join(kind.file_name()), manifest::render(kind, lib))?;
        }
        Ok(self)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// A command whose environment names none of the user's Vulkan or layer
    /// settings, so that only what the test adds counts; the guest's
    /// `SYNCFILE_WSI_VM` stays, since a child judges prerequisites by it.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            let ours = k.starts_with("SYNCFILE_WSI_") && k != VM_ENV;
            if ours
                || k.starts_with("VK_")
                || k.ends_with("_SYNCFILE_WSI")
                || k == "XDG_DATA_HOME"
                || k == "XDG_CONFIG_HOME"
            {
                c.env_remove(&k);
            }
        }
        c.env("HOME", self.path("home"));
        c.env("XDG_CONFIG_HOME", self.path("config"));
        c
    }

    /// This test binary again, running `scenario` (see [`main`]), so that
    /// each run gets its own environment, loader and layer instance, and a
    /// hang or crash cannot take the test runner with it.
    pub fn child(&self, scenario: &str) -> Result<Command, Failed> {
        let mut c = self.command(std::env::current_exe()?);
        c.env(CHILD_VAR, scenario);
        Ok(c)
    }

    /// The statistics the layer wrote to `stats.json`, if it was loaded.
    pub fn stats(&self) -> Result<Option<Value>, Failed> {
        match std::fs::read_to_string(self.path("stats.json")) {
            Ok(text) => Ok(Some(serde_json::from_str(&text)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Runs `c`, failing unless it exits with status 0.
pub fn run_ok(c: &mut Command) -> Result<Output, Failed> {
    let out = c.output().map_err(|e| format!("cannot run {c:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{c:?} exited with {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            tail(&out.stdout),
            tail(&out.stderr)
        )
        .into());
    }
    Ok(out)
}

/// The last 60 lines of an output: a failure message stays readable when
/// the program (vkmark, a loader log) wrote thousands.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// The JSON a child scenario printed as its last line.
pub fn child_json(out: &Output) -> Result<Value, Failed> {
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().ok_or("the child printed nothing")?;
    Ok(serde_json::from_str(last).map_err(|e| format!("child output {last:?}: {e}"))?)
}

/// A counter of the layer's statistics by its path of keys; 0 when absent.
pub fn stat(stats: &Value, path: &[&str]) -> u64 {
    path.iter().fold(stats, |v, k| &v[*k]).as_u64().unwrap_or(0)
}
