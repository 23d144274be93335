//! Applications that enable the modern swapchain extensions, through the
//! layer on weston: vkcube with `VK_KHR_incremental_present` (the oracle
//! is the wire: the damage it gave reaches the compositor as
//! `wl_surface.damage_buffer`) and mpv's libplacebo (`VK_EXT_hdr_metadata`
//! enabled; presented through the layer). What each enabled is read from
//! the layer's log line for its device.
//!
//! vkcube's `--display_timing` is not run: its `demo_draw` (Vulkan-Tools
//! 1.4.309, the guest's) chains a `VkPresentTimesInfoGOOGLE` declared in
//! an inner block to the present after that block has ended, so any
//! implementation that reads the chain reads a dead stack slot (through
//! the layer it crashes there; Mesa's lavapipe never enables the
//! extension). The headless suite covers display timing.

use libtest_mimic::{Completion, Failed};

use crate::apps::{self, owned_and_presented, Layer, OUTPUT, RUN_LIMIT};
use crate::{check, missing, Outcome, Weston};

/// vkcube's changed region: an eighth of its window in from every edge
/// (cube.c), for the 256×256 window.
const CUBE_DAMAGE: &str = "damage_buffer(32, 32, 192, 192)";
const CUBE_FRAMES: u64 = 120;

/// How many commits of the layer's damaged exactly `args`.
fn damage_count(log: &str, damage: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(" -> wl_surface") && l.contains(damage))
        .count()
}

/// The newer swapchain extensions the application enabled, as the layer's
/// log names them when the device is made (`VK_KHR_swapchain` left out).
fn enabled_by_the_app(log: &str) -> Vec<String> {
    const MARK: &str = "the application's swapchain extensions [";
    log.lines()
        .filter_map(|l| Some(l.split_once(MARK)?.1.split_once(']')?.0))
        .flat_map(|list| list.split(", "))
        .filter(|e| !e.is_empty() && *e != "VK_KHR_swapchain")
        .map(str::to_owned)
        .collect()
}

/// That the application enabled `wanted` (or, with `None`, any of them).
fn check_enabled(log: &str, wanted: Option<&str>) -> Result<Vec<String>, Failed> {
    let enabled = enabled_by_the_app(log);
    let ok = match wanted {
        Some(w) => enabled.iter().any(|e| e == w),
        None => !enabled.is_empty(),
    };
    check(ok, || {
        format!("the application enabled {enabled:?} of the layer's swapchain extensions, not {wanted:?}")
    })?;
    Ok(enabled)
}

fn layer_errors(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(" ERROR ")).collect()
}

pub fn vkcube_incremental_present() -> Outcome {
    if let Some(why) = apps::prerequisites(&["vkcube"]) {
        return missing(why);
    }
    let weston = Weston::start(&OUTPUT)?;
    let layer = Layer::new("vkcube_modern")?;
    let args = [
        "--wsi",
        "wayland",
        "--width",
        "256",
        "--height",
        "256",
        "--c",
        "120",
        "--incremental_present",
    ];
    let path = layer.file("vkcube.stderr");
    let mut c = layer.command(
        &weston.socket,
        true,
        "vkcube",
        &args,
        &[("WAYLAND_DEBUG", "client")],
    );
    c.stderr(std::fs::File::create(&path)?);
    let out = apps::finish(c.spawn()?, RUN_LIMIT)?;
    let log = std::fs::read_to_string(&path)?;
    apps::succeeded(&out).map_err(|e| format!("{e:?}; {}", apps::tail(log.as_bytes())))?;
    check(layer_errors(&log).is_empty(), || {
        format!("{:?}", layer_errors(&log))
    })?;
    check_enabled(&log, Some("VK_KHR_incremental_present"))?;
    owned_and_presented(&layer.stats()?, CUBE_FRAMES, "explicit")?;
    let damaged = damage_count(&log, CUBE_DAMAGE);
    // Its first frame on a new swapchain names the whole image.
    check(damaged as u64 >= CUBE_FRAMES - 1, || {
        format!("{damaged} commits carry vkcube's region {CUBE_DAMAGE}, for {CUBE_FRAMES} frames")
    })?;
    eprintln!("vkcube: {damaged} commits with its changed region");
    Ok(Completion::Completed)
}

pub fn mpv_libplacebo() -> Outcome {
    if let Some(why) = apps::prerequisites(&["mpv"]) {
        return missing(why);
    }
    let weston = Weston::start(&OUTPUT)?;
    let layer = Layer::new("mpv")?;
    let args = [
        "--no-config",
        "--vo=gpu-next",
        "--gpu-api=vulkan",
        "--gpu-context=waylandvk",
        "--gpu-sw",
        // Every frame drawn, none dropped for being late on the emulated CPU.
        "--untimed",
        "--frames=40",
        "--no-audio",
        "av://lavfi:testsrc=size=320x180:rate=30",
    ];
    let out = apps::finish(
        layer
            .command(&weston.socket, true, "mpv", &args, &[])
            .spawn()?,
        RUN_LIMIT,
    )?;
    apps::succeeded(&out)?;
    let log = String::from_utf8_lossy(&out.stderr);
    check(layer_errors(&log).is_empty(), || {
        format!("{:?}", layer_errors(&log))
    })?;
    let enabled = check_enabled(&log, None)?;
    eprintln!("mpv enabled {enabled:?}");
    owned_and_presented(&layer.stats()?, 30, "explicit").map_err(|e: Failed| {
        format!(
            "{}; mpv: {}",
            e.message().unwrap_or_default(),
            apps::tail(&out.stdout)
        )
    })?;
    Ok(Completion::Completed)
}
