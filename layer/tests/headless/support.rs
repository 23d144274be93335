//! What every headless test needs beyond the shared support: what this
//! machine has (probed once), and a scratch whose processes run the layer
//! as an implicit layer writing its statistics.

use std::process::{Command, Output};

use ash::vk;
use libtest_mimic::Failed;
use serde_json::Value;
use VkLayer_syncfile_wsi::manifest::{DISABLE_ENV, ENABLE_ENV};

use crate::common::validation::VALIDATION;
use crate::common::{self, have_program, missing, Outcome};

/// Set to `mesa` to run every test against Mesa's own headless WSI (the
/// layer disabled), checking the tests' expectations against the driver;
/// layer-only checks are then skipped.
pub const BASELINE_VAR: &str = "SYNCFILE_TEST_WSI";

/// Whether the tests run against Mesa's WSI instead of the layer.
pub fn baseline() -> bool {
    std::env::var(BASELINE_VAR).is_ok_and(|v| v == "mesa")
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
    pub valgrind: Result<(), String>,
    /// The vkms card node, for the display platform.
    pub vkms: Result<String, String>,
    /// A vkcube that runs on displays.
    pub display_vkcube: Result<(), String>,
    /// Xorg and Xvfb, for the X11 platform.
    pub xorg: Result<(), String>,
    /// xtrace, to read the X11 protocol on the wire.
    pub xtrace: Result<(), String>,
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
        let valgrind = if have_program("valgrind") {
            Ok(())
        } else {
            Err("valgrind is not installed".to_owned())
        };
        Self {
            vulkan,
            vkmark,
            vgem,
            validation,
            valgrind,
            vkms: crate::display_tests::vkms_node(),
            display_vkcube: crate::display_tests::executable(crate::display_tests::VKCUBE),
            xorg: programs(&["Xorg", "Xvfb", "vkcube"]),
            xtrace: programs(&["xtrace"]),
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

/// Whether every one of `names` is installed.
fn programs(names: &[&str]) -> Result<(), String> {
    match names.iter().find(|n| !have_program(n)) {
        None => Ok(()),
        Some(n) => Err(format!(
            "{n} is not installed (scripts/vm/image installs it)"
        )),
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

/// A scratch directory (see [`common::Scratch`]) whose commands run the
/// layer as an implicit layer.
pub struct Scratch(common::Scratch);

impl Scratch {
    pub fn new(tag: &str) -> Result<Self, Failed> {
        Ok(Self(common::Scratch::new(tag)?.with_manifests()?))
    }

    pub fn path(&self, rel: &str) -> std::path::PathBuf {
        self.0.path(rel)
    }

    /// `program` with none of the user's Vulkan or layer settings, and the
    /// layer as an implicit layer: on and writing statistics to
    /// `stats.json`, or off (`DISABLE_SYNCFILE_WSI=1`) in the Mesa baseline.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.layered(self.0.command(program))
    }

    /// This test binary again, running `scenario` (see `child.rs`), with
    /// the layer as in [`Scratch::command`].
    pub fn child(&self, scenario: &str) -> Result<Command, Failed> {
        Ok(self.layered(self.0.child(scenario)?))
    }

    fn layered(&self, mut c: Command) -> Command {
        // Mesa's shader cache stays where the user's is: a cold cache per
        // run would make each application's first frame take seconds on
        // the guest's emulated CPU.
        if std::env::var_os("XDG_CACHE_HOME").is_none() {
            if let Some(home) = std::env::var_os("HOME") {
                c.env("XDG_CACHE_HOME", std::path::Path::new(&home).join(".cache"));
            }
        }
        c.env("XDG_DATA_HOME", self.path("data"))
            .env("SYNCFILE_WSI_STATS", self.path("stats.json"));
        if baseline() {
            c.env(DISABLE_ENV, "1");
        } else {
            c.env(ENABLE_ENV, "1");
        }
        c
    }

    /// The statistics the layer wrote, if it was loaded.
    pub fn stats_if_written(&self) -> Result<Option<Value>, Failed> {
        self.0.stats()
    }

    /// The statistics the layer wrote, failing if it wrote none: every
    /// headless test runs the layer.
    pub fn stats(&self) -> Result<Value, Failed> {
        self.0.stats()?.ok_or_else(|| {
            format!(
                "no statistics from the layer at {}: was it loaded?",
                self.path("stats.json").display()
            )
            .into()
        })
    }
}

/// Runs `c` as [`common::run_ok`] does, killing it after `limit`: a hang is a
/// failure with its output, not a stuck test run. (`c` runs under
/// `timeout(1)`, so a `pre_exec` hook of its own would be lost; a seccomp
/// filter goes on the `timeout` command, whose program inherits it.)
pub fn run_ok_within(c: &mut Command, limit: std::time::Duration) -> Result<Output, Failed> {
    let mut t = Command::new("timeout");
    t.args(["--kill-after=5", &limit.as_secs().to_string()])
        .arg(c.get_program())
        .args(c.get_args())
        .env_clear()
        .envs(c.get_envs().filter_map(|(k, v)| Some((k, v?))));
    for (k, v) in std::env::vars_os() {
        if !c.get_envs().any(|(ck, _)| ck == k) {
            t.env(k, v);
        }
    }
    if let Some(dir) = c.get_current_dir() {
        t.current_dir(dir);
    }
    common::run_ok(&mut t)
}
