//! What every loader test needs: the built layer, manifests pointing at it in
//! a scratch directory, and processes run with a controlled environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use libtest_mimic::{Completion, Failed};
use VkLayer_syncfile_wsi::manifest::{self, Kind};

/// Set in a child process of this binary: the scenario it runs.
pub const CHILD_VAR: &str = "SYNCFILE_TEST_CHILD";
/// Set to 1 inside the test guest: there, missing prerequisites are failures.
pub const VM_VAR: &str = "SYNCFILE_WSI_VM";

pub type Outcome = Result<Completion, Failed>;

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

/// A scratch directory, removed when dropped, with the layer's manifests
/// (pointing at the built library) where each discovery mechanism looks.
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

    /// Writes the manifests: `explicit/` (for `VK_ADD_LAYER_PATH`),
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
    /// settings: only what the test adds counts.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            let ours = k.starts_with("SYNCFILE_WSI_") && k != VM_VAR;
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

    /// This test binary again, running `scenario` (see `child.rs`).
    pub fn child(&self, scenario: &str) -> Result<Command, Failed> {
        let mut c = self.command(std::env::current_exe()?);
        c.env(CHILD_VAR, scenario);
        Ok(c)
    }

    /// The statistics the layer wrote to `stats.json`, if it was loaded.
    pub fn stats(&self) -> Result<Option<serde_json::Value>, Failed> {
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
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(out)
}

/// The JSON a child scenario printed as its last line.
pub fn child_json(out: &Output) -> Result<serde_json::Value, Failed> {
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().ok_or("the child printed nothing")?;
    Ok(serde_json::from_str(last).map_err(|e| format!("child output {last:?}: {e}"))?)
}

/// Lines of the layer's own log in `stderr`.
pub fn layer_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.starts_with("syncfile-wsi: "))
        .map(str::to_owned)
        .collect()
}

pub fn have_program(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

/// What the Vulkan loader on this machine is and has, probed once.
pub struct Machine {
    /// The loader library this process would load.
    pub loader: Option<PathBuf>,
    /// Layers the loader finds without help, by name.
    pub layers: BTreeMap<String, u32>,
    /// Physical devices the loader reports.
    pub devices: usize,
}

impl Machine {
    pub fn probe() -> Self {
        // SAFETY: loading the system's Vulkan loader runs its initializers,
        // which is what every Vulkan application does.
        let Ok(entry) = (unsafe { ash::Entry::load() }) else {
            return Self {
                loader: None,
                layers: BTreeMap::new(),
                devices: 0,
            };
        };
        let loader = std::fs::read_to_string("/proc/self/maps")
            .ok()
            .and_then(|maps| {
                maps.lines()
                    .filter_map(|l| l.split_whitespace().nth(5))
                    .find(|p| p.contains("libvulkan.so"))
                    .map(PathBuf::from)
            });
        // SAFETY: plain global queries on a loaded loader.
        let layers = unsafe { entry.enumerate_instance_layer_properties() }
            .unwrap_or_default()
            .iter()
            .filter_map(|l| {
                Some((
                    l.layer_name_as_c_str().ok()?.to_str().ok()?.to_owned(),
                    l.spec_version,
                ))
            })
            .collect();
        let devices = crate::child::count_devices(&entry).unwrap_or(0);
        Self {
            loader,
            layers,
            devices,
        }
    }

    /// Whether the loader reads `VK_ADD_IMPLICIT_LAYER_PATH` (loaders from
    /// 2024 on; Debian 12's does not).
    pub fn loader_knows(&self, variable: &str) -> bool {
        self.loader
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .is_some_and(|bytes| {
                bytes
                    .windows(variable.len())
                    .any(|w| w == variable.as_bytes())
            })
    }
}
