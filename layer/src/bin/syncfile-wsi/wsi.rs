//! The window systems this environment reaches: the compositor behind
//! `WAYLAND_DISPLAY` and its globals, the X server behind `DISPLAY` and
//! its DRI3 and Present, the KMS outputs, and headless (always there). What
//! the layer needs of each is asked through the layer's own code.

use serde_json::{json, Value};
use wayland_client::protocol::wl_registry;
use wayland_client::{Connection, Dispatch, QueueHandle};
use VkLayer_syncfile_wsi::doctor::{self, x11, Output, Settings};
use VkLayer_syncfile_wsi::wayland::{Client, Offer, TIMEOUT};

use crate::report::{row, Mark, Section};

/// The globals the report names, when the compositor announces them.
const GLOBALS: [&str; 5] = [
    "zwp_linux_dmabuf_v1",
    "zwp_linux_explicit_synchronization_v1",
    "wp_linux_drm_syncobj_manager_v1",
    "wp_presentation",
    "wp_fifo_manager_v1",
];

/// What the doctor found of each window system.
pub struct Reach {
    /// The compositor's offer to the layer, if one answered.
    pub wayland: Option<Result<Offer, String>>,
    pub x11: Option<Result<x11::Offer, String>>,
    pub outputs: Vec<Output>,
}

#[derive(Default)]
struct Globals(Vec<(String, u32)>);

impl Dispatch<wl_registry::WlRegistry, ()> for Globals {
    fn event(
        state: &mut Self,
        _: &wl_registry::WlRegistry,
        event: wl_registry::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wl_registry::Event::Global {
            interface, version, ..
        } = event
        {
            state.0.push((interface, version));
        }
    }
}

/// The compositor's globals, and what it offers the layer (asked the way
/// the layer asks, on the same display).
fn wayland() -> Result<(Vec<(String, u32)>, Offer), String> {
    let conn = Connection::connect_to_env().map_err(|e| e.to_string())?;
    let mut queue = conn.new_event_queue();
    let _registry = conn.display().get_registry(&queue.handle(), ());
    let mut globals = Globals::default();
    queue.roundtrip(&mut globals).map_err(|e| e.to_string())?;
    let display = conn.backend().display_ptr();
    // SAFETY: `conn` keeps the display alive past the layer's client,
    // which is dropped before this returns.
    let (client, _events) =
        unsafe { Client::connect(display.cast(), TIMEOUT) }.map_err(|e| e.to_string())?;
    Ok((globals.0, client.offer().clone()))
}

pub fn check(settings: &Settings) -> (Reach, Section) {
    let mut rows = Vec::new();
    let mut json = serde_json::Map::new();
    let wayland = std::env::var("WAYLAND_DISPLAY").ok().filter(|d| !d.is_empty()).map(|name| {
        let found = wayland();
        match &found {
            Ok((globals, offer)) => {
                rows.push(row("Wayland", Mark::Yes, format!("{name}: {} globals", globals.len())));
                for g in GLOBALS {
                    let v = globals.iter().find(|(i, _)| i == g).map(|(_, v)| *v);
                    rows.push(row(format!("  {g}"), Mark::of(v.is_some()), v.map_or("not offered".into(), |v| format!("v{v}"))));
                }
                json.insert("wayland".into(), json!({
                    "display": name,
                    "globals": globals.iter().filter(|(i, _)| GLOBALS.contains(&i.as_str())).map(|(i, v)| (i.clone(), Value::from(*v))).collect::<serde_json::Map<_, _>>(),
                    "dmabuf_formats": offer.formats.len(),
                    "layer_serves": doctor::wayland_serves(offer),
                }));
            }
            Err(e) => {
                rows.push(row("Wayland", Mark::No, format!("{name}: {e}")));
                json.insert("wayland".into(), json!({ "display": name, "error": e }));
            }
        }
        found.map(|(_, o)| o)
    });
    if wayland.is_none() {
        rows.push(row("Wayland", Mark::No, "WAYLAND_DISPLAY is not set"));
        json.insert("wayland".into(), Value::Null);
    }
    let x11 = std::env::var("DISPLAY").ok().filter(|d| !d.is_empty()).map(|name| {
        let found = x11::connect(&name).and_then(|c| x11::offer(&c)).map_err(|e| e.to_string());
        match &found {
            Ok(o) => {
                let v = |(a, b): (u32, u32)| if (a, b) == (0, 0) { "none".to_owned() } else { format!("{a}.{b}") };
                rows.push(row("X11", Mark::of(o.suffices()), format!("{name}: DRI3 {}, Present {}, SYNC {}", v(o.dri3), v(o.present), v(o.sync))));
                json.insert("x11".into(), json!({ "display": name, "dri3": v(o.dri3), "present": v(o.present), "sync": v(o.sync), "layer_serves": o.suffices() }));
            }
            Err(e) => {
                rows.push(row("X11", Mark::No, format!("{name}: {e}")));
                json.insert("x11".into(), json!({ "display": name, "error": e }));
            }
        }
        found
    });
    if x11.is_none() {
        rows.push(row("X11", Mark::No, "DISPLAY is not set"));
        json.insert("x11".into(), Value::Null);
    }
    let outputs = doctor::outputs(settings);
    if outputs.is_empty() {
        rows.push(row(
            "KMS displays",
            Mark::No,
            "no connected connector on an atomic KMS card",
        ));
    }
    for o in &outputs {
        let mode = o.mode.map_or(String::new(), |(w, h, mhz)| {
            format!(" {w}x{h}@{}.{:03}", mhz / 1000, mhz % 1000)
        });
        rows.push(row(
            "KMS display",
            Mark::Yes,
            format!("{} on {}{mode}", o.name, o.card.display()),
        ));
    }
    json.insert(
        "kms".into(),
        outputs
            .iter()
            .map(|o| json!({ "card": o.card, "connector": o.name }))
            .collect(),
    );
    rows.push(row(
        "headless",
        Mark::Yes,
        "always (VK_EXT_headless_surface)",
    ));
    let section = Section {
        name: "window systems",
        rows,
        json: Value::Object(json),
    };
    (
        Reach {
            wayland,
            x11,
            outputs,
        },
        section,
    )
}
