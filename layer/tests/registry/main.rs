//! `src/vulkan/registry.rs` is derived from the Vulkan registry, never typed
//! by hand: this test derives it again from ash's generated bindings (ash is
//! generated from vk.xml, at the version Cargo.lock pins) and fails when the
//! committed file differs. `SYNCFILE_WSI_REGENERATE=1 cargo test -p
//! syncfile-wsi --test registry` writes the file instead.
//!
//! Why: the layer makes its own `VkSwapchainKHR` (and `VkDisplayKHR`,
//! `VkDisplayModeKHR`) handles. A command or structure that carries one must
//! never reach the driver with it, so the layer serves every such command
//! or hides the extension that brings it. The derivation (`derive.rs`):
//!
//! - A structure carries a kind of handle when one of its fields has that
//!   handle type (itself, behind a pointer or in an array), or holds or
//!   points to a structure that carries it, or when a structure that may
//!   extend it (`unsafe impl ExtendsIt for Other`, the pNext chain) carries
//!   it; recursively, to a fixed point, so cycles need no care.
//! - A `u64` field or parameter named `object` or `object_handle` carries
//!   any handle (debug utils, debug marker, debug report, private data).
//! - A command carries what its parameters carry by the same rules. Each
//!   name in a function table is a command (aliases such as `vkFooKHR` too,
//!   with the original's parameters); it comes from the core versions
//!   (`VK_VERSION_1_x`) or extensions whose tables list it, and it is
//!   instance-level unless its first parameter is a `VkDevice`, `VkQueue`
//!   or `VkCommandBuffer`.
//!
//! The file also gives the size of every structure that may be chained to
//! the structures the layer copies (`derive::COPIED`).
//!
//! Where cargo or ash's source is missing (the test guest runs this binary
//! without either), the tests report themselves ignored with the reason.

mod ash;
mod derive;
mod render;
mod tokens;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

const GENERATED: &str = "src/vulkan/registry.rs";
const REGENERATE_ENV: &str = "SYNCFILE_WSI_REGENERATE";
const HINT: &str = "SYNCFILE_WSI_REGENERATE=1 cargo test -p syncfile-wsi --test registry";

/// Why the derivation did not happen.
enum Missing {
    /// Cargo or ash's source is not on this machine: the tests are ignored.
    Unavailable(String),
    /// ash's source is there but could not be read as expected: they fail.
    Broken(String),
}

struct Derived {
    /// The file as it must be.
    text: String,
    /// Each carrier as "vkFoo: KIND KIND, device-level, from VK_A VK_B".
    carriers: Vec<String>,
}

