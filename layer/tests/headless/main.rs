//! The layer's headless swapchains end to end, in the test guest: vkmark
//! in each present mode, frame capture (vkmark's cube against the `cpu`
//! mode; every presented frame, with its contents), acquire waiting for the
//! consumer, one write-import per present, validation above and below the
//! layer, acquire timeouts, leaks over many swapchains and presents, and
//! the modern swapchain extensions (present ids and waits, swapchain
//! maintenance, display timing). The display platform (`VK_KHR_display` on
//! vkms), which like headless needs no window system, is tested here too
//! (`display_tests.rs`).
//!
//! Each test decides when it runs whether this machine has what it needs
//! (lavapipe with dma-buf export and SYNC_FD, which needs udmabuf; vkmark;
//! vgem; the validation layer); one that cannot run is reported ignored
//! with the reason, or failed inside the guest (`SYNCFILE_WSI_VM=1`).
//!
//! `SYNCFILE_TEST_WSI=mesa` runs the same tests against Mesa's own headless
//! WSI (the layer disabled), to check the tests' own expectations; the
//! layer-only checks are skipped then.

mod child;
mod client;
#[path = "../common/mod.rs"]
mod common;
mod core;
mod create_infos;
mod deferred;
mod display;
mod display_tests;
mod exhaustion;
mod faults;
mod fds;
mod held;
mod host_memory;
mod lifetimes;
mod messenger;
mod modern;
mod modern_tests;
mod objects;
mod record;
#[path = "../common/seccomp.rs"]
mod seccomp;
mod soak;
mod support;
mod tests;
mod vkmark;
mod x11;
mod x11_tests;

use std::process::ExitCode;

use common::Test;
use support::Machine;

/// Where the layer's statistics (the schema in `layer/src/stats.rs`) keep
/// the counters these tests read.
pub mod stats_keys {
    /// Images the layer took in `vkQueuePresentKHR`.
    pub const PRESENTED: &[&str] = &["frames", "presented"];
    /// Swapchains the layer made (owned, not passed to the driver).
    pub const SWAPCHAINS: &[&str] = &["swapchains", "created"];
    /// `DMA_BUF_IOCTL_IMPORT_SYNC_FILE` with WRITE, one per present.
    pub const WRITE_IMPORTS: &[&str] = &["sync_files", "imported", "into_dma_bufs_write"];
    /// PNG files written for `SYNCFILE_WSI_CAPTURE`.
    pub const CAPTURED: &[&str] = &["frames", "captured"];
    /// Swapchains made in the fallback `SYNCFILE_WSI_SYNC=cpu` forces.
    pub const FORCED_CPU: &[&str] = &["fallbacks", "forced_cpu"];
}

const TESTS: &[(&str, Test<Machine>)] = &[
    ("vkmark::each_present_mode", vkmark::each_present_mode),
    (
        "capture::first_cube_frame_matches_cpu_mode",
        vkmark::capture_matches_cpu_mode,
    ),
    (
        "capture::every_presented_frame",
        vkmark::capture_every_presented_frame,
    ),
    (
        "capture::frames_are_whole_cubes",
        vkmark::captured_frames_are_whole_cubes,
    ),
    (
        "sync::acquire_waits_for_the_consumer",
        tests::acquire_waits_for_the_consumer,
    ),
    (
        "sync::one_write_import_per_present",
        tests::one_write_import_per_present,
    ),
    (
        "validation::layer_below_validation",
        tests::validation_below,
    ),
    (
        "validation::layer_above_validation",
        tests::validation_above,
    ),
    ("acquire::timeouts", tests::acquire_timeouts),
    ("leaks::swapchains_and_presents", tests::no_leaks),
    ("leaks::soak_every_mode_and_path", soak::every_mode_and_path),
    (
        "integrity::objects_with_validation_below",
        core::objects_with_validation_below,
    ),
    (
        "integrity::objects_under_valgrind",
        core::objects_under_valgrind,
    ),
    (
        "ownership::refused_extension_gets_the_drivers_answers",
        core::refused_extension_gets_the_drivers_answers,
    ),
    (
        "lifetimes::device_destroyed_with_a_live_swapchain",
        core::device_destroyed_with_a_live_swapchain,
    ),
    (
        "lifetimes::instance_destroyed_with_a_live_surface",
        core::instance_destroyed_with_a_live_surface,
    ),
    ("lifetimes::fork_without_exec", core::fork_without_exec),
    (
        "modern::with_validation_below",
        modern_tests::with_validation_below,
    ),
    (
        "modern::with_validation_above",
        modern_tests::with_validation_above,
    ),
    (
        "modern::present_id2_and_wait2",
        modern_tests::present_id2_and_wait2,
    ),
    (
        "lifetimes::destroy_while_a_render_never_finishes",
        core::destroy_while_a_render_never_finishes,
    ),
    (
        "display::vkcube_each_present_mode",
        display_tests::vkcube_each_present_mode,
    ),
    (
        "display::vkmark_each_present_mode",
        display_tests::vkmark_each_present_mode,
    ),
    (
        "display::sync_modes_take_their_paths",
        display_tests::sync_modes_take_their_paths,
    ),
    (
        "display::implicit_fence_holds_the_flip",
        display_tests::implicit_fence_holds_the_flip,
    ),
    (
        "display::explicit_in_fence_replaces_the_implicit",
        display_tests::explicit_in_fence_replaces_the_implicit,
    ),
    (
        "display::read_back_shows_the_cube",
        display_tests::read_back_shows_the_cube,
    ),
    ("display::validation_below", display_tests::validation_below),
    ("display::validation_above", display_tests::validation_above),
    (
        "display::another_master_takes_the_display",
        display_tests::another_master_takes_the_display,
    ),
    (
        "display::killed_application_releases_the_display",
        display_tests::killed_application_releases_the_display,
    ),
    (
        "x11::vkcube_each_present_mode",
        x11_tests::vkcube_each_present_mode,
    ),
    (
        "x11::vkmark_each_present_mode",
        x11_tests::vkmark_each_present_mode,
    ),
    (
        "x11::window_shows_the_last_frame",
        x11_tests::window_shows_the_last_frame,
    ),
    ("x11::full_screen_flips", x11_tests::full_screen_flips),
    (
        "x11::pending_fence_holds_the_frame",
        x11_tests::pending_fence_holds_the_frame,
    ),
    (
        "x11::killed_server_is_lost",
        x11_tests::killed_server_is_lost,
    ),
    (
        "x11::resize_is_out_of_date",
        x11_tests::resize_is_out_of_date,
    ),
    ("x11::validation_below", x11_tests::validation_below),
    ("x11::validation_above", x11_tests::validation_above),
    ("x11::xvfb_passes_through", x11_tests::xvfb_passes_through),
    (
        "faults::no_ioctls_leave_the_driver_its_wsi",
        faults::no_ioctls_leave_the_driver_its_wsi,
    ),
    (
        "faults::import_refused_takes_the_fallback",
        faults::import_refused_takes_the_fallback,
    ),
    (
        "faults::no_semaphore_export_takes_the_fallback",
        faults::no_semaphore_export_takes_the_fallback,
    ),
    ("faults::bad_create_infos", create_infos::bad_create_infos),
    (
        "faults::descriptors_run_out",
        exhaustion::descriptors_run_out,
    ),
    (
        "faults::export_refused_at_run_time",
        faults::export_refused_at_run_time,
    ),
    (
        "faults::allocation_callbacks",
        host_memory::callbacks_honoured_and_failures_clean,
    ),
];

fn main() -> ExitCode {
    common::main(TESTS, Machine::probe, child::run)
}
