//! The layer through the real Vulkan loader and driver (lavapipe on the
//! host and in the test guest): discovery, transparency, validation,
//! robustness and installation.
//!
//! Each test decides when it runs whether this machine has what it needs;
//! one that cannot run is reported ignored with the reason, or failed inside
//! the guest (`SYNCFILE_WSI_VM=1`), where everything must be present.

mod behaviour;
mod child;
#[path = "../common/mod.rs"]
mod common;
mod discovery;
mod install;
mod support;

use std::process::ExitCode;

use common::Test;
use support::Machine;

const TESTS: &[(&str, Test<Machine>)] = &[
    (
        "discovery::implicit_via_xdg_data_home",
        discovery::implicit_via_xdg_data_home,
    ),
    (
        "discovery::implicit_via_add_implicit_layer_path",
        discovery::implicit_via_add_implicit_layer_path,
    ),
    (
        "discovery::explicit_via_instance_layers",
        discovery::explicit_via_instance_layers,
    ),
    (
        "transparency::vulkaninfo_unchanged",
        behaviour::vulkaninfo_unchanged,
    ),
    (
        "transparency::ash_program_unchanged",
        behaviour::ash_program_unchanged,
    ),
    (
        "device::extensions_enabled_only_where_the_driver_has_them",
        behaviour::extensions_where_the_driver_has_them,
    ),
    (
        "device::platforms_none_passes_through",
        behaviour::platforms_none_passes_through,
    ),
    (
        "device::disable_for_passes_this_executable_through",
        behaviour::disable_for_passes_this_executable_through,
    ),
    (
        "validation::layer_below_validation",
        behaviour::below_validation,
    ),
    (
        "validation::layer_above_validation",
        behaviour::above_validation,
    ),
    (
        "robustness::bad_settings_warn",
        behaviour::bad_settings_warn,
    ),
    ("robustness::injected_panics", behaviour::injected_panics),
    ("install::destdir_round_trip", install::destdir_round_trip),
    ("install::user_round_trip", install::user_round_trip),
];

fn main() -> ExitCode {
    common::main(TESTS, Machine::probe, child::run)
}
