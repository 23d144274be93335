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
//! cpu_waits.<thread>.<cause>.{count,ns}   waits on the CPU that did block, by thread:
//!   app.no_free_image              acquire waited for the backend to release an image
//!   app.dma_buf_poll               acquire polled a dma-buf (kernel without the ioctls)
//!   app.driver_semaphore_export    vkGetSemaphoreFdKHR took over 100 µs (the driver
//!                                  waited for the render; lavapipe does)
//!   app.failed_import              a write-import failed, so present waited instead
//!   app.frame_callback             a Wayland FIFO present waited for the frame callback
//!                                  of the frame before (as Mesa's WSI does)
//!   app.destroy                    destruction waited for the layer's own submissions
//!   app.render_fence               the CPU fallback waited for a render inside
//!                                  vkQueuePresentKHR (Wayland: its requests are the
//!                                  application thread's to make)
//!   present_thread.render_fence    the fallback present thread waited for a render
//!   consumer.implicit_fence        the headless consumer waited for a write fence
//! fallbacks.{no_semaphore_export,no_kernel_ioctls,forced_cpu}
//!                                  swapchains created in each fallback mode
//! cpu_time_ns.{present,acquire}.{count,p50,p99}
//!                                  the layer's own thread CPU time per call
//!                                  (CLOCK_THREAD_CPUTIME_ID), within 1/8 of the value
//! ```

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

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
    /// Surfaces the application left alive at vkDestroyInstance.
    SurfacesLeaked,
    FramesPresented,
    FramesDisplayed,
    FramesReplaced,
    FramesCaptured,
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
    /// Wayland swapchains whose surface feedback changed their format's
    /// preferred modifiers.
    WaylandSuboptimal,
    /// FIFO presents that stopped waiting for a frame callback.
    WaylandFrameTimeouts,
}

const COUNTERS: usize = Counter::WaylandFrameTimeouts as usize + 1;

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
}

impl Wait {
    const ALL: [Wait; 9] = [
        Wait::NoFreeImage,
        Wait::DmaBufPoll,
        Wait::DriverSemaphoreExport,
        Wait::FailedImport,
        Wait::Destroy,
        Wait::RenderFence,
        Wait::ImplicitFence,
        Wait::AppRenderFence,
        Wait::FrameCallback,
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

    fn name(self) -> &'static str {
        match self {
            Fallback::NoSemaphoreExport => "no_semaphore_export",
            Fallback::NoKernelIoctls => "no_kernel_ioctls",
            Fallback::ForcedCpu => "forced_cpu",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Fallback::NoSemaphoreExport => {
                "the driver cannot export a semaphore as a sync_file: presents wait for rendering in a present thread"
            }
            Fallback::NoKernelIoctls => {
                "the kernel lacks the dma-buf sync_file ioctls (Linux 6.0): presents wait for rendering in a present thread, acquires poll the dma-buf"
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

/// Where and with which settings to report, once an instance asked, and
/// the process that asked: a child forked without exec inherits the
/// counters and the sink, but the file is its parent's to write.
static SINK: Mutex<Option<(Settings, rustix::process::Pid)>> = Mutex::new(None);

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

/// A log-linear histogram of nanoseconds: 8 buckets per power of two, so a
/// percentile read from it is within 1/8 of the true value. Recording is one
/// relaxed add.
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
}

const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Powers of two up to 2^47 ns (39 hours).
const BUCKETS: usize = 48 * SUB;

impl Histogram {
    pub const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
        }
    }

    fn index(ns: u64) -> usize {
        if ns < SUB as u64 {
            return ns as usize;
        }
        let e = 63 - ns.leading_zeros();
        let sub = (ns >> (e - SUB_BITS)) as usize & (SUB - 1);
        ((e as usize) * SUB + sub).min(BUCKETS - 1)
    }

    /// The middle of bucket `i`, in ns.
    fn value(i: usize) -> u64 {
        if i < SUB {
            return i as u64;
        }
        let e = (i / SUB) as u32;
        let width = 1u64 << (e - SUB_BITS);
        (1u64 << e) + (i % SUB) as u64 * width + width / 2
    }

    #[inline(always)]
    pub fn record(&self, ns: u64) {
        self.buckets[Self::index(ns)].fetch_add(1, Ordering::Relaxed);
    }

    fn summary(&self) -> Value {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let percentile = |p: u64| -> u64 {
            if total == 0 {
                return 0;
            }
            // The smallest value with at least p% of the samples at or below it.
            let rank = (total * p).div_ceil(100).max(1);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Self::value(i);
                }
            }
            0
        };
        json!({ "count": total, "p50": percentile(50), "p99": percentile(99) })
    }
}

pub static PRESENT_CPU: Histogram = Histogram::new();

pub static ACQUIRE_CPU: Histogram = Histogram::new();

/// This thread's CPU time in ns. `CLOCK_THREAD_CPUTIME_ID` counts only the
/// time the thread ran, so waits inside the driver do not count.
#[inline(always)]
pub fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    (t.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(t.tv_nsec as u64)
}

/// Measures the thread CPU time from its creation to its drop into a
/// histogram.
pub struct CpuTimer {
    start: u64,
    into: &'static Histogram,
}

impl CpuTimer {
    #[inline(always)]
    pub fn start(into: &'static Histogram) -> Self {
        Self {
            start: thread_cpu_ns(),
            into,
        }
    }
}

impl Drop for CpuTimer {
    #[inline(always)]
    fn drop(&mut self) {
        self.into.record(thread_cpu_ns().saturating_sub(self.start));
    }
}

/// Remembers the sink of an instance's settings, if it names one.
pub fn configure(settings: &Settings) {
    if settings.stats.is_some() {
        *SINK.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((settings.clone(), rustix::process::getpid()));
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
        },
        "frames": {
            "presented": get(FramesPresented),
            "displayed": get(FramesDisplayed),
            "replaced": get(FramesReplaced),
            "captured": get(FramesCaptured),
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
            "suboptimal": get(WaylandSuboptimal),
            "frame_callback_timeouts": get(WaylandFrameTimeouts),
        },
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
    let Some((settings, owner)) = SINK.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
        return;
    };
    if owner != rustix::process::getpid() {
        return;
    }
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
    fn buckets_are_within_an_eighth() {
        for ns in [
            0u64,
            1,
            7,
            8,
            9,
            15,
            16,
            100,
            1_000,
            12_345,
            999_999,
            1 << 40,
        ] {
            let v = Histogram::value(Histogram::index(ns));
            let err = v.abs_diff(ns);
            assert!(err * 8 <= ns.max(1), "{ns} -> {v}");
        }
    }

    #[test]
    fn percentiles() {
        let h = Histogram::new();
        for ns in 1..=100u64 {
            h.record(ns * 1000);
        }
        let s = h.summary();
        assert_eq!(s["count"], 100);
        let p50 = s["p50"].as_u64().unwrap();
        let p99 = s["p99"].as_u64().unwrap();
        assert!((44_000..=56_000).contains(&p50), "{s}");
        assert!((87_000..=112_000).contains(&p99), "{s}");
        assert_eq!(Histogram::new().summary()["p99"], 0);
    }

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
