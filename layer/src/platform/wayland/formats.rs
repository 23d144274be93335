//! Formats and modifiers: what the compositor announces (the v3 `modifier`
//! events or the v4+ feedback's format table and tranches), which DRM format
//! a Vulkan format is presented as, and the pairs both the compositor and the
//! driver accept. Pure functions over plain data, so they are unit-tested
//! without a compositor.

use ash::vk;

/// A DRM fourcc code (`drm_fourcc.h`).
pub type Fourcc = u32;

const fn fourcc(code: &[u8; 4]) -> Fourcc {
    u32::from_le_bytes(*code)
}

pub const ARGB8888: Fourcc = fourcc(b"AR24");
pub const XRGB8888: Fourcc = fourcc(b"XR24");
pub const ABGR8888: Fourcc = fourcc(b"AB24");
pub const XBGR8888: Fourcc = fourcc(b"XB24");
pub const ARGB2101010: Fourcc = fourcc(b"AR30");
pub const XRGB2101010: Fourcc = fourcc(b"XR30");
pub const ABGR2101010: Fourcc = fourcc(b"AB30");
pub const XBGR2101010: Fourcc = fourcc(b"XB30");
pub const ABGR16161616F: Fourcc = fourcc(b"AB4H");
pub const XBGR16161616F: Fourcc = fourcc(b"XB4H");

/// `DRM_FORMAT_MOD_LINEAR`.
pub const MOD_LINEAR: u64 = 0;
/// `DRM_FORMAT_MOD_INVALID`: "the buffer's layout is implied by the driver".
/// The layer always creates images with an explicit modifier, so it never
/// sends this one and never matches it.
pub const MOD_INVALID: u64 = 0x00ff_ffff_ffff_ffff;

/// The DRM format an image of `format` is presented as: with an alpha
/// channel the compositor blends, or with the alpha ignored (`X` formats) for
/// `VK_COMPOSITE_ALPHA_OPAQUE_BIT_KHR`. The DRM names list the channels from
/// the most significant bit of a little-endian word, Vulkan's from the lowest
/// byte, hence B8G8R8A8 ↔ ARGB8888. `None` for formats the layer does not
/// present on Wayland.
pub fn drm_format(format: vk::Format, opaque: bool) -> Option<Fourcc> {
    let (alpha, no_alpha) = match format {
        vk::Format::B8G8R8A8_UNORM | vk::Format::B8G8R8A8_SRGB => (ARGB8888, XRGB8888),
        vk::Format::R8G8B8A8_UNORM | vk::Format::R8G8B8A8_SRGB => (ABGR8888, XBGR8888),
        vk::Format::A2R10G10B10_UNORM_PACK32 => (ARGB2101010, XRGB2101010),
        vk::Format::A2B10G10R10_UNORM_PACK32 => (ABGR2101010, XBGR2101010),
        vk::Format::R16G16B16A16_SFLOAT => (ABGR16161616F, XBGR16161616F),
        _ => return None,
    };
    Some(if opaque { no_alpha } else { alpha })
}

/// One entry of a v4+ format table: 16 bytes, a `u32` format, 4 bytes of
/// padding and a `u64` modifier, in the host's byte order.
const TABLE_ENTRY: usize = 16;

/// Decodes a format table (the bytes of the fd the compositor sent).
/// A trailing partial entry, which a well-behaved compositor never sends, is
/// ignored.
pub fn parse_format_table(bytes: &[u8]) -> Vec<(Fourcc, u64)> {
    bytes
        .chunks_exact(TABLE_ENTRY)
        .map(|e| {
            let format = u32::from_ne_bytes([e[0], e[1], e[2], e[3]]);
            let modifier =
                u64::from_ne_bytes([e[8], e[9], e[10], e[11], e[12], e[13], e[14], e[15]]);
            (format, modifier)
        })
        .collect()
}

/// The pairs a tranche lists: its `formats` array is native-endian `u16`
/// indices into the format table. Indices past the table's end are skipped.
pub fn tranche_pairs(table: &[(Fourcc, u64)], indices: &[u8]) -> Vec<(Fourcc, u64)> {
    indices
        .chunks_exact(2)
        .filter_map(|i| {
            table
                .get(u16::from_ne_bytes([i[0], i[1]]) as usize)
                .copied()
        })
        .collect()
}

