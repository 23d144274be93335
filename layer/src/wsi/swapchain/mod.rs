//! The platform-independent swapchain: layer-made `VkSwapchainKHR`s whose
//! images are dma-bufs, their state machine ([`pool`]), creation
//! ([`create`]), acquire ([`acquire`]), `vkQueuePresentKHR` as a whole
//! ([`present`]), the images' queue family ownership ([`ownership`]),
//! images made to alias them ([`alias`]), retirement and destruction.
//!
//! A swapchain's handle is the address of its state, which lives in
//! [`SWAPCHAINS`] (found without a lock on every acquire and present); the
//! driver never sees it. Swapchains on surfaces the layer does not own are
//! the driver's: their handles are not in the map, and their commands go
//! down.
//!
//! Vulkan's external synchronization rules serialize every command on one
//! swapchain (acquire, present, retirement, destruction), so the state
//! itself needs no lock; what the consumer's and the present thread's
//! threads share with it is in the [`pool::Pool`] and [`Returned`].

pub mod acquire;
pub mod alias;
pub mod create;
pub mod device;
pub mod error;
mod history;
mod image;
pub mod ownership;
pub mod pool;
pub mod present;
mod present_info;
mod present_thread;
pub mod sync_path;

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ash::vk;
use ash::vk::Handle;
use syncfile::SyncFile;

use super::bridge;
use super::platform::{ConsumerImages, Presenter, Returns, Shown};
use crate::plumbing::dispatch::KeyMap;
use crate::plumbing::stats::{self, Counter, Event, Wait};
use crate::vulkan::caps::Format;
use crate::vulkan::objects;
use alias::AliasSpec;
use device::WsiDevice;
use history::History;
use image::Image;
use pool::Pool;
use present_thread::PresentThread;

/// Every live swapchain the layer made, by handle.
pub static SWAPCHAINS: KeyMap<Swapchain> = KeyMap::new();

/// How long destruction waits for the layer's own submissions that still
/// use the images (a present whose render has not finished); images still
/// in use after that are freed once they are done, or with their device.
pub const DESTROY_WAIT: Duration = Duration::from_secs(1);

/// How presents reach the consumer.
enum PresentPath {
    /// The render's sync_file becomes the dma-buf's write fence and the
    /// image goes to the consumer at once.
    Direct,
    /// A kernel without the sync_file ioctls, a consumer that takes the
    /// render's fence with the frame ([`Presenter::carries_render_fence`]):
    /// as `Direct`, without the write fence the kernel cannot attach.
    ///
    /// [`Presenter::carries_render_fence`]: crate::wsi::platform::Presenter::carries_render_fence
    Carried,
    /// CPU fallback: a present thread waits for the render first.
    Thread(PresentThread),
    /// CPU fallback for a consumer whose requests must be made on the
    /// application's thread (Wayland): the present waits for the render.
    Wait,
}

pub struct Swapchain {
    /// Its own handle (its address).
    handle: u64,
    device: vk::Device,
    wsi: Arc<WsiDevice>,
    images: Box<[Image]>,
    /// The images' handles as the application sees them, freed or not.
    handles: Box<[vk::Image]>,
    pool: Arc<Pool>,
    presenter: Arc<dyn Presenter>,
    path: PresentPath,
    /// CPU fallback for acquires: poll the dma-buf instead of exporting.
    acquire_polls: bool,
    sharing: vk::SharingMode,
    /// What images that alias this swapchain's are made of.
    alias: AliasSpec,
    /// What became of its presents.
    history: Arc<History>,
    /// The present modes it may switch among (swapchain maintenance; the
    /// creation's mode alone otherwise), and the one presents use now.
    modes: Box<[vk::PresentModeKHR]>,
    mode: AtomicI32,
    /// Whether a present asked for a mode it was not made for (logged once).
    bad_mode_logged: AtomicBool,
    /// The images as the consumer has them, each set when its memory is
    /// bound (at its first acquire, for a deferred allocation), and what
    /// is the same for all of them.
    consumer: ConsumerImages,
    format: Format,
    extent: vk::Extent2D,
}

/// The swapchain behind `handle`, if the layer made it.
///
/// # Safety
/// The swapchain is not destroyed while the reference is in use, which
/// Vulkan's external synchronization gives for the duration of a command.
#[inline(always)]
pub unsafe fn get<'a>(handle: vk::SwapchainKHR) -> Option<&'a Swapchain> {
    // SAFETY: as the caller promises.
    unsafe { SWAPCHAINS.get(handle.as_raw() as usize) }
}

impl Swapchain {
    /// The images, as `vkGetSwapchainImagesKHR` lists them.
    pub fn images(&self) -> &[vk::Image] {
        &self.handles
    }

    /// How the layer's log names it.
    pub fn describe(&self) -> String {
        objects::describe(vk::ObjectType::SWAPCHAIN_KHR, self.handle)
    }

