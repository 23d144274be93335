//! Where the Vulkan loader looks for layer manifests (its own rules, as
//! `LoaderLayerInterface.md` gives them for Linux), which of the layer's
//! manifests it would find and use, and whether the layer is enabled in an
//! environment and why. Pure over an environment snapshot, so the rules
//! are unit-tested on the host.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use VkLayer_syncfile_wsi::manifest::{Kind, DISABLE_ENV, ENABLE_ENV, LAYER_NAME};

/// The variables the rules read: a snapshot, so the doctor can report the
/// environment it was started in after changing its own.
#[derive(Clone, Debug, Default)]
pub struct Env(pub HashMap<String, String>);

impl Env {
    pub fn process() -> Env {
        Env(std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect())
    }

    /// `name`'s value, if set and not empty (the loader treats an empty
    /// variable as unset).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn list(&self, name: &str) -> Vec<PathBuf> {
        self.get(name)
            .map(|v| {
                v.split(':')
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn home_dir(&self, var: &str, below_home: &str) -> Option<PathBuf> {
        self.get(var)
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from(self.get("HOME")?).join(below_home)))
    }
}

/// A place the loader searches, and what put it there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub path: PathBuf,
    pub origin: &'static str,
}

/// The variables that add to and replace the standard places.
fn variables(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Implicit => ("VK_ADD_IMPLICIT_LAYER_PATH", "VK_IMPLICIT_LAYER_PATH"),
        Kind::Explicit => ("VK_ADD_LAYER_PATH", "VK_LAYER_PATH"),
    }
}

