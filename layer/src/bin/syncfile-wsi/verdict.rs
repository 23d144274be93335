//! The verdict for each surface type: would the layer own it, with which
//! sync path and which fallback, or why not. The rules are the layer's
//! (`doctor::sync_path`, the platforms' own checks); this only combines
//! what the other checks found.

use serde_json::json;
use syncfile::probe::Support as Kernel;
use VkLayer_syncfile_wsi::doctor::{self, sync_path, Platform, Settings};

use crate::report::{row, Mark, Section};
use crate::vulkan::Device;
use crate::wsi::Reach;

/// What the layer would do with one kind of surface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Owns {
        path: &'static str,
        fallback: Option<&'static str>,
        /// The render's sync_file also goes with each frame (Wayland's
        /// explicit-sync protocol).
        explicit: bool,
    },
    PassThrough(String),
}

/// Whether the window system takes what the layer gives it, or why not.
fn window_system(p: Platform, reach: &Reach) -> Result<(), String> {
    match p {
        Platform::Headless => Ok(()),
        Platform::Wayland => match &reach.wayland {
            None => Err("no compositor: WAYLAND_DISPLAY is not set".into()),
            Some(Err(e)) => Err(format!("the compositor cannot be reached: {e}")),
            Some(Ok(o)) if doctor::wayland_serves(o) => Ok(()),
            Some(Ok(_)) => Err("the compositor offers no zwp_linux_dmabuf_v1 v3+ formats".into()),
        },
        Platform::X11 => match &reach.x11 {
            None => Err("no X server: DISPLAY is not set".into()),
            Some(Err(e)) => Err(format!("the X server cannot be reached: {e}")),
            Some(Ok(o)) if o.suffices() => Ok(()),
            Some(Ok(_)) => Err("the X server lacks DRI3 1.2, Present 1.2 or SYNC 3.1".into()),
        },
        Platform::Display if reach.outputs.is_empty() => {
            Err("no connected KMS output on an atomic card".into())
        }
        Platform::Display => Ok(()),
    }
}

pub fn verdict(
    p: Platform,
    settings: &Settings,
    kernel: Kernel,
    devices: &[Device],
    reach: &Reach,
) -> Verdict {
    if let Some(name) = &settings.disabled_as {
        return Verdict::PassThrough(format!(
            "SYNCFILE_WSI_DISABLE_FOR names {name}: the layer stays out of its way"
        ));
    }
    if !settings.platforms.contains(p) {
        return Verdict::PassThrough(format!(
            "SYNCFILE_WSI_PLATFORMS={} leaves it to the driver",
            settings.platforms
        ));
    }
    let ready = devices.iter().find_map(|d| d.support.as_ref().ok());
    let Some(ready) = ready else {
        return Verdict::PassThrough(match devices.first() {
            Some(d) => format!(
                "{}: {}",
                d.name,
                d.support.as_ref().err().map_or("", String::as_str)
            ),
            None => "no Vulkan device".into(),
        });
    };
    if let Err(why) = window_system(p, reach) {
        return Verdict::PassThrough(why);
    }
    let fallback = sync_path::fallback(settings.sync, kernel, ready.semaphore_export);
    let exportable = sync_path::exportable(fallback, ready.semaphore_export);
    let carries = match (p, &reach.wayland) {
        (Platform::Wayland, Some(Ok(o))) => doctor::wayland_explicit(o, settings.sync),
        _ => false,
    };
    let application_objects = matches!(p, Platform::Wayland | Platform::X11);
    let kind = sync_path::Kind::of(fallback, exportable, carries, application_objects);
    Verdict::Owns {
        path: kind.name(),
        fallback: fallback.map(doctor::Fallback::name),
        explicit: carries,
    }
}

/// Every surface type's verdict; the bool says whether any is owned.
pub fn check(
    settings: &Settings,
    kernel: Kernel,
    devices: &[Device],
    reach: &Reach,
) -> (bool, Section) {
    let mut rows = Vec::new();
    let mut json = serde_json::Map::new();
    let mut any = false;
    for p in Platform::ALL {
        let v = verdict(p, settings, kernel, devices, reach);
        match &v {
            Verdict::Owns {
                path,
                fallback,
                explicit,
            } => {
                any = true;
                let fb = fallback.map_or("no fallback".to_owned(), |f| format!("fallback {f}"));
                rows.push(row(
                    p.name(),
                    Mark::Yes,
                    format!(
                        "owned: sync {path}{}, {fb}",
                        if *explicit {
                            " + explicit-sync acquire fences"
                        } else {
                            ""
                        }
                    ),
                ));
                json.insert(
                    p.name().into(),
                    json!({ "owns": true, "sync": path, "fallback": fallback, "explicit_sync": explicit }),
                );
            }
            Verdict::PassThrough(why) => {
                rows.push(row(
                    p.name(),
                    Mark::No,
                    format!("passed to the driver: {why}"),
                ));
                json.insert(p.name().into(), json!({ "owns": false, "reason": why }));
            }
        }
    }
    (
        any,
        Section {
            name: "verdict",
            rows,
            json: serde_json::Value::Object(json),
        },
    )
}