    /// The mode of a present that asks for `asked` (`None`: the one in
    /// use): it stays for later presents (`VkSwapchainPresentModeInfoEXT`).
    fn switch_mode(&self, asked: Option<vk::PresentModeKHR>) -> vk::PresentModeKHR {
        match asked {
            Some(m) if self.modes.contains(&m) => self.mode.store(m.as_raw(), Ordering::Relaxed),
            Some(m) if !self.bad_mode_logged.swap(true, Ordering::Relaxed) => {
                tracing::error!(
                    "vkQueuePresentKHR: {} was not made for present mode {m:?} (only {:?}); keeping the mode it has (logged once per swapchain)",
                    self.describe(),
                    self.modes
                );
            }
            Some(_) => {}
            None => {}
        }
        vk::PresentModeKHR::from_raw(self.mode.load(Ordering::Relaxed))
    }

    /// `vkWaitForPresentKHR`: until the frame of present id `id` (or a
    /// later one) is shown or discarded, for at most `timeout` ns.
    pub fn wait_for_present(&self, id: u64, timeout: u64) -> vk::Result {
        match self.pool.status() {
            r if r.as_raw() < 0 => r,
            _ => self.history.wait(id, timeout),
        }
    }

    /// `vkReleaseSwapchainImagesEXT` (`command`): acquired images the
    /// application will not present go back, as if never acquired.
    pub fn release_images(&self, command: &str, indices: &[u32]) -> vk::Result {
        for &i in indices {
            if !self.pool.untake(i) {
                tracing::error!(
                    "{command}: image {i} of {} is not acquired; ignoring it",
                    self.describe()
                );
            }
        }
        self.wsi
            .forget_pending(|p| p.swapchain == self.handle && indices.contains(&p.index));
        vk::Result::SUCCESS
    }

    /// `VK_GOOGLE_display_timing`'s refresh duration, in ns.
    pub fn refresh_ns(&self) -> u64 {
        self.history.refresh_ns()
    }

    /// `vkGetPastPresentationTimingGOOGLE`.
    ///
    /// # Safety
    /// The application's count and array.
    pub unsafe fn past_timings(
        &self,
        p_count: *mut u32,
        p_timings: *mut vk::PastPresentationTimingGOOGLE,
    ) -> vk::Result {
        // SAFETY: as the caller promises.
        unsafe { self.history.take_past(p_count, p_timings) }
    }

    /// `vkSetHdrMetadataEXT`: for the consumer, if its platform carries it.
    pub fn set_hdr_metadata(&self, metadata: &vk::HdrMetadataEXT<'_>) {
        self.presenter.hdr_metadata(metadata);
    }

    /// Retires the swapchain (an `oldSwapchain` that is being replaced):
    /// acquires fail with `OUT_OF_DATE`, the consumer stops, and images
    /// that are free and idle are freed now rather than at destruction.
    fn retire(&mut self) {
        self.pool.retire();
        self.presenter.stop();
        self.history.end(vk::Result::ERROR_OUT_OF_DATE_KHR);
        let images = &self.images;
        let fns = &self.wsi.fns;
        let gone = self
            .pool
            .take_gone(|i| image_idle(&images[i as usize], fns));
        for i in gone {
            self.wsi.free(&mut self.images[i as usize]);
        }
        stats::count(Counter::SwapchainsRetired);
    }

    /// Destroys everything, waiting at most [`DESTROY_WAIT`] for the
    /// layer's own submissions that still use the images.
    fn destroy(mut self) {
        self.presenter.stop();
        self.history.end(vk::Result::ERROR_OUT_OF_DATE_KHR);
        let deadline = Instant::now() + DESTROY_WAIT;
        if let PresentPath::Thread(t) = &mut self.path {
            t.finish(deadline);
        }
        self.wsi.forget_pending(|p| p.swapchain == self.handle);
        let mut running = Vec::new();
        for image in self.images.iter_mut() {
            if wait_idle(image, &self.wsi.fns, deadline) {
                self.wsi.free(image);
            } else {
                running.push(std::mem::take(image));
            }
        }
        if !running.is_empty() {
            tracing::warn!(
                "vkDestroySwapchainKHR {}: the last present of {} image(s) still runs {DESTROY_WAIT:?} after the call; they are freed once it is done, or with the device",
                self.describe(),
                running.len()
            );
            stats::count(Counter::SwapchainsDestroyedRunning);
            self.wsi.bury(running);
        }
        self.wsi.reap(false);
        self.wsi
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&h| h != self.handle);
        tracing::info!("swapchain {} destroyed", self.describe());
        objects::forget(vk::ObjectType::SWAPCHAIN_KHR, self.handle);
        stats::count(Counter::SwapchainsDestroyed);
    }
}

