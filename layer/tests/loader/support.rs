//! What the loader tests need beyond the shared support: what the Vulkan
//! loader on this machine is and has, and the layer's log.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Lines of the layer's own log in `stderr`.
pub fn layer_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.starts_with("syncfile-wsi: "))
        .map(str::to_owned)
        .collect()
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
