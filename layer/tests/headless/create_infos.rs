//! Create infos no valid application passes, straight into
//! `vkCreateSwapchainKHR` on a surface the layer owns: extents of zero and
//! of `u32::MAX`, no images and `u32::MAX` of them, no layers, no usage,
//! modes, formats, flags, transforms and alphas that do not exist, and
//! `pNext` chains with structures from a future registry. Each must get a
//! result — an error where the input is out of range — and the process
//! must survive them all, with no panic caught in the layer.

use std::ffi::c_void;

use ash::vk;
use libtest_mimic::Completion;
use serde_json::{json, Map, Value};

use crate::client::Vk;
use crate::common::child::Result as ChildResult;
use crate::common::{check, child_json, stat, Outcome};
use crate::support::{baseline, run_ok_within, Machine, Scratch};

/// A structure type no registry has (yet).
const FUTURE: vk::StructureType = vk::StructureType::from_raw(1_999_999_000);

/// The cases that pass a valid create info with something a newer
/// application might chain; the rest must fail.
const MAY_SUCCEED: [&str; 2] = ["future_structure", "future_structure_before_a_known_one"];

pub fn bad_create_infos(m: &Machine) -> Outcome {
    if let Some(skip) = m.lacks(&[&m.vulkan]) {
        return skip;
    }
    if baseline() {
        return Ok(Completion::ignored_with(
            "invalid usage: Mesa's WSI need not survive it, the layer does",
        ));
    }
    let s = Scratch::new("create-infos")?;
    let mut c = s.child("bad_create_infos")?;
    let out = run_ok_within(&mut c, std::time::Duration::from_secs(300))?;
    let r = child_json(&out)?;
    let cases = r.as_object().ok_or("no cases")?;
    check(cases.len() == 16, || format!("cases missing: {r}"))?;
    for (name, result) in cases {
        let result = result.as_str().unwrap_or_default();
        if !MAY_SUCCEED.contains(&name.as_str()) {
            check(result != "SUCCESS", || {
                format!("{name}: a swapchain was made: {r}")
            })?;
        }
    }
    let stats = s.stats()?;
    check(stat(&stats, &["panics_caught"]) == 0, || {
        format!("the layer caught panics: {stats}")
    })?;
    println!("bad create infos: {r}");
    Ok(Completion::Completed)
}

/// The child: each case's `VkResult`, by name.
pub fn child() -> ChildResult<Value> {
    let vk = Vk::new(false)?;
    // SAFETY: queries of the live surface.
    let caps = unsafe {
        vk.surface_fn
            .get_physical_device_surface_capabilities(vk.pd, vk.surface)?
    };
    let good = vk::SwapchainCreateInfoKHR::default()
        .surface(vk.surface)
        .min_image_count(caps.min_image_count)
        .image_format(vk::Format::B8G8R8A8_UNORM)
        .image_color_space(vk::ColorSpaceKHR::SRGB_NONLINEAR)
        .image_extent(vk::Extent2D {
            width: 32,
            height: 32,
        })
        .image_array_layers(1)
        .image_usage(vk::ImageUsageFlags::COLOR_ATTACHMENT)
        .pre_transform(vk::SurfaceTransformFlagsKHR::IDENTITY)
        .composite_alpha(vk::CompositeAlphaFlagsKHR::OPAQUE)
        .present_mode(vk::PresentModeKHR::FIFO)
        .clipped(true);
    let extent = |width, height| vk::Extent2D { width, height };
    // Future structures: a header and room for what they might carry; the
    // second one is linked to a known structure.
    let mut alone = [0u64; 8];
    let mut linked = [0u64; 8];
    let formats = [vk::Format::B8G8R8A8_UNORM];
    let mut list = vk::ImageFormatListCreateInfo::default().view_formats(&formats);
    // SAFETY: each array holds a BaseOutStructure and more; `list`
    // outlives the calls.
    unsafe {
        (*alone.as_mut_ptr().cast::<vk::BaseOutStructure<'_>>()).s_type = FUTURE;
        let head = &mut *linked.as_mut_ptr().cast::<vk::BaseOutStructure<'_>>();
        head.s_type = FUTURE;
        head.p_next = (&mut list as *mut vk::ImageFormatListCreateInfo<'_>).cast();
    }
    let mut cases: Vec<(&str, vk::SwapchainCreateInfoKHR<'_>)> = vec![
        ("zero_extent", good.image_extent(extent(0, 0))),
        ("huge_extent", good.image_extent(extent(u32::MAX, u32::MAX))),
        ("tall_extent", good.image_extent(extent(1, 1 << 20))),
        ("no_images", good.min_image_count(0)),
        ("u32_max_images", good.min_image_count(u32::MAX)),
        ("no_layers", good.image_array_layers(0)),
        ("u32_max_layers", good.image_array_layers(u32::MAX)),
        ("no_usage", good.image_usage(vk::ImageUsageFlags::empty())),
        (
            "no_such_mode",
            good.present_mode(vk::PresentModeKHR::from_raw(0x7fff_fffe)),
        ),
        ("undefined_format", good.image_format(vk::Format::UNDEFINED)),
        (
            "no_such_colour_space",
            good.image_color_space(vk::ColorSpaceKHR::from_raw(0x7fff_fffe)),
        ),
        (
            "no_such_flag",
            good.flags(vk::SwapchainCreateFlagsKHR::from_raw(0x4000_0000)),
        ),
        (
            "no_transform",
            good.pre_transform(vk::SurfaceTransformFlagsKHR::empty()),
        ),
        (
            "no_alpha",
            good.composite_alpha(vk::CompositeAlphaFlagsKHR::empty()),
        ),
    ];
    let mut with_future = good;
    with_future.p_next = alone.as_ptr().cast::<c_void>();
    cases.push(("future_structure", with_future));
    with_future.p_next = linked.as_ptr().cast::<c_void>();
    cases.push(("future_structure_before_a_known_one", with_future));
    let mut results = Map::new();
    for (name, info) in cases {
        // SAFETY: a create info whose pointers are valid; its values are
        // the test's subject.
        let r = unsafe { vk.swapchain_fn.create_swapchain(&info, None) };
        let result = match r {
            Ok(swapchain) => {
                // SAFETY: the swapchain just made, unused.
                unsafe { vk.swapchain_fn.destroy_swapchain(swapchain, None) };
                vk::Result::SUCCESS
            }
            Err(e) => e,
        };
        results.insert(name.into(), json!(format!("{result:?}")));
    }
    Ok(Value::Object(results))
}
