//! Statistics, written as one JSON object to the sink `SYNCFILE_WSI_STATS`
//! names: each time a swapchain the layer owns is destroyed, and when the
//! layer is unloaded or the process exits. A file sink is rewritten each
//! time (it always holds the latest totals); `stderr` gets one line each
//! time, the last line being the final one.
//!
//! Everything on the frame path is a relaxed atomic add into a static
//! array: no allocation, no lock, no log line. The counters are
//! process-wide; the sink and the settings reported with them are those of
//! the latest instance that asked for statistics.
//!
//! # Schema
//!
//! Key names are stable; new keys may be added. All numbers are integers.
//!
//! ```text
//! layer, version                  the layer's name and crate version
//! event                           "swapchain_destroyed" or "exit": what wrote this
//! settings.platforms, .sync       the settings in force
//! instances.{created,destroyed}
//! devices.{created,destroyed,owned,passed_through}
//! queues                          distinct queues the application retrieved
//! panics_caught, settings_warnings
//! surfaces.{created,owned}        owned: surfaces of a platform the layer serves
//! swapchains.created              swapchains the layer made (owned ones)
//! swapchains.passed_through       vkCreateSwapchainKHR calls sent to the driver
//! swapchains.{destroyed,retired,failed}
//! swapchains.destroyed_unfinished  destroyed while a present still ran: images freed
//!                                  later (after DESTROY_WAIT)
//! swapchains.leaked                left alive at vkDestroyDevice (destroyed then)
//! surfaces.leaked                  left alive at vkDestroyInstance (forgotten then)
//! frames.presented                images the layer took in vkQueuePresentKHR
//! frames.displayed                images the backend put on its (virtual) screen
//! frames.replaced                 MAILBOX: queued images replaced before display
//! frames.captured                 PNG files written (SYNCFILE_WSI_CAPTURE)
//! frames.read_back                PNG files of what a display showed, read back
//!                                 through its writeback connector (capture on)
//! frames.out_of_date              presents answered VK_ERROR_OUT_OF_DATE_KHR
//! acquires.{succeeded,not_ready,timeout,out_of_date}
//! acquires.idle                   the image had no pending access: an already
//!                                 signalled payload was imported, nothing exported
//! sync_files.exported.from_semaphores     vkGetSemaphoreFdKHR(SYNC_FD) that gave a file
//! sync_files.exported.already_signalled   ... that gave -1 (nothing to import)
//! sync_files.exported.from_dma_bufs       DMA_BUF_IOCTL_EXPORT_SYNC_FILE (acquire)
//! sync_files.imported.into_dma_bufs_write DMA_BUF_IOCTL_IMPORT_SYNC_FILE, WRITE (present)
//! sync_files.imported.into_semaphores     vkImportSemaphoreFdKHR(SYNC_FD) (acquire)
//! sync_files.imported.into_fences         vkImportFenceFdKHR(SYNC_FD) (acquire)
//! sync_files.imported.into_dma_bufs_read  DMA_BUF_IOCTL_IMPORT_SYNC_FILE, READ: a
//!                                         consumer's explicit release fence
//! wayland.surfaces_without_dma_buf       Wayland surfaces left to the driver's WSI
//! wayland.commits.{explicit,implicit}     commits with and without explicit-sync fences
//! wayland.lost                            Wayland swapchains and surfaces whose
//!                                         connection failed
//! wayland.suboptimal                      swapchains made suboptimal by a change in
//!                                         the compositor's surface dma-buf feedback
//! wayland.frame_callback_timeouts         FIFO presents that committed after waiting
//!                                         FIFO_WAIT for a frame callback in vain
//! display.commits.{implicit,in_fence}   scan-out commits that relied on the dma-buf's
//!                                         write fence, and those that passed the render's
//!                                         sync_file as the plane's IN_FENCE_FD
//! display.mode_sets                       commits that lit a display up (a swapchain's first)
//! display.async_flips                     IMMEDIATE commits flipped without waiting for vblank
//! display.lost                            display swapchains whose output was taken or unplugged
//! x11.surfaces_without_dri3             X11 windows left to the driver's WSI
//! x11.pixmaps                             DRI3 pixmaps made from swapchain images
//! x11.presents.{fenced,unfenced}          PresentPixmaps with a wait fence the layer's
//!                                         thread triggered when the image's writers were
//!                                         done, and those whose render was complete
//! x11.completes.{copy,flip,skip}          frames the server reported shown by a copy,
//!                                         by a flip, or skipped
//! x11.suboptimal                          swapchains made suboptimal (a copy, not a flip)
//! x11.lost                                X11 surfaces and swapchains whose window or
//!                                         server went away
//! ownership.released                      images a present's submission handed to
//!                                         their consumer (queue family ownership)
//! ownership.taken_back                    images taken back before the first
//!                                         submission that waited on their acquire
//! aliases_bound                           images the application made to alias a
//!                                         swapchain image, bound to its memory
//! cpu_waits.<thread>.<cause>.{count,ns}   waits on the CPU that did block, by thread:
//!   app.no_free_image              acquire waited for the backend to release an image
//!   app.dma_buf_poll               acquire polled a dma-buf (kernel without the ioctls)
//!   app.driver_semaphore_export    vkGetSemaphoreFdKHR took over 100 µs (the driver
//!                                  waited for the render; lavapipe does)
//!   app.failed_import              a write-import failed, so present waited instead
//!   app.frame_callback             a Wayland FIFO present waited for the frame callback
//!   app.present_complete           an X11 FIFO present waited for the server to
//!                                  complete the frame before (as Mesa's WSI does)
//!   app.destroy                    destruction waited for the layer's own submissions
//!   app.render_fence               the CPU fallback waited for a render inside
//!                                  vkQueuePresentKHR (Wayland: its requests are the
//!                                  application thread's to make)
//!   present_thread.render_fence    the fallback present thread waited for a render
//!   consumer.implicit_fence        the headless consumer waited for a write fence
//! fallbacks.{no_semaphore_export,no_kernel_ioctls,forced_cpu}
//!                                  swapchains created in each fallback mode
//!                                  (no_kernel_ioctls: or that met a kernel
//!                                  refusing the export at run time)
//! cpu_time_ns.{present,acquire}.{count,p50,p99}
//!                                  the layer's own thread CPU time per call
//!                                  (CLOCK_THREAD_CPUTIME_ID), within 1/8 of the value
//! ```

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

