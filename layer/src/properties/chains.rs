//! The application's `pNext` chains (`vulkan::chain`): whatever structures
//! they hold, known to the layer or newer than it, in any order, `find`
//! finds the first of a type, and `Edited::without` passes on exactly the
//! others in order — copying only what comes before the last one left out,
//! refusing (not guessing at) a structure of unknown size it would have to
//! copy, and never writing to the application's chain.

use std::ffi::c_void;

use ash::vk;
use proptest::prelude::*;

use crate::vulkan::chain::{find, Edited, UnknownStructure};

/// Structures the layer knows the size of, and one it cannot: a type
/// from a future registry.
const KNOWN: [(vk::StructureType, usize); 4] = [
    (
        vk::StructureType::IMAGE_FORMAT_LIST_CREATE_INFO,
        size_of::<vk::ImageFormatListCreateInfo<'static>>(),
    ),
    (
        vk::StructureType::SWAPCHAIN_PRESENT_MODES_CREATE_INFO_EXT,
        size_of::<vk::SwapchainPresentModesCreateInfoEXT<'static>>(),
    ),
    (
        vk::StructureType::SWAPCHAIN_COUNTER_CREATE_INFO_EXT,
        size_of::<vk::SwapchainCounterCreateInfoEXT<'static>>(),
    ),
    (
        vk::StructureType::DEVICE_GROUP_SWAPCHAIN_CREATE_INFO_KHR,
        size_of::<vk::DeviceGroupSwapchainCreateInfoKHR<'static>>(),
    ),
];
const UNKNOWN: vk::StructureType = vk::StructureType::from_raw(1_999_999_000);

/// A chain the test owns: each node a zeroed buffer with its sType, filled
/// with a pattern, linked in order.
struct Chain {
    nodes: Vec<Box<[u64]>>,
}

impl Chain {
    fn new(types: &[vk::StructureType]) -> Self {
        let mut nodes: Vec<Box<[u64]>> = types
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let size = KNOWN.iter().find(|k| k.0 == t).map_or(64, |k| k.1);
                let mut b =
                    vec![0x5a5a_0000_0000_0000 | i as u64; size.div_ceil(8)].into_boxed_slice();
                // SAFETY: the buffer holds at least a BaseOutStructure.
                unsafe { (*b.as_mut_ptr().cast::<vk::BaseOutStructure<'_>>()).s_type = t };
                b
            })
            .collect();
        for i in (0..nodes.len()).rev() {
            let next = nodes
                .get(i + 1)
                .map_or(std::ptr::null_mut(), |n| n.as_ptr().cast_mut());
            // SAFETY: as above.
            unsafe {
                (*nodes[i].as_mut_ptr().cast::<vk::BaseOutStructure<'_>>()).p_next = next.cast()
            };
        }
        Chain { nodes }
    }

    fn head(&self) -> *const c_void {
        self.nodes
            .first()
            .map_or(std::ptr::null(), |n| n.as_ptr().cast())
    }
}

/// The sTypes and addresses of the chain at `p`.
fn walk(mut p: *const c_void) -> Vec<(vk::StructureType, *const c_void)> {
    let mut out = Vec::new();
    while !p.is_null() {
        // SAFETY: a chain built by `Chain` or `Edited` from one.
        let node = unsafe { &*p.cast::<vk::BaseInStructure<'_>>() };
        out.push((node.s_type, p));
        p = node.p_next.cast();
    }
    out
}

fn structure_type() -> impl Strategy<Value = vk::StructureType> {
    prop_oneof![
        4 => proptest::sample::select(KNOWN.map(|k| k.0).to_vec()),
        1 => Just(UNKNOWN),
    ]
}

proptest! {
    #[test]
    fn find_finds_the_first_of_its_type(types in proptest::collection::vec(structure_type(), 0..8)) {
        let chain = Chain::new(&types);
        // SAFETY: the test's own valid chain, alive for the call.
        let found = unsafe { find::<vk::ImageFormatListCreateInfo<'_>>(chain.head()) };
        let first = types.iter().position(|&t| t == vk::StructureType::IMAGE_FORMAT_LIST_CREATE_INFO);
        prop_assert_eq!(
            found.map(|f| (f as *const vk::ImageFormatListCreateInfo<'_>).cast::<c_void>()),
            first.map(|i| chain.nodes[i].as_ptr().cast::<c_void>())
        );
    }

    #[test]
    fn without_passes_on_exactly_the_rest(
        types in proptest::collection::vec(structure_type(), 0..8),
        leave_out in proptest::collection::vec(structure_type(), 0..3),
    ) {
        let chain = Chain::new(&types);
        let before: Vec<Box<[u64]>> = chain.nodes.clone();
        // SAFETY: the test's own valid chain, alive while `edited` is used.
        let edited = unsafe { Edited::without(chain.head(), &leave_out) };
        prop_assert!(chain.nodes == before, "the application's chain was written to");
        let last_out = types.iter().rposition(|t| leave_out.contains(t));
        let must_copy = &types[..last_out.unwrap_or(0)];
        let copied_unknown = must_copy.iter().any(|&t| t == UNKNOWN && !leave_out.contains(&t));
        match edited {
            Err(UnknownStructure(t)) => {
                prop_assert!(copied_unknown);
                prop_assert_eq!(t, UNKNOWN);
            }
            Ok(edited) => {
                prop_assert!(!copied_unknown);
                let got = walk(edited.head());
                let kept: Vec<vk::StructureType> = types.iter().copied().filter(|t| !leave_out.contains(t)).collect();
                prop_assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), kept);
                // What follows the last structure left out is the
                // application's own, not a copy.
                let tail = last_out.map_or(0, |i| i + 1);
                let theirs: Vec<*const c_void> = chain.nodes[tail..].iter().map(|n| n.as_ptr().cast()).collect();
                let ours: Vec<*const c_void> = got[got.len() - theirs.len()..].iter().map(|g| g.1).collect();
                prop_assert_eq!(ours, theirs);
            }
        }
    }
}
