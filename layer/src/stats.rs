//! Statistics, written as one JSON object to the sink `SYNCFILE_WSI_STATS`
//! names when the layer is unloaded or the process exits.
//!
//! The counters are process-wide; the sink and the settings reported with
//! them are those of the latest instance that asked for statistics.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde_json::json;

use crate::settings::{Settings, StatsSink};

#[derive(Clone, Copy, Debug)]
pub enum Counter {
    InstancesCreated,
    InstancesDestroyed,
    DevicesCreated,
    DevicesDestroyed,
    /// Devices on which the layer enabled what it needs to own swapchains.
    DevicesOwned,
    /// Devices left entirely to the driver's own WSI.
    DevicesPassedThrough,
    /// Distinct queues the application retrieved.
    Queues,
    PanicsCaught,
    SettingsWarnings,
}

const COUNTERS: usize = Counter::SettingsWarnings as usize + 1;

static VALUES: [AtomicU64; COUNTERS] = [const { AtomicU64::new(0) }; COUNTERS];

/// Where and with which settings to report, once an instance asked.
static SINK: Mutex<Option<Settings>> = Mutex::new(None);

pub fn add(c: Counter, n: u64) {
    VALUES[c as usize].fetch_add(n, Ordering::Relaxed);
}

pub fn count(c: Counter) {
    add(c, 1);
}

fn get(c: Counter) -> u64 {
    VALUES[c as usize].load(Ordering::Relaxed)
}

/// Remembers the sink of an instance's settings, if it names one.
pub fn configure(settings: &Settings) {
    if settings.stats.is_some() {
        *SINK.lock().unwrap_or_else(|e| e.into_inner()) = Some(settings.clone());
    }
}

/// The statistics as JSON, with the settings they were gathered under.
pub fn snapshot(settings: &Settings) -> serde_json::Value {
    use Counter::*;
    json!({
        "layer": crate::manifest::LAYER_NAME,
        "version": env!("CARGO_PKG_VERSION"),
        "settings": {
            "platforms": settings.platforms.to_string(),
            "sync": settings.sync.name(),
        },
        "instances": { "created": get(InstancesCreated), "destroyed": get(InstancesDestroyed) },
        "devices": {
            "created": get(DevicesCreated),
            "destroyed": get(DevicesDestroyed),
            "owned": get(DevicesOwned),
            "passed_through": get(DevicesPassedThrough),
        },
        "queues": get(Queues),
        "panics_caught": get(PanicsCaught),
        "settings_warnings": get(SettingsWarnings),
    })
}

/// Writes the statistics to the configured sink, if any.
pub fn write() {
    let Some(settings) = SINK.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
        return;
    };
    let mut text = snapshot(&settings).to_string();
    text.push('\n');
    let written = match &settings.stats {
        Some(StatsSink::Stderr) => std::io::stderr().write_all(text.as_bytes()),
        Some(StatsSink::File(path)) => std::fs::write(path, text),
        None => Ok(()),
    };
    if let Err(e) = written {
        tracing::warn!("could not write statistics: {e}");
    }
}

extern "C" fn at_unload() {
    // Nothing may unwind out of a destructor the C runtime calls.
    let _ = std::panic::catch_unwind(write);
}

/// Runs when the loader unloads the layer (its last instance is gone) or
/// when the process exits, whichever comes first.
#[used]
#[link_section = ".fini_array"]
static AT_UNLOAD: extern "C" fn() = at_unload;