pub use super::histogram::{CpuTimer, ACQUIRE_CPU, PRESENT_CPU};

use super::settings::{Settings, StatsSink};

#[derive(Clone, Copy, Debug)]
pub enum Counter {
    InstancesCreated,
    InstancesDestroyed,
    DevicesCreated,
    DevicesDestroyed,
    /// Devices on which the layer enabled what it needs to own swapchains.
    DevicesOwned,
    /// Devices left entirely to the driver's own WSI.
    DevicesPassedThrough,
    /// Distinct queues the application retrieved.
    Queues,
    PanicsCaught,
    SettingsWarnings,
    SurfacesCreated,
    SurfacesOwned,
    SwapchainsCreated,
    SwapchainsPassedThrough,
    SwapchainsDestroyed,
    SwapchainsRetired,
    SwapchainsFailed,
    /// Swapchains destroyed while a present of theirs still ran (their
    /// images were freed later).
    SwapchainsDestroyedRunning,
    /// Swapchains the application left alive at vkDestroyDevice.
    SwapchainsLeaked,
    /// Images whose memory was bound at their first acquire (deferred
    /// allocation).
    ImagesBoundAtAcquire,
    /// Surfaces the application left alive at vkDestroyInstance.
    SurfacesLeaked,
    FramesPresented,
    FramesDisplayed,
    FramesReplaced,
    FramesCaptured,
    FramesReadBack,
    FramesOutOfDate,
    AcquiresSucceeded,
    AcquiresNotReady,
    AcquiresTimeout,
    AcquiresOutOfDate,
    AcquiresIdle,
    ExportedFromSemaphores,
    ExportedAlreadySignalled,
    ExportedFromDmaBufs,
    ImportedIntoDmaBufsWrite,
    ImportedIntoSemaphores,
    ImportedIntoFences,
    /// Consumers' release fences added to a dma-buf as read fences.
    ImportedIntoDmaBufsRead,
    /// Wayland surfaces left to the driver: no dma-buf formats offered.
    WaylandNoDmaBuf,
    WaylandCommitsExplicit,
    WaylandCommitsImplicit,
    /// Wayland swapchains and surfaces whose compositor connection failed.
    WaylandLost,
    /// Wayland swapchains not made: the compositor refused their dma-bufs.
    WaylandRefused,
    /// Wayland swapchains whose surface feedback changed their format's
    /// preferred modifiers.
    WaylandSuboptimal,
    /// FIFO presents that stopped waiting for a frame callback.
    WaylandFrameTimeouts,
    DisplayCommitsImplicit,
    DisplayCommitsInFence,
    DisplayModeSets,
    DisplayAsyncFlips,
    /// Display swapchains whose output another master took or that was
    /// unplugged.
    DisplayLost,
    /// X11 windows left to the driver: no DRI3 1.2, Present 1.2 or SYNC 3.1.
    X11NoDri3,
    /// Pixmaps made from swapchain images (`PixmapFromBuffers`).
    X11Pixmaps,
    /// `PresentPixmap`s with a wait fence the layer's thread triggered
    /// once the image's writers were done, and those without.
    X11PresentsFenced,
    X11PresentsUnfenced,
    /// Frames the server reported shown by a copy, by a flip, or skipped.
    X11Copies,
    X11Flips,
    X11Skipped,
    /// X11 swapchains made suboptimal by a copy where a flip was possible.
    X11Suboptimal,
    /// X11 surfaces and swapchains whose window or server went away.
    X11Lost,
    /// Images handed to their consumer by a present's ownership transfer.
    OwnershipReleased,
    /// Images taken back before a submission that waited on their acquire.
    OwnershipTakenBack,
    /// Images made to alias a swapchain image, and bound to its memory.
    AliasesBound,
}

