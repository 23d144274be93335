//! What every headless test needs: what this machine has (probed once), the
//! built layer behind a scratch manifest, processes run with a controlled
//! environment, and the layer's statistics.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use ash::vk;
use libtest_mimic::{Completion, Failed};
use serde_json::Value;
use VkLayer_syncfile_wsi::manifest::{self, Kind, DISABLE_ENV, ENABLE_ENV};

/// Set in a child process of this binary: the scenario it runs.
pub const CHILD_VAR: &str = "SYNCFILE_TEST_CHILD";
/// Set to `mesa` to run every test against Mesa's own headless WSI (the
/// layer disabled), checking the tests' expectations against the driver;
/// layer-only checks are then skipped.
pub const BASELINE_VAR: &str = "SYNCFILE_TEST_WSI";
pub const VALIDATION: &str = "VK_LAYER_KHRONOS_validation";

pub type Outcome = Result<Completion, Failed>;

pub fn in_vm() -> bool {
    syncfile::sources::in_vm()
}

/// Whether the tests run against Mesa's WSI instead of the layer.
pub fn baseline() -> bool {
    std::env::var(BASELINE_VAR).is_ok_and(|v| v == "mesa")
}

/// A test that cannot run here: ignored with the reason, or failed in the VM.
pub fn missing(reason: impl Into<String>) -> Outcome {
    let reason = reason.into();
    if in_vm() {
        Err(format!(
            "{reason}, but {}=1 says this is the VM",
            syncfile::sources::VM_ENV
        )
        .into())
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

/// What the tests need from this machine, each `Err` saying what is missing.
pub struct Machine {
    /// The loader, lavapipe (or another driver) with dma-buf export and
    /// SYNC_FD semaphores, and `VK_EXT_headless_surface`: the layer can own
    /// a headless swapchain here.
    pub vulkan: Result<(), String>,
    pub vkmark: Result<(), String>,
    /// A vgem card node, for fences the test signals itself.
    pub vgem: Result<(), String>,
    pub validation: Result<(), String>,
}

impl Machine {
    pub fn probe() -> Self {
        let vkmark = if have_program("vkmark") {
            Ok(())
        } else {
            Err("vkmark is not installed".to_owned())
        };
        let vgem = match syncfile::sources::Source::Vgem.missing() {
            None => Ok(()),
            Some(why) => Err(why),
        };
        let (vulkan, validation) = probe_vulkan();
        Self {
            vulkan,
            vkmark,
            vgem,
            validation,
        }
    }

    /// What among `needs` this machine lacks, as the outcome.
    pub fn lacks(&self, needs: &[&Result<(), String>]) -> Option<Outcome> {
        let why: Vec<&str> = needs
            .iter()
            .filter_map(|n| n.as_ref().err().map(String::as_str))
            .collect();
        (!why.is_empty()).then(|| missing(why.join("; ")))
    }
}

/// Device extensions the layer needs to own a swapchain on lavapipe.
const DEVICE_NEEDS: [&std::ffi::CStr; 4] = [
    c"VK_EXT_external_memory_dma_buf",
    c"VK_EXT_image_drm_format_modifier",
    c"VK_KHR_external_semaphore_fd",
    c"VK_KHR_external_fence_fd",
];

fn probe_vulkan() -> (Result<(), String>, Result<(), String>) {
    // SAFETY: loading the system's Vulkan loader runs its initializers, as
    // every Vulkan application does.
    let Ok(entry) = (unsafe { ash::Entry::load() }) else {
        let no = Err("no Vulkan loader (libvulkan.so.1)".to_owned());
        return (no.clone(), no);
    };
    // SAFETY: global queries on a loaded loader.
    let layers = unsafe { entry.enumerate_instance_layer_properties() }.unwrap_or_default();
    let validation = if layers
        .iter()
        .any(|l| l.layer_name_as_c_str() == Ok(c"VK_LAYER_KHRONOS_validation"))
    {
        Ok(())
    } else {
        Err(format!("{VALIDATION} is not installed"))
    };
    (probe_device(&entry), validation)
}

fn probe_device(entry: &ash::Entry) -> Result<(), String> {
    // SAFETY: a global query.
    let exts = unsafe { entry.enumerate_instance_extension_properties(None) }
        .map_err(|e| format!("cannot list instance extensions: {e}"))?;
    if !exts
        .iter()
        .any(|e| e.extension_name_as_c_str() == Ok(ash::ext::headless_surface::NAME))
    {
        return Err("the Vulkan loader offers no VK_EXT_headless_surface".into());
    }
    let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_1);
    let info = vk::InstanceCreateInfo::default().application_info(&app);
    // SAFETY: a valid create info; the instance is destroyed below.
    let instance = unsafe { entry.create_instance(&info, None) }
        .map_err(|e| format!("cannot create a Vulkan instance: {e}"))?;
    // SAFETY: queries on the live instance, destroyed at the end.
    let verdict = unsafe {
        let devices = instance.enumerate_physical_devices().unwrap_or_default();
        let mut why = String::from("the Vulkan loader reports no device (is lavapipe installed?)");
        let mut ok = false;
        for pd in devices {
            let have = instance
                .enumerate_device_extension_properties(pd)
                .unwrap_or_default();
            let lacking: Vec<_> = DEVICE_NEEDS
                .iter()
                .filter(|n| !have.iter().any(|e| e.extension_name_as_c_str() == Ok(**n)))
                .map(|n| n.to_string_lossy())
                .collect();
            let mut props = vk::ExternalSemaphoreProperties::default();
            instance.get_physical_device_external_semaphore_properties(
                pd,
                &vk::PhysicalDeviceExternalSemaphoreInfo::default()
                    .handle_type(vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD),
                &mut props,
            );
            let sync_fd = props
                .external_semaphore_features
                .contains(vk::ExternalSemaphoreFeatureFlags::EXPORTABLE);
            if lacking.is_empty() && sync_fd {
                ok = true;
                break;
            }
            why = format!(
                "the Vulkan driver lacks dma-buf export or SYNC_FD semaphores (missing {lacking:?}, \
                 SYNC_FD export {sync_fd}): lavapipe has them only with a usable /dev/udmabuf"
            );
        }
        instance.destroy_instance(None);
        if ok {
            Ok(())
        } else {
            Err(why)
        }
    };
    verdict
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

/// A scratch directory, removed when dropped, holding the layer's manifests
/// (pointing at the built library), its statistics and captured frames.
pub struct Scratch {
    pub root: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Result<Self, Failed> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "syncfile-wsi-headless-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("home"))?;
        std::fs::create_dir_all(root.join("config"))?;
        let lib = library()?;
        let lib = lib.to_str().ok_or("library path is not UTF-8")?;
        for (dir, kind) in [
            ("explicit", Kind::Explicit),
            ("data/vulkan/implicit_layer.d", Kind::Implicit),
        ] {
            let dir = root.join(dir);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join(kind.file_name()), manifest::render(kind, lib))?;
        }
        Ok(Self { root })
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// `program` with none of the user's Vulkan or layer settings, and the
    /// layer as an implicit layer: on and writing statistics to
    /// `stats.json`, or off (`DISABLE_SYNCFILE_WSI=1`) in the Mesa baseline.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            let ours = k.starts_with("SYNCFILE_WSI_") && k != syncfile::sources::VM_ENV;
            if ours
                || k.starts_with("VK_")
                || k.ends_with("_SYNCFILE_WSI")
                || k == "XDG_DATA_HOME"
                || k == "XDG_CONFIG_HOME"
            {
                c.env_remove(&k);
            }
        }
        // Mesa's shader cache stays where the user's is: a cold cache per
        // run would make each application's first frame take seconds on
        // the guest's emulated CPU.
        if std::env::var_os("XDG_CACHE_HOME").is_none() {
            if let Some(home) = std::env::var_os("HOME") {
                c.env("XDG_CACHE_HOME", std::path::Path::new(&home).join(".cache"));
            }
        }
        c.env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_DATA_HOME", self.path("data"))
            .env("SYNCFILE_WSI_STATS", self.path("stats.json"));
        if baseline() {
            c.env(DISABLE_ENV, "1");
        } else {
            c.env(ENABLE_ENV, "1");
        }
        c
    }

    /// This test binary again, running `scenario` (see `child.rs`).
    pub fn child(&self, scenario: &str) -> Result<Command, Failed> {
        let mut c = self.command(std::env::current_exe()?);
        c.env(CHILD_VAR, scenario);
        Ok(c)
    }

    /// The statistics the layer wrote, failing if it wrote none.
    pub fn stats(&self) -> Result<Value, Failed> {
        let path = self.path("stats.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "no statistics from the layer at {} ({e}): was it loaded?",
                path.display()
            )
        })?;
        Ok(serde_json::from_str(&text)?)
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

/// The last 60 lines of an output, for failure messages.
pub fn tail(bytes: &[u8]) -> String {
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

/// A counter of the statistics by its path of keys; 0 when absent.
pub fn stat(stats: &Value, path: &[&str]) -> u64 {
    path.iter().fold(stats, |v, k| &v[*k]).as_u64().unwrap_or(0)
}