/// The loader's search order for `kind`: the added paths first, then the
/// replacing variable's, or else the XDG configuration places, `/etc`, and
/// the XDG data places. A path may be a directory or a manifest file.
pub fn places(env: &Env, kind: Kind) -> Vec<Place> {
    let (add, replace) = variables(kind);
    let mut out: Vec<Place> = env
        .list(add)
        .into_iter()
        .map(|path| Place { path, origin: add })
        .collect();
    if env.get(replace).is_some() {
        out.extend(env.list(replace).into_iter().map(|path| Place {
            path,
            origin: replace,
        }));
        return out;
    }
    let sub = Path::new("vulkan").join(kind.directory());
    let mut standard: Vec<(PathBuf, &'static str)> = Vec::new();
    standard.extend(
        env.home_dir("XDG_CONFIG_HOME", ".config")
            .map(|p| (p, "XDG_CONFIG_HOME")),
    );
    let config_dirs = match env.list("XDG_CONFIG_DIRS") {
        l if l.is_empty() => vec![PathBuf::from("/etc/xdg")],
        l => l,
    };
    standard.extend(config_dirs.into_iter().map(|p| (p, "XDG_CONFIG_DIRS")));
    standard.push((PathBuf::from("/etc"), "SYSCONFDIR"));
    standard.extend(
        env.home_dir("XDG_DATA_HOME", ".local/share")
            .map(|p| (p, "XDG_DATA_HOME")),
    );
    let data_dirs = match env.list("XDG_DATA_DIRS") {
        l if l.is_empty() => vec![
            PathBuf::from("/usr/local/share"),
            PathBuf::from("/usr/share"),
        ],
        l => l,
    };
    standard.extend(data_dirs.into_iter().map(|p| (p, "XDG_DATA_DIRS")));
    for (base, origin) in standard {
        let path = base.join(&sub);
        if !out.iter().any(|p| p.path == path) {
            out.push(Place { path, origin });
        }
    }
    out
}

/// One of the layer's manifests, where the loader would find it.
#[derive(Clone, Debug)]
pub struct Found {
    pub file: PathBuf,
    pub kind: Kind,
    pub origin: &'static str,
    /// Its `library_path`, as written.
    pub library: String,
    /// Where that resolves to, if the file is there.
    pub resolved: Option<PathBuf>,
}

/// Whether a manifest's text declares the layer.
fn names_the_layer(text: &str) -> Option<String> {
    let v: Value = serde_json::from_str(text).ok()?;
    let layers = match (&v["layer"], &v["layers"]) {
        (Value::Object(_), _) => vec![v["layer"].clone()],
        (_, Value::Array(l)) => l.clone(),
        _ => return None,
    };
    layers
        .iter()
        .find(|l| l["name"] == LAYER_NAME)
        .and_then(|l| Some(l["library_path"].as_str()?.to_owned()))
}

/// Where the dynamic linker would find a library named bare: the
/// directories it searches by default on Debian (its cache holds these).
const LIBRARY_DIRS: [&str; 5] = [
    "/usr/local/lib/x86_64-linux-gnu",
    "/usr/local/lib",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/usr/lib",
];

fn resolve(manifest: &Path, library: &str, env: &Env) -> Option<PathBuf> {
    let path = Path::new(library);
    if library.contains('/') {
        let p = if path.is_absolute() {
            path.to_path_buf()
        } else {
            manifest.parent()?.join(path)
        };
        return p.is_file().then_some(p);
    }
    env.list("LD_LIBRARY_PATH")
        .into_iter()
        .chain(LIBRARY_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(library))
        .find(|p| p.is_file())
}

/// The layer's manifests in the loader's order: implicit ones first (the
/// loader lists them before explicit ones), each kind in search order.
pub fn find(env: &Env) -> Vec<Found> {
    let mut found = Vec::new();
    for kind in Kind::ALL {
        for place in places(env, kind) {
            let mut files: Vec<PathBuf> = if place.path.is_dir() {
                std::fs::read_dir(&place.path)
                    .into_iter()
                    .flatten()
                    .filter_map(|e| Some(e.ok()?.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            } else if place.path.is_file() {
                vec![place.path.clone()]
            } else {
                Vec::new()
            };
            files.sort();
            for file in files {
                let Some(library) = std::fs::read_to_string(&file)
                    .ok()
                    .and_then(|t| names_the_layer(&t))
                else {
                    continue;
                };
                let resolved = resolve(&file, &library, env);
                found.push(Found {
                    file,
                    kind,
                    origin: place.origin,
                    library,
                    resolved,
                });
            }
        }
    }
    found
}

/// Whether a comma-separated loader filter (`VK_LOADER_LAYERS_ENABLE` and
/// `_DISABLE`) matches the layer: its name, a `*` glob at either end, or
/// `~all~` and `~implicit~`/`~explicit~` for its kind.
pub fn filter_matches(filter: &str, kind: Kind) -> bool {
    filter.split(',').map(str::trim).any(|f| match f {
        "~all~" => true,
        "~implicit~" => kind == Kind::Implicit,
        "~explicit~" => kind == Kind::Explicit,
        _ => {
            let lower = LAYER_NAME.to_ascii_lowercase();
            let f = f.to_ascii_lowercase();
            match (f.strip_prefix('*'), f.strip_suffix('*')) {
                (Some(rest), _) if rest.ends_with('*') => {
                    lower.contains(rest.trim_end_matches('*'))
                }
                (Some(rest), _) => lower.ends_with(rest),
                (None, Some(rest)) => lower.starts_with(rest),
                (None, None) => f == lower,
            }
        }
    })
}

/// Whether the loader enables the layer of manifest `kind`, and the one
/// reason.
pub fn enabled(env: &Env, kind: Kind) -> (bool, String) {
    let forced = env
        .get("VK_LOADER_LAYERS_ENABLE")
        .is_some_and(|f| filter_matches(f, kind));
    if let Some(f) = env.get("VK_LOADER_LAYERS_DISABLE") {
        if filter_matches(f, kind) && !forced {
            return (false, format!("VK_LOADER_LAYERS_DISABLE={f} names it"));
        }
    }
    if kind == Kind::Implicit {
        if let Some(v) = env.get(DISABLE_ENV) {
            return (
                false,
                format!("{DISABLE_ENV}={v} turns it off, whatever else says"),
            );
        }
    }
    if forced {
        return (true, "VK_LOADER_LAYERS_ENABLE names it".into());
    }
    if let Some(list) = env.get("VK_INSTANCE_LAYERS") {
        if list.split(':').any(|l| l == LAYER_NAME) {
            return (true, "VK_INSTANCE_LAYERS names it".into());
        }
    }
    match (kind, env.get(ENABLE_ENV)) {
        (Kind::Implicit, Some("1")) => (true, format!("{ENABLE_ENV}=1")),
        (Kind::Implicit, Some(v)) => (false, format!("{ENABLE_ENV}={v}, not 1")),
        (Kind::Implicit, None) => (false, format!("{ENABLE_ENV}=1 is not set")),
        (Kind::Explicit, _) => (
            false,
            format!("an explicit layer: name it in VK_INSTANCE_LAYERS ({LAYER_NAME})"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env(pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    fn paths(env: &Env, kind: Kind) -> Vec<String> {
        places(env, kind)
            .into_iter()
            .map(|p| p.path.display().to_string())
            .collect()
    }

    #[test]
    fn standard_places_in_the_loaders_order() {
        assert_eq!(
            paths(&env(&[("HOME", "/h")]), Kind::Implicit),
            [
                "/h/.config/vulkan/implicit_layer.d",
                "/etc/xdg/vulkan/implicit_layer.d",
                "/etc/vulkan/implicit_layer.d",
                "/h/.local/share/vulkan/implicit_layer.d",
                "/usr/local/share/vulkan/implicit_layer.d",
                "/usr/share/vulkan/implicit_layer.d",
            ]
        );
        let e = env(&[("XDG_DATA_HOME", "/d"), ("XDG_DATA_DIRS", "/a:/usr/share")]);
        assert_eq!(
            paths(&e, Kind::Explicit)[2..],
            [
                "/d/vulkan/explicit_layer.d",
                "/a/vulkan/explicit_layer.d",
                "/usr/share/vulkan/explicit_layer.d",
            ]
        );
    }

    #[test]
    fn added_paths_come_first_and_the_replacing_one_replaces() {
        let e = env(&[
            ("HOME", "/h"),
            ("VK_ADD_LAYER_PATH", "/x:/y"),
            ("VK_LAYER_PATH", "/z"),
        ]);
        assert_eq!(paths(&e, Kind::Explicit), ["/x", "/y", "/z"]);
        let e = env(&[("HOME", "/h"), ("VK_ADD_IMPLICIT_LAYER_PATH", "/i")]);
        let p = places(&e, Kind::Implicit);
        assert_eq!(
            (p[0].path.to_str(), p[0].origin),
            (Some("/i"), "VK_ADD_IMPLICIT_LAYER_PATH")
        );
        assert_eq!(p.len(), 7);
        // An empty variable is no variable.
        let e = env(&[("HOME", "/h"), ("VK_IMPLICIT_LAYER_PATH", "")]);
        assert_eq!(places(&e, Kind::Implicit).len(), 6);
    }

    #[test]
    fn disable_wins_and_filters_come_before_it() {
        let on = env(&[(ENABLE_ENV, "1")]);
        assert!(enabled(&on, Kind::Implicit).0);
        let both = env(&[(ENABLE_ENV, "1"), (DISABLE_ENV, "1")]);
        let (e, why) = enabled(&both, Kind::Implicit);
        assert!(!e && why.contains(DISABLE_ENV), "{why}");
        assert!(!enabled(&env(&[(ENABLE_ENV, "yes")]), Kind::Implicit).0);
        assert!(!enabled(&env(&[]), Kind::Implicit).0);
        let listed = env(&[("VK_INSTANCE_LAYERS", "A:VK_LAYER_SYNCFILE_wsi")]);
        assert!(enabled(&listed, Kind::Explicit).0);
        let filtered = env(&[
            (ENABLE_ENV, "1"),
            ("VK_LOADER_LAYERS_DISABLE", "~implicit~"),
        ]);
        assert!(!enabled(&filtered, Kind::Implicit).0);
        let forced = env(&[
            ("VK_LOADER_LAYERS_DISABLE", "~all~"),
            ("VK_LOADER_LAYERS_ENABLE", "*syncfile*"),
        ]);
        assert!(enabled(&forced, Kind::Explicit).0);
    }

    #[test]
    fn filters_match_names_and_globs() {
        for f in [
            "VK_LAYER_SYNCFILE_wsi",
            "vk_layer_syncfile_WSI",
            "*wsi",
            "VK_LAYER_*",
            "*SYNCFILE*",
            "x,~implicit~",
        ] {
            assert!(filter_matches(f, Kind::Implicit), "{f}");
        }
        for f in ["VK_LAYER_KHRONOS_validation", "*mesa*", "~explicit~"] {
            assert!(!filter_matches(f, Kind::Implicit), "{f}");
        }
    }

    #[test]
    fn manifests_name_the_layer_in_either_form() {
        let one = r#"{"layer": {"name": "VK_LAYER_SYNCFILE_wsi", "library_path": "lib.so"}}"#;
        assert_eq!(names_the_layer(one).as_deref(), Some("lib.so"));
        let many = r#"{"layers": [{"name": "X", "library_path": "x.so"}, {"name": "VK_LAYER_SYNCFILE_wsi", "library_path": "/l.so"}]}"#;
        assert_eq!(names_the_layer(many).as_deref(), Some("/l.so"));
        assert_eq!(names_the_layer(r#"{"layer": {"name": "X"}}"#), None);
    }
}