const COUNTERS: usize = Counter::AliasesBound as usize + 1;

static VALUES: [AtomicU64; COUNTERS] = [const { AtomicU64::new(0) }; COUNTERS];

/// Why a thread of the layer blocked on the CPU.
#[derive(Clone, Copy, Debug)]
pub enum Wait {
    NoFreeImage,
    DmaBufPoll,
    DriverSemaphoreExport,
    FailedImport,
    Destroy,
    RenderFence,
    ImplicitFence,
    AppRenderFence,
    FrameCallback,
    /// An X11 FIFO present waited for the server to complete the one before.
    PresentComplete,
}

impl Wait {
    const ALL: [Wait; 10] = [
        Wait::NoFreeImage,
        Wait::DmaBufPoll,
        Wait::DriverSemaphoreExport,
        Wait::FailedImport,
        Wait::Destroy,
        Wait::RenderFence,
        Wait::ImplicitFence,
        Wait::AppRenderFence,
        Wait::FrameCallback,
        Wait::PresentComplete,
    ];

    /// (thread, cause) as the JSON names them.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Wait::NoFreeImage => ("app", "no_free_image"),
            Wait::DmaBufPoll => ("app", "dma_buf_poll"),
            Wait::DriverSemaphoreExport => ("app", "driver_semaphore_export"),
            Wait::FailedImport => ("app", "failed_import"),
            Wait::Destroy => ("app", "destroy"),
            Wait::RenderFence => ("present_thread", "render_fence"),
            Wait::ImplicitFence => ("consumer", "implicit_fence"),
            Wait::AppRenderFence => ("app", "render_fence"),
            Wait::FrameCallback => ("app", "frame_callback"),
            Wait::PresentComplete => ("app", "present_complete"),
        }
    }
}

static WAITS: [[AtomicU64; 2]; Wait::ALL.len()] =
    [const { [AtomicU64::new(0), AtomicU64::new(0)] }; Wait::ALL.len()];

/// A way the layer degrades when the driver or kernel lacks something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// The driver cannot export a semaphore as a sync_file.
    NoSemaphoreExport,
    /// The kernel lacks the dma-buf sync_file ioctls.
    NoKernelIoctls,
    /// `SYNCFILE_WSI_SYNC=cpu` asked for the CPU path.
    ForcedCpu,
}

impl Fallback {
    const ALL: [Fallback; 3] = [
        Fallback::NoSemaphoreExport,
        Fallback::NoKernelIoctls,
        Fallback::ForcedCpu,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fallback::NoSemaphoreExport => "no_semaphore_export",
            Fallback::NoKernelIoctls => "no_kernel_ioctls",
            Fallback::ForcedCpu => "forced_cpu",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Fallback::NoSemaphoreExport => {
                "the driver cannot export a semaphore as a sync_file: presents wait for rendering in a present thread"
            }
            Fallback::NoKernelIoctls => {
                "the kernel lacks the dma-buf sync_file ioctls (Linux 6.0): acquires poll the dma-buf, and presents wait for rendering in a present thread unless the consumer takes the render's fence with the frame"
            }
            Fallback::ForcedCpu => {
                "SYNCFILE_WSI_SYNC=cpu: presents wait for rendering in a present thread, acquires poll the dma-buf"
            }
        }
    }
}

