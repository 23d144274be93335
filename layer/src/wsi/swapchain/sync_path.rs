//! The rules that pick a swapchain's sync path from what the settings, the
//! kernel, the driver and the consumer offer. They are pure so that
//! swapchain creation and `syncfile-wsi doctor` apply the same ones.

use syncfile::probe::Support as Kernel;

use crate::plumbing::settings::SyncMode;
use crate::plumbing::stats::Fallback;

/// Which fallback, if any, a swapchain's sync takes.
pub fn fallback(sync: SyncMode, kernel: Kernel, semaphore_export: bool) -> Option<Fallback> {
    if sync == SyncMode::Cpu {
        return Some(Fallback::ForcedCpu);
    }
    if kernel == Kernel::Unavailable {
        return Some(Fallback::NoKernelIoctls);
    }
    if !semaphore_export {
        return Some(Fallback::NoSemaphoreExport);
    }
    None
}

/// Whether the images' present semaphores are made SYNC_FD-exportable:
/// without the kernel's ioctls the driver's export still serves a consumer
/// that takes the render's fence itself.
pub fn exportable(fallback: Option<Fallback>, semaphore_export: bool) -> bool {
    match fallback {
        None => true,
        Some(Fallback::NoKernelIoctls) => semaphore_export,
        Some(_) => false,
    }
}

/// How a present reaches the consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The render's sync_file becomes the dma-buf's write fence.
    Direct,
    /// The render's sync_file goes with the frame, no kernel ioctls.
    Carried,
    /// A present thread waits for the render.
    Thread,
    /// The present waits for the render on the application's thread.
    Wait,
}

impl Kind {
    /// `carries` and `application_objects` are the presenter's
    /// `carries_render_fence` and `uses_application_objects`.
    pub fn of(
        fallback: Option<Fallback>,
        exportable: bool,
        carries: bool,
        application_objects: bool,
    ) -> Kind {
        match fallback {
            None => Kind::Direct,
            Some(_) if exportable && carries => Kind::Carried,
            Some(_) if application_objects => Kind::Wait,
            Some(_) => Kind::Thread,
        }
    }

    /// As the layer's log line at swapchain creation says it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "sync_file",
            Kind::Carried => "sync_file with the frame, no kernel ioctls",
            Kind::Thread | Kind::Wait => "cpu",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_then_the_kernel_then_the_driver() {
        let on = Kernel::Available;
        let off = Kernel::Unavailable;
        assert_eq!(fallback(SyncMode::Auto, on, true), None);
        assert_eq!(fallback(SyncMode::Cpu, on, true), Some(Fallback::ForcedCpu));
        assert_eq!(
            fallback(SyncMode::Auto, off, false),
            Some(Fallback::NoKernelIoctls)
        );
        assert_eq!(
            fallback(SyncMode::Explicit, on, false),
            Some(Fallback::NoSemaphoreExport)
        );
    }

    #[test]
    fn a_consumer_that_carries_the_fence_needs_no_ioctls() {
        let f = Some(Fallback::NoKernelIoctls);
        assert_eq!(Kind::of(f, exportable(f, true), true, true), Kind::Carried);
        assert_eq!(Kind::of(f, exportable(f, false), true, true), Kind::Wait);
        assert_eq!(Kind::of(f, exportable(f, true), false, false), Kind::Thread);
        let f = Some(Fallback::NoSemaphoreExport);
        assert_eq!(Kind::of(f, exportable(f, true), true, true), Kind::Wait);
        assert_eq!(Kind::of(None, true, false, true), Kind::Direct);
    }
}
