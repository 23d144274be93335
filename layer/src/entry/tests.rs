//! The registry's commands that can carry a handle the layer makes, held
//! against what the layer serves and refuses.

use std::ffi::CString;

use super::lookup;
use crate::vulkan::extensions::refused;
use crate::vulkan::registry::{Carries, CARRIERS};

/// The kinds of handle the layer makes (swapchains, and the displays, modes
/// and plane surfaces of the display platform; any handle as a u64 may be
/// one of them).
const MADE: Carries = Carries::SWAPCHAIN
    .union(Carries::DISPLAY)
    .union(Carries::DISPLAY_MODE)
    .union(Carries::SURFACE)
    .union(Carries::OBJECT_HANDLE);

/// Commands the registry's rules count, which cannot carry a handle of the
/// layer's: their only u64 object is a `VkDebugUtilsObjectNameInfoEXT`
/// chained to a pipeline's shader stage, which names that stage's shader
/// (the spec: "associates a static name with that particular shader"),
/// never an object.
const SHADER_STAGE_NAMES: [&str; 6] = [
    "vkCreateGraphicsPipelines",
    "vkCreateComputePipelines",
    "vkCreateRayTracingPipelinesKHR",
    "vkCreateRayTracingPipelinesNV",
    "vkCreateExecutionGraphPipelinesAMDX",
    "vkGetPipelineIndirectMemoryRequirementsNV",
];

#[test]
fn every_command_that_can_carry_a_layer_handle_is_served_or_refused() {
    let mut unsafe_commands = Vec::new();
    let mut served = 0;
    let mut hidden = 0;
    for c in CARRIERS.iter().filter(|c| c.carries.intersects(MADE)) {
        if lookup(c.command.as_bytes()).is_some() {
            served += 1;
            continue;
        }
        let all_refused = !c.from.is_empty()
            && c.from
                .iter()
                .all(|e| CString::new(*e).is_ok_and(|e| refused(&e).is_some()));
        if all_refused {
            hidden += 1;
            continue;
        }
        if !SHADER_STAGE_NAMES.contains(&c.command) {
            unsafe_commands.push(format!("{} (from {:?})", c.command, c.from));
        }
    }
    assert!(
        unsafe_commands.is_empty(),
        "registry commands that can carry a layer handle to the driver, neither served nor refused: {unsafe_commands:#?}"
    );
    // The derived table is not empty, and both ways are in use.
    assert!(
        served >= 25 && hidden >= 8,
        "{served} served, {hidden} refused"
    );
}

#[test]
fn shader_stage_names_are_the_only_exemptions_and_still_carriers() {
    for name in SHADER_STAGE_NAMES {
        let c = CARRIERS
            .iter()
            .find(|c| c.command == name)
            .unwrap_or_else(|| {
                panic!("{name} is no longer a carrier: drop it from the exemptions")
            });
        assert_eq!(c.carries, Carries::OBJECT_HANDLE, "{name} carries more now");
    }
}