static FALLBACKS: [AtomicU64; Fallback::ALL.len()] =
    [const { AtomicU64::new(0) }; Fallback::ALL.len()];
static FALLBACKS_LOGGED: [AtomicBool; Fallback::ALL.len()] =
    [const { AtomicBool::new(false) }; Fallback::ALL.len()];

/// Where and with which settings to report, once an instance asked.
static SINK: Mutex<Option<Settings>> = Mutex::new(None);

/// The process that asked: a child forked without exec inherits the
/// counters and the sink, but the file is its parent's to write. Read
/// before the sink's lock, which another thread of the parent may have
/// held when it forked.
static OWNER: AtomicI32 = AtomicI32::new(0);

#[inline(always)]
pub fn add(c: Counter, n: u64) {
    VALUES[c as usize].fetch_add(n, Ordering::Relaxed);
}

#[inline(always)]
pub fn count(c: Counter) {
    add(c, 1);
}

fn get(c: Counter) -> u64 {
    VALUES[c as usize].load(Ordering::Relaxed)
}

/// Records a CPU wait that blocked for `waited`.
#[inline]
pub fn waited(w: Wait, waited: Duration) {
    let slot = &WAITS[w as usize];
    slot[0].fetch_add(1, Ordering::Relaxed);
    slot[1].fetch_add(
        u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

/// Counts a swapchain created in fallback mode `f`, and logs the first.
pub fn fallback(f: Fallback) {
    FALLBACKS[f as usize].fetch_add(1, Ordering::Relaxed);
    if !FALLBACKS_LOGGED[f as usize].swap(true, Ordering::Relaxed) {
        tracing::warn!("fallback: {}", f.describe());
    }
}

/// Remembers the sink of an instance's settings, if it names one.
pub fn configure(settings: &Settings) {
    if settings.stats.is_some() {
        *SINK.lock().unwrap_or_else(|e| e.into_inner()) = Some(settings.clone());
        OWNER.store(
            rustix::process::getpid().as_raw_nonzero().get(),
            Ordering::Relaxed,
        );
    }
}

/// What made the statistics be written.
#[derive(Clone, Copy, Debug)]
pub enum Event {
    SwapchainDestroyed,
    Exit,
}

/// The statistics as JSON, with the settings they were gathered under.
pub fn snapshot(settings: &Settings, event: Event) -> Value {
    use Counter::*;
    let mut waits = json!({ "app": {}, "present_thread": {}, "consumer": {} });
    for w in Wait::ALL {
        let (thread, cause) = w.names();
        let slot = &WAITS[w as usize];
        waits[thread][cause] = json!({
            "count": slot[0].load(Ordering::Relaxed),
            "ns": slot[1].load(Ordering::Relaxed),
        });
    }
    let mut fallbacks = json!({});
    for f in Fallback::ALL {
        fallbacks[f.name()] = json!(FALLBACKS[f as usize].load(Ordering::Relaxed));
    }
    json!({
        "layer": super::manifest::LAYER_NAME,
        "version": env!("CARGO_PKG_VERSION"),
        "event": match event { Event::SwapchainDestroyed => "swapchain_destroyed", Event::Exit => "exit" },
        "settings": {
            "platforms": settings.platforms.to_string(),
            "sync": settings.sync.name(),
        },
        "instances": { "created": get(InstancesCreated), "destroyed": get(InstancesDestroyed) },
        "devices": {
            "created": get(DevicesCreated),
            "destroyed": get(DevicesDestroyed),
            "owned": get(DevicesOwned),
            "passed_through": get(DevicesPassedThrough),
        },
        "queues": get(Queues),
        "panics_caught": get(PanicsCaught),
        "settings_warnings": get(SettingsWarnings),
        "surfaces": {
            "created": get(SurfacesCreated),
            "owned": get(SurfacesOwned),
            "leaked": get(SurfacesLeaked),
        },
        "swapchains": {
            "created": get(SwapchainsCreated),
            "passed_through": get(SwapchainsPassedThrough),
            "destroyed": get(SwapchainsDestroyed),
            "retired": get(SwapchainsRetired),
            "failed": get(SwapchainsFailed),
            "destroyed_unfinished": get(SwapchainsDestroyedRunning),
            "leaked": get(SwapchainsLeaked),
            "images_bound_at_acquire": get(ImagesBoundAtAcquire),
        },
        "frames": {
            "presented": get(FramesPresented),
            "displayed": get(FramesDisplayed),
            "replaced": get(FramesReplaced),
            "captured": get(FramesCaptured),
            "read_back": get(FramesReadBack),
            "out_of_date": get(FramesOutOfDate),
        },
        "acquires": {
            "succeeded": get(AcquiresSucceeded),
            "not_ready": get(AcquiresNotReady),
            "timeout": get(AcquiresTimeout),
            "out_of_date": get(AcquiresOutOfDate),
            "idle": get(AcquiresIdle),
        },
        "sync_files": {
            "exported": {
                "from_semaphores": get(ExportedFromSemaphores),
                "already_signalled": get(ExportedAlreadySignalled),
                "from_dma_bufs": get(ExportedFromDmaBufs),
            },
            "imported": {
                "into_dma_bufs_write": get(ImportedIntoDmaBufsWrite),
                "into_semaphores": get(ImportedIntoSemaphores),
                "into_fences": get(ImportedIntoFences),
                "into_dma_bufs_read": get(ImportedIntoDmaBufsRead),
            },
        },
        "wayland": {
            "surfaces_without_dma_buf": get(WaylandNoDmaBuf),
            "commits": { "explicit": get(WaylandCommitsExplicit), "implicit": get(WaylandCommitsImplicit) },
            "lost": get(WaylandLost),
            "refused_buffers": get(WaylandRefused),
            "suboptimal": get(WaylandSuboptimal),
            "frame_callback_timeouts": get(WaylandFrameTimeouts),
        },
        "display": {
            "commits": { "implicit": get(DisplayCommitsImplicit), "in_fence": get(DisplayCommitsInFence) },
            "mode_sets": get(DisplayModeSets),
            "async_flips": get(DisplayAsyncFlips),
            "lost": get(DisplayLost),
        },
        "x11": {
            "surfaces_without_dri3": get(X11NoDri3),
            "pixmaps": get(X11Pixmaps),
            "presents": { "fenced": get(X11PresentsFenced), "unfenced": get(X11PresentsUnfenced) },
            "completes": { "copy": get(X11Copies), "flip": get(X11Flips), "skip": get(X11Skipped) },
            "suboptimal": get(X11Suboptimal),
            "lost": get(X11Lost),
        },
        "ownership": {
            "released": get(OwnershipReleased),
            "taken_back": get(OwnershipTakenBack),
        },
        "aliases_bound": get(AliasesBound),
        "cpu_waits": waits,
        "fallbacks": fallbacks,
        "cpu_time_ns": {
            "present": PRESENT_CPU.summary(),
            "acquire": ACQUIRE_CPU.summary(),
        },
    })
}

/// Writes the statistics to the configured sink, if any.
pub fn write(event: Event) {
    if OWNER.load(Ordering::Relaxed) != rustix::process::getpid().as_raw_nonzero().get() {
        return;
    }
    let Some(settings) = SINK.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
        return;
    };
    let mut text = snapshot(&settings, event).to_string();
    text.push('\n');
    let written = match &settings.stats {
        Some(StatsSink::Stderr) => std::io::stderr().write_all(text.as_bytes()),
        Some(StatsSink::File(path)) => std::fs::write(path, text),
        None => Ok(()),
    };
    if let Err(e) = written {
        tracing::warn!("could not write statistics: {e}");
    }
}

extern "C" fn at_unload() {
    // Nothing may unwind out of a destructor the C runtime calls.
    let _ = std::panic::catch_unwind(|| write(Event::Exit));
}

/// Runs when the loader unloads the layer (its last instance is gone) or
/// when the process exits, whichever comes first.
#[used]
#[link_section = ".fini_array"]
static AT_UNLOAD: extern "C" fn() = at_unload;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_keys() {
        let s = snapshot(&Settings::default(), Event::Exit);
        for path in [
            &["frames", "presented"][..],
            &["sync_files", "imported", "into_dma_bufs_write"],
            &["cpu_waits", "consumer", "implicit_fence", "count"],
            &["fallbacks", "forced_cpu"],
            &["cpu_time_ns", "present", "p99"],
            &["wayland", "commits", "explicit"],
        ] {
            let v = path.iter().fold(&s, |v, k| &v[*k]);
            assert!(v.is_u64(), "{path:?} in {s}");
        }
        assert_eq!(s["event"], "exit");
    }
}
