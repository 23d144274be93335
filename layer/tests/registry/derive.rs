//! The derivation: which commands can carry a layer-made handle, and which
//! structures may be chained into the ones the layer copies.

use std::collections::{BTreeMap, BTreeSet};

use crate::ash::{Ash, Field};

/// The kinds of `Carries` in the generated file, as bits.
pub const SWAPCHAIN: u8 = 1;
pub const DISPLAY: u8 = 2;
pub const DISPLAY_MODE: u8 = 4;
pub const OBJECT_HANDLE: u8 = 8;
pub const SURFACE: u8 = 16;

/// Each kind's constant in the generated file.
pub const KINDS: [(u8, &str); 5] = [
    (SWAPCHAIN, "SWAPCHAIN"),
    (DISPLAY, "DISPLAY"),
    (DISPLAY_MODE, "DISPLAY_MODE"),
    (OBJECT_HANDLE, "OBJECT_HANDLE"),
    (SURFACE, "SURFACE"),
];

/// The handle types the layer makes, by their ash names.
const HANDLES: [(&str, u8); 4] = [
    ("SwapchainKHR", SWAPCHAIN),
    ("DisplayKHR", DISPLAY),
    ("DisplayModeKHR", DISPLAY_MODE),
    ("SurfaceKHR", SURFACE),
];

/// A handle of any type passed as a `u64` (with its `ObjectType` beside
/// it): debug utils, debug marker, debug report, private data.
const OBJECT_FIELDS: [&str; 2] = ["object", "object_handle"];

/// The structures the layer copies and edits; each may be extended by
/// structures the layer must then know the size of.
pub const COPIED: [&str; 8] = [
    "DeviceCreateInfo",
    "ImageCreateInfo",
    "BindImageMemoryInfo",
    "PresentInfoKHR",
    "SwapchainCreateInfoKHR",
    "SubmitInfo",
    "SubmitInfo2",
    "PhysicalDeviceSurfaceInfo2KHR",
];

pub struct Carrier<'a> {
    pub command: &'a str,
    pub carries: u8,
    pub instance_level: bool,
    pub from: &'a BTreeSet<String>,
}

pub struct Chained<'a> {
    pub structure: &'a str,
    pub s_type: &'a str,
    pub lifetime: bool,
}

/// What a field or parameter carries by its own type: one of the handle
/// types (itself, behind a pointer or in an array), or a `u64` object.
fn own(ash: &Ash, f: &Field) -> u8 {
    let base = ash.resolve(&f.ty.base);
    let mut handle = HANDLES.iter().find(|(h, _)| *h == base).map_or(0, |h| h.1);
    // Surfaces are the layer's only where it makes them (display planes'):
    // a command that only writes one (every vkCreate*SurfaceKHR) hands the
    // application the loader's handle, never takes the layer's.
    if handle == SURFACE && f.ty.written {
        handle = 0;
    }
    let object = f.ty.plain && base == "u64" && OBJECT_FIELDS.contains(&f.name.as_str());
    handle | if object { OBJECT_HANDLE } else { 0 }
}

/// What each structure carries: its fields' own kinds, and those of the
/// structures it holds (by value, by pointer or in an array) or that may
/// extend it through pNext. Computed to a fixed point, so that cycles
/// (structures that reach each other) need no special care.
fn structure_kinds(ash: &Ash) -> BTreeMap<&str, u8> {
    let mut kinds: BTreeMap<&str, u8> = ash
        .structs
        .iter()
        .map(|(name, s)| {
            (
                name.as_str(),
                s.fields.iter().fold(0, |k, f| k | own(ash, f)),
            )
        })
        .collect();
    loop {
        let mut changed = false;
        for (name, s) in &ash.structs {
            let held = s.fields.iter().map(|f| ash.resolve(&f.ty.base));
            let extenders = ash
                .extends
                .get(name)
                .into_iter()
                .flatten()
                .map(String::as_str);
            let reached = held
                .chain(extenders)
                .fold(0, |k, other| k | kinds.get(other).copied().unwrap_or(0));
            let k = kinds.get_mut(name.as_str()).unwrap();
            if *k | reached != *k {
                *k |= reached;
                changed = true;
            }
        }
        if !changed {
            return kinds;
        }
    }
}

/// Every command that can carry a layer-made handle, sorted by name: a
/// parameter carries it by its own type or points to (or holds) a
/// structure that carries it.
pub fn carriers(ash: &Ash) -> Vec<Carrier<'_>> {
    let kinds = structure_kinds(ash);
    let mut out = Vec::new();
    for (name, command) in &ash.commands {
        let params = &ash.pfns[&command.pfn];
        let carries = params.iter().fold(0, |k, p| {
            k | own(ash, p) | kinds.get(ash.resolve(&p.ty.base)).copied().unwrap_or(0)
        });
        if carries == 0 {
            continue;
        }
        let first = params.first().map(|p| ash.resolve(&p.ty.base));
        let device_level = matches!(first, Some("Device" | "Queue" | "CommandBuffer"));
        out.push(Carrier {
            command: name,
            carries,
            instance_level: !device_level,
            from: &command.from,
        });
    }
    out
}

/// The structures `chained_size` knows: the copied ones and every
/// structure that may extend one of them, one per structure type, sorted
/// by name.
pub fn chained(ash: &Ash) -> Result<Vec<Chained<'_>>, String> {
    let mut names: BTreeSet<&str> = COPIED.into_iter().collect();
    for base in COPIED {
        let extenders = ash
            .extends
            .get(base)
            .ok_or(format!("nothing extends {base}"))?;
        names.extend(extenders.iter().map(String::as_str));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for name in names {
        let s = ash
            .structs
            .get(name)
            .ok_or(format!("no structure {name}"))?;
        let s_type = s
            .s_type
            .as_deref()
            .ok_or(format!("{name} has no structure type"))?;
        // Aliases are type aliases in ash, so each structure type should
        // come once; should two structures share one, the first is enough.
        if seen.insert(s_type) {
            out.push(Chained {
                structure: name,
                s_type,
                lifetime: s.lifetime,
            });
        }
    }
    Ok(out)
}