/// Whether nothing of the layer's uses `image` any more: its last present
/// (whose render sync_file is the dma-buf's write fence, or whose fence
/// the CPU fallback waits on) is done.
fn image_idle(image: &Image, fns: &ash::Device) -> bool {
    let rendered = image
        .dma_buf
        .get()
        .is_none_or(|d| bridge::render_done(d).unwrap_or(true));
    // SAFETY: the image's own fence, alive with it.
    let submitted = image.fence == vk::Fence::null()
        || unsafe { fns.get_fence_status(image.fence) }.unwrap_or(true);
    rendered && submitted
}

/// Waits until `image` is idle or `deadline` passes; whether it is idle.
fn wait_idle(image: &Image, fns: &ash::Device, deadline: Instant) -> bool {
    let start = Instant::now();
    let mut waited = false;
    while !image_idle(image, fns) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        waited = true;
        match image.dma_buf.get() {
            Some(d) if !bridge::render_done(d).unwrap_or(true) => {
                let _ = bridge::wait_for_render(d, Some(left));
            }
            _ => {
                let ns = u64::try_from(left.as_nanos()).unwrap_or(u64::MAX);
                // SAFETY: the image's own fence, alive with it.
                let _ = unsafe { fns.wait_for_fences(&[image.fence], true, ns) };
            }
        }
    }
    if waited {
        stats::waited(Wait::Destroy, start.elapsed());
    }
    true
}

/// How the consumer gives a swapchain's images back: into the pool, with
/// an explicit release fence first carried into the image's dma-buf.
pub struct Returned {
    pool: Arc<Pool>,
    /// The images' dma-bufs, as the consumer has them.
    images: ConsumerImages,
    history: Arc<History>,
}

impl Returns for Returned {
    fn release(&self, index: u32, release_fence: Option<SyncFile>) {
        if let (Some(fence), Some(image)) = (release_fence, self.images.get(index)) {
            if let Err(e) = bridge::carry_release_fence(&image.buffer.dma_buf, &fence) {
                // The next writer cannot be made to wait for the
                // consumer's reads: wait for them here instead (on the
                // consumer's thread, never the application's). A kernel
                // without the ioctl was logged once when the swapchain
                // was made.
                if e != syncfile::Error::Unsupported {
                    tracing::warn!("carrying a release fence into the dma-buf failed: {e}");
                }
                let _ = fence.wait(None);
            }
        }
        self.pool.release(index);
    }

    fn set_status(&self, status: vk::Result) {
        self.pool.set_status(status);
        if status.as_raw() < 0 {
            self.history.end(status);
        }
    }

    fn status(&self) -> vk::Result {
        self.pool.status()
    }

    fn shown(&self, seq: u64, shown: Shown) {
        self.history.shown(seq, shown);
    }
}

/// Retires `old` if the layer made it; says whether it did.
pub fn retire(old: vk::SwapchainKHR) -> bool {
    if old == vk::SwapchainKHR::null() {
        return false;
    }
    let key = old.as_raw() as usize;
    // Taking the state out gives the exclusive access that retirement
    // needs; the application may not use `old` meanwhile (it is externally
    // synchronized), so no reader misses it.
    let Some(mut s) = SWAPCHAINS.remove(key) else {
        return false;
    };
    s.retire();
    // The removal made room, unless other threads took it meanwhile.
    match SWAPCHAINS.reserve() {
        Ok(room) => room.insert(key, s),
        Err(e) => {
            tracing::error!("vkCreateSwapchainKHR: {e}; destroying the retired swapchain now");
            destroy(s);
        }
    }
    true
}

/// Destroys an owned swapchain taken out of the map, and reports.
pub fn destroy(s: Box<Swapchain>) {
    Swapchain::destroy(*s);
    stats::write(Event::SwapchainDestroyed);
}

/// Destroys the swapchains the application left alive on a device being
/// destroyed, and the device's WSI state; one log line names the leak.
pub fn forget_device(key: usize) {
    let Some(wsi) = device::WSI_DEVICES.remove(key) else {
        return;
    };
    let live = std::mem::take(&mut *wsi.live.lock().unwrap_or_else(|e| e.into_inner()));
    if !live.is_empty() {
        let names: Vec<String> = live
            .iter()
            .map(|&h| objects::describe(vk::ObjectType::SWAPCHAIN_KHR, h))
            .collect();
        tracing::warn!(
            "vkDestroyDevice: the application left {} swapchain(s) alive ({}); destroying them",
            live.len(),
            names.join(", ")
        );
        stats::add(Counter::SwapchainsLeaked, live.len() as u64);
    }
    for h in live {
        if let Some(s) = SWAPCHAINS.remove(h as usize) {
            destroy(s);
        }
    }
    wsi.destroy();
}

/// Logs the first time the sync bridge has to fall back to waiting.
fn fell_back_once(what: &str) {
    static LOGGED: AtomicBool = AtomicBool::new(false);
    if !LOGGED.swap(true, Ordering::Relaxed) {
        tracing::error!("{what}; presents wait for the render instead (logged once)");
    }
}