type Outcome = Result<Completion, Failed>;
type Test = fn(&Derived) -> Outcome;

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let derived: Arc<OnceLock<Result<Derived, Missing>>> = Arc::new(OnceLock::new());
    let tests: [(&str, Test); 2] = [
        (
            "registry::generated_file_is_current",
            generated_file_is_current,
        ),
        ("registry::known_carriers", known_carriers),
    ];
    let trials = tests
        .into_iter()
        .map(|(name, test)| {
            let derived = derived.clone();
            Trial::ignorable_test(name, move || match derived.get_or_init(derive_file) {
                Ok(d) => test(d),
                Err(Missing::Unavailable(why)) => Ok(Completion::ignored_with(why)),
                Err(Missing::Broken(why)) => Err(why.into()),
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// The committed file is what the derivation gives; or, with
/// `SYNCFILE_WSI_REGENERATE=1`, becomes it.
fn generated_file_is_current(d: &Derived) -> Outcome {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(GENERATED);
    if std::env::var_os(REGENERATE_ENV).is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap())
            .and_then(|()| std::fs::write(&path, &d.text))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("registry: wrote {}", path.display());
        return Ok(Completion::Completed);
    }
    let committed = std::fs::read_to_string(&path)
        .map_err(|e| format!("{GENERATED}: {e}; generate it with `{HINT}`"))?;
    if committed == d.text {
        return Ok(Completion::Completed);
    }
    let first = committed
        .lines()
        .zip(d.text.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(committed.lines().count().min(d.text.lines().count()));
    Err(format!(
        "{GENERATED} is stale (first difference at line {}: {:?} should be {:?}); \
         regenerate it with `{HINT}`",
        first + 1,
        committed.lines().nth(first).unwrap_or("<end of file>"),
        d.text.lines().nth(first).unwrap_or("<end of file>"),
    )
    .into())
}

/// The derivation finds what the specification says, as far as a few
/// commands picked by hand show; a misread of ash's layout would find
/// less (or more).
fn known_carriers(d: &Derived) -> Outcome {
    let expected = [
        "vkCreateSwapchainKHR: SWAPCHAIN SURFACE, device-level, from VK_KHR_swapchain",
        "vkDestroySurfaceKHR: SURFACE, instance-level, from VK_KHR_surface",
        // VkPhysicalDeviceSurfaceInfo2KHR's surface.
        "vkGetPhysicalDeviceSurfaceFormats2KHR: SURFACE, instance-level, from VK_KHR_get_surface_capabilities2",
        "vkQueuePresentKHR: SWAPCHAIN, device-level, from VK_KHR_swapchain",
        // VkImageSwapchainCreateInfoKHR in VkImageCreateInfo's pNext.
        "vkCreateImage: SWAPCHAIN, device-level, from VK_VERSION_1_0",
        // VkBindImageMemorySwapchainInfoKHR in VkBindImageMemoryInfo's pNext.
        "vkBindImageMemory2: SWAPCHAIN, device-level, from VK_VERSION_1_1",
        "vkBindImageMemory2KHR: SWAPCHAIN, device-level, from VK_KHR_bind_memory2",
        "vkAcquireNextImage2KHR: SWAPCHAIN, device-level, from VK_KHR_device_group VK_KHR_swapchain",
        "vkGetPhysicalDeviceDisplayPropertiesKHR: DISPLAY, instance-level, from VK_KHR_display",
        "vkCreateDisplayModeKHR: DISPLAY DISPLAY_MODE, instance-level, from VK_KHR_display",
        "vkSetDebugUtilsObjectNameEXT: OBJECT_HANDLE, device-level, from VK_EXT_debug_utils",
        "vkSetPrivateData: OBJECT_HANDLE, device-level, from VK_VERSION_1_3",
        "vkSetPrivateDataEXT: OBJECT_HANDLE, device-level, from VK_EXT_private_data",
    ];
    for want in expected {
        let command = want.split(':').next().unwrap();
        let found = d
            .carriers
            .iter()
            .find(|c| c.starts_with(&format!("{command}:")));
        if found.map(String::as_str) != Some(want) {
            return Err(format!("derived {found:?}, expected {want:?}").into());
        }
    }
    // vkCreateXcbSurfaceKHR only writes its surface.
    for command in [
        "vkCreateBuffer",
        "vkCreateInstance",
        "vkQueueSubmit2KHR",
        "vkCreateXcbSurfaceKHR",
    ] {
        if d.carriers
            .iter()
            .any(|c| c.starts_with(&format!("{command}:")))
        {
            return Err(format!("{command} carries no layer-made handle").into());
        }
    }
    Ok(Completion::Completed)
}

/// Reads ash, derives the file and prints the summary line.
fn derive_file() -> Result<Derived, Missing> {
    let start = Instant::now();
    let (version, src) = find_ash()?;
    let ash = ash::Ash::read(&src).map_err(Missing::Broken)?;
    let carriers = derive::carriers(&ash);
    let chained = derive::chained(&ash).map_err(Missing::Broken)?;
    let text = render::render(&version, &carriers, &chained);
    let count = |kind: u8| carriers.iter().filter(|c| c.carries & kind != 0).count();
    println!(
        "registry: {} commands carry layer handles ({} swapchain, {} display, {} display mode, \
         {} object handle, {} surface) of {} commands; {} structure sizes (ash {version}, {} ms)",
        carriers.len(),
        count(derive::SWAPCHAIN),
        count(derive::DISPLAY),
        count(derive::DISPLAY_MODE),
        count(derive::OBJECT_HANDLE),
        count(derive::SURFACE),
        ash.commands.len(),
        chained.len(),
        start.elapsed().as_millis(),
    );
    let carriers = carriers.iter().map(describe).collect();
    Ok(Derived { text, carriers })
}

fn describe(c: &derive::Carrier) -> String {
    let kinds = derive::KINDS.iter().filter(|(bit, _)| c.carries & bit != 0);
    let kinds: Vec<&str> = kinds.map(|(_, name)| *name).collect();
    let level = if c.instance_level {
        "instance"
    } else {
        "device"
    };
    let from: Vec<&str> = c.from.iter().map(String::as_str).collect();
    format!(
        "{}: {}, {level}-level, from {}",
        c.command,
        kinds.join(" "),
        from.join(" ")
    )
}

/// ash's version and `src/` directory, as `cargo metadata` resolves them
/// from Cargo.lock.
fn find_ash() -> Result<(String, PathBuf), Missing> {
    let cargo = env!("CARGO");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let unavailable = |why: String| Missing::Unavailable(why);
    if !Path::new(cargo).exists() {
        return Err(unavailable(format!("no cargo at {cargo} on this machine")));
    }
    if !manifest.exists() {
        return Err(unavailable(format!(
            "no {} on this machine",
            manifest.display()
        )));
    }
    let run = |args: &[&str]| -> Result<String, Missing> {
        let out = Command::new(cargo)
            .args(args)
            .output()
            .map_err(|e| unavailable(format!("cannot run {cargo}: {e}")))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(Missing::Broken(format!(
                "cargo {}: {}",
                args[0],
                stderr.trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // `--offline` resolves from Cargo.lock and the local registry only;
    // limited to this host's platform, so that dependencies of other
    // platforms, never downloaded here, are not needed.
    let host = run(&["-vV"])?;
    let host = host
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .ok_or_else(|| unavailable("`cargo -vV` names no host".to_string()))?;
    let metadata = run(&[
        "metadata",
        "--format-version",
        "1",
        "--offline",
        "--filter-platform",
        host,
        "--manifest-path",
        &manifest.to_string_lossy(),
    ])?;
    let metadata: serde_json::Value = serde_json::from_str(&metadata)
        .map_err(|e| Missing::Broken(format!("cargo metadata: {e}")))?;
    let packages = metadata["packages"].as_array().into_iter().flatten();
    let ash: Vec<_> = packages.filter(|p| p["name"] == "ash").collect();
    let [ash] = ash[..] else {
        return Err(Missing::Broken(format!(
            "expected one ash package in cargo metadata, found {}",
            ash.len()
        )));
    };
    let version = ash["version"].as_str().unwrap_or("?").to_string();
    let src = Path::new(ash["manifest_path"].as_str().unwrap_or_default()).with_file_name("src");
    if !src.join("vk/definitions.rs").exists() {
        return Err(unavailable(format!(
            "ash's source is not at {}",
            src.display()
        )));
    }
    Ok((version, src))
}
