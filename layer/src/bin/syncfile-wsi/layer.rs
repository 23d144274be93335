//! The layer's side of the report: the manifests the loader would find,
//! the one it would use, whether the layer is enabled here and why, and
//! the settings in force.

use serde_json::{json, Value};
use VkLayer_syncfile_wsi::doctor::{Settings, StatsSink};
use VkLayer_syncfile_wsi::manifest::Kind;

use crate::manifests::{self, Env};
use crate::report::{row, Mark, Row, Section};

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Implicit => "implicit",
        Kind::Explicit => "explicit",
    }
}

/// The settings in force in `application`, each with where its value came
/// from (the environment, a settings file and its line, or the default).
pub fn settings_rows(
    settings: &Settings,
    warnings: &[String],
    application: &str,
) -> (Vec<Row>, Value) {
    let stats = match &settings.stats {
        None => "off".to_owned(),
        Some(StatsSink::Stderr) => "stderr".to_owned(),
        Some(StatsSink::File(p)) => p.display().to_string(),
    };
    let opt = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map_or("off".to_owned(), |p| p.display().to_string())
    };
    let values = [
        ("SYNCFILE_WSI_CONFIG", opt(&settings.config)),
        (
            "SYNCFILE_WSI_DISABLE_FOR",
            if settings.disable_for.is_empty() {
                "none".to_owned()
            } else {
                settings.disable_for.join(",")
            },
        ),
        ("SYNCFILE_WSI_LOG", settings.log.clone()),
        ("SYNCFILE_WSI_PLATFORMS", settings.platforms.to_string()),
        ("SYNCFILE_WSI_SYNC", settings.sync.name().to_owned()),
        ("SYNCFILE_WSI_STATS", stats),
        ("SYNCFILE_WSI_CAPTURE", opt(&settings.capture)),
        (
            "SYNCFILE_WSI_CAPTURE_EVERY",
            settings.capture_every.to_string(),
        ),
        (
            "SYNCFILE_WSI_HEADLESS_REFRESH",
            settings.headless_refresh.to_string(),
        ),
        (
            "SYNCFILE_WSI_HEADLESS_BUFFERS",
            settings.headless_buffers.name().to_owned(),
        ),
        (
            "SYNCFILE_WSI_DISPLAY_DEVICE",
            settings
                .display_device
                .clone()
                .unwrap_or_else(|| "every card".into()),
        ),
    ];
    let source = |k: &str| {
        settings
            .source(k)
            .map_or("default".to_owned(), |s| s.to_string())
    };
    let mut rows = vec![row("settings of", Mark::Info, application)];
    rows.extend(
        values
            .iter()
            .map(|(k, v)| row(*k, Mark::Info, format!("{v}  ({})", source(k)))),
    );
    rows.extend(warnings.iter().map(|w| row("setting warning", Mark::No, w)));
    let json = json!({
        "application": application,
        "values": values.iter().map(|(k, v)| ((*k).to_owned(), Value::from(v.as_str()))).collect::<serde_json::Map<_, _>>(),
        "sources": values.iter().map(|(k, _)| ((*k).to_owned(), Value::from(source(k)))).collect::<serde_json::Map<_, _>>(),
        "warnings": warnings,
    });
    (rows, json)
}

/// Whether the layer is enabled; the section, with the settings of
/// `application`.
pub fn check(
    env: &Env,
    settings: &Settings,
    warnings: &[String],
    application: &str,
) -> (bool, Section) {
    let found = manifests::find(env);
    let mut rows = Vec::new();
    if found.is_empty() {
        rows.push(row(
            "manifest",
            Mark::No,
            "the loader finds none (install it, or use `syncfile-wsi run`)",
        ));
    }
    for f in &found {
        let lib = match &f.resolved {
            Some(p) => format!("library {}", p.display()),
            None => format!("library {} NOT FOUND", f.library),
        };
        rows.push(row(
            format!("{} manifest", kind_name(f.kind)),
            Mark::of(f.resolved.is_some()),
            format!("{} (from {}), {lib}", f.file.display(), f.origin),
        ));
    }
    // The loader takes the first manifest of a name in its search order.
    let winner = found.first();
    let (enabled, why) = match winner {
        Some(w) => manifests::enabled(env, w.kind),
        None => (false, "no manifest found".into()),
    };
    if let Some(w) = winner {
        rows.push(row("loader uses", Mark::Info, w.file.display().to_string()));
    }
    rows.push(row(
        "enabled here",
        Mark::of(enabled),
        format!("{}: {why}", if enabled { "yes" } else { "no" }),
    ));
    let (setting_rows, settings_json) = settings_rows(settings, warnings, application);
    rows.extend(setting_rows);
    let json = json!({
        "manifests": found.iter().map(|f| json!({
            "file": f.file, "kind": kind_name(f.kind), "origin": f.origin,
            "library": f.library, "resolved": f.resolved,
        })).collect::<Vec<_>>(),
        "winner": winner.map(|w| w.file.clone()),
        "enabled": enabled,
        "why": why,
        "settings": settings_json,
    });
    (
        enabled,
        Section {
            name: "layer",
            rows,
            json,
        },
    )
}