/// The format/modifier pairs a compositor accepts, most preferred first:
/// the v3 `modifier` events in the order received, or the feedback's
/// tranches in order (each tranche's own order kept). Duplicates keep their
/// first, most preferred, place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompositorFormats {
    pairs: Vec<(Fourcc, u64)>,
}

impl CompositorFormats {
    pub fn add(&mut self, format: Fourcc, modifier: u64) {
        if !self.pairs.contains(&(format, modifier)) {
            self.pairs.push((format, modifier));
        }
    }

    pub fn extend(&mut self, pairs: impl IntoIterator<Item = (Fourcc, u64)>) {
        for (f, m) in pairs {
            self.add(f, m);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn contains(&self, format: Fourcc, modifier: u64) -> bool {
        self.pairs.contains(&(format, modifier))
    }

    /// The modifiers for `format` that the driver also supports, in the
    /// compositor's order of preference. `MOD_INVALID` never matches: the
    /// layer's images always have an explicit modifier.
    pub fn negotiate(&self, format: Fourcc, driver: &[u64]) -> Vec<u64> {
        self.pairs
            .iter()
            .filter(|&&(f, m)| f == format && m != MOD_INVALID && driver.contains(&m))
            .map(|&(_, m)| m)
            .collect()
    }
}

/// The tranches of one complete dma-buf feedback, most preferred first,
/// each a list of format/modifier pairs.
pub type Tranches = Vec<Vec<(Fourcc, u64)>>;

/// The modifiers the compositor prefers for `format`: those of the first
/// tranche that lists it, sorted, without duplicates; none when no tranche
/// does. When these change between two feedbacks of a surface, its
/// swapchain is suboptimal, as Mesa's Wayland WSI decides it: the
/// compositor now wants buffers laid out otherwise (the surface moved to a
/// scanout plane, or to another GPU's output). Tranche flags do not count.
pub fn preferred_modifiers(tranches: &[Vec<(Fourcc, u64)>], format: Fourcc) -> Vec<u64> {
    let mut modifiers: Vec<u64> = tranches
        .iter()
        .find(|t| t.iter().any(|&(f, _)| f == format))
        .into_iter()
        .flatten()
        .filter(|&&(f, _)| f == format)
        .map(|&(_, m)| m)
        .collect();
    modifiers.sort_unstable();
    modifiers.dedup();
    modifiers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_bytes(entries: &[(Fourcc, u64)]) -> Vec<u8> {
        let mut b = Vec::new();
        for &(f, m) in entries {
            b.extend_from_slice(&f.to_ne_bytes());
            b.extend_from_slice(&[0; 4]);
            b.extend_from_slice(&m.to_ne_bytes());
        }
        b
    }

    #[test]
    fn fourcc_codes_match_drm_fourcc_h() {
        // The values from drm_fourcc.h, spelled out.
        assert_eq!(ARGB8888, 0x3432_5241);
        assert_eq!(XRGB8888, 0x3432_5258);
        assert_eq!(ABGR8888, 0x3432_4241);
        assert_eq!(XBGR16161616F, 0x4834_4258);
    }

    #[test]
    fn vulkan_formats_map_to_drm_formats_by_alpha() {
        use vk::Format as F;
        assert_eq!(drm_format(F::B8G8R8A8_SRGB, false), Some(ARGB8888));
        assert_eq!(drm_format(F::B8G8R8A8_UNORM, true), Some(XRGB8888));
        assert_eq!(drm_format(F::R8G8B8A8_UNORM, false), Some(ABGR8888));
        assert_eq!(drm_format(F::R8G8B8A8_SRGB, true), Some(XBGR8888));
        assert_eq!(
            drm_format(F::A2R10G10B10_UNORM_PACK32, true),
            Some(XRGB2101010)
        );
        assert_eq!(
            drm_format(F::A2B10G10R10_UNORM_PACK32, false),
            Some(ABGR2101010)
        );
        assert_eq!(
            drm_format(F::R16G16B16A16_SFLOAT, false),
            Some(ABGR16161616F)
        );
        assert_eq!(drm_format(F::D32_SFLOAT, false), None);
        assert_eq!(drm_format(F::R8_UNORM, true), None);
    }

    #[test]
    fn format_table_round_trips_and_ignores_a_partial_entry() {
        let entries = [
            (ARGB8888, MOD_LINEAR),
            (XRGB8888, MOD_INVALID),
            (ABGR8888, 0x0100_0000_0000_0001),
        ];
        let mut bytes = table_bytes(&entries);
        assert_eq!(parse_format_table(&bytes), entries);
        bytes.extend_from_slice(&[1, 2, 3]);
        assert_eq!(parse_format_table(&bytes), entries);
        assert!(parse_format_table(&[]).is_empty());
    }

    #[test]
    fn tranche_indices_pick_from_the_table() {
        let table = [
            (ARGB8888, MOD_LINEAR),
            (XRGB8888, MOD_LINEAR),
            (ABGR8888, MOD_INVALID),
        ];
        let idx: Vec<u8> = [2u16, 0, 7, 1]
            .iter()
            .flat_map(|i| i.to_ne_bytes())
            .collect();
        assert_eq!(
            tranche_pairs(&table, &idx),
            [
                (ABGR8888, MOD_INVALID),
                (ARGB8888, MOD_LINEAR),
                (XRGB8888, MOD_LINEAR)
            ]
        );
        // An odd trailing byte is not an index.
        assert!(tranche_pairs(&table, &[0]).is_empty());
    }

    #[test]
    fn negotiation_is_the_intersection_in_compositor_order() {
        let tiled = 0x0100_0000_0000_0002;
        let mut c = CompositorFormats::default();
        c.extend([
            (ARGB8888, tiled),
            (ARGB8888, MOD_INVALID),
            (XRGB8888, MOD_LINEAR),
        ]);
        c.extend([(ARGB8888, MOD_LINEAR), (ARGB8888, tiled)]);
        assert_eq!(c.len(), 4, "duplicates keep their first place");
        assert_eq!(
            c.negotiate(ARGB8888, &[MOD_LINEAR, tiled]),
            [tiled, MOD_LINEAR]
        );
        assert_eq!(c.negotiate(ARGB8888, &[MOD_LINEAR]), [MOD_LINEAR]);
        assert!(
            c.negotiate(ARGB8888, &[MOD_INVALID]).is_empty(),
            "implicit never matches"
        );
        assert!(c.negotiate(ABGR8888, &[MOD_LINEAR]).is_empty());
        assert!(c.negotiate(XRGB8888, &[]).is_empty());
        assert!(c.contains(XRGB8888, MOD_LINEAR) && !c.contains(XRGB8888, tiled));
        assert!(!c.is_empty() && CompositorFormats::default().is_empty());
    }

    #[test]
    fn preferred_modifiers_come_from_the_first_tranche_with_the_format() {
        let tiled = 0x0100_0000_0000_0002;
        let scanout = vec![(XRGB8888, tiled), (ARGB8888, tiled)];
        let render = vec![
            (ARGB8888, MOD_LINEAR),
            (ARGB8888, tiled),
            (ABGR8888, MOD_LINEAR),
            (ARGB8888, MOD_LINEAR),
        ];
        let both = vec![scanout.clone(), render.clone()];
        assert_eq!(preferred_modifiers(&both, XRGB8888), [tiled]);
        assert_eq!(preferred_modifiers(&both, ARGB8888), [tiled]);
        // Sorted and without duplicates, whatever the tranche's order.
        assert_eq!(
            preferred_modifiers(std::slice::from_ref(&render), ARGB8888),
            [MOD_LINEAR, tiled]
        );
        assert_eq!(preferred_modifiers(&both, ABGR8888), [MOD_LINEAR]);
        assert!(preferred_modifiers(&both, 0).is_empty());
        assert!(preferred_modifiers(&[], XRGB8888).is_empty());
        // The same pairs in another order are no change; a dropped scanout
        // tranche is one.
        let reordered = vec![scanout.iter().rev().copied().collect(), render.clone()];
        assert_eq!(
            preferred_modifiers(&reordered, ARGB8888),
            preferred_modifiers(&both, ARGB8888)
        );
        assert_ne!(
            preferred_modifiers(&[render], ARGB8888),
            preferred_modifiers(&both, ARGB8888)
        );
    }
}
