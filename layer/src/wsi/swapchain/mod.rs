//! The platform-independent swapchain: layer-made `VkSwapchainKHR`s whose
//! images are dma-bufs, their state machine ([`pool`]), acquire, the
//! swapchain's part of a present, and destruction. Creation is in
//! [`create`]; `vkQueuePresentKHR` as a whole in `crate::present`.
//!
//! A swapchain's handle is the address of its state, which lives in
//! [`SWAPCHAINS`] (found without a lock on every acquire and present).
//! Swapchains on surfaces the layer does not own are the driver's: their
//! handles are not in the map, and their commands go down.
//!
//! Vulkan's external synchronization rules serialize every command on one
//! swapchain (acquire, present, retirement, destruction), so the state
//! itself needs no lock; what the backend's and the present thread's
//! threads share with it is in the [`pool::Pool`] and the presenter.

pub mod create;
mod image;
pub mod pool;
mod present_thread;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ash::vk;
use ash::vk::Handle;

use crate::backend::{Frame, Presenter};
use crate::bridge;
use crate::device::{DeviceState, ExtFns, DEVICES};
use crate::dispatch::{self, KeyMap};
use crate::entry::guard;
use crate::stats::{self, Counter, CpuTimer, Event, Wait, ACQUIRE_CPU};
use image::{Ctx, Image};
use pool::{Pool, Take};
use present_thread::PresentThread;

/// Every live swapchain the layer made, by handle.
pub static SWAPCHAINS: KeyMap<Swapchain> = KeyMap::new();

/// Presents on owned swapchains since the process started: frame numbers.
static FRAMES: AtomicU64 = AtomicU64::new(0);

/// How presents reach the backend.
enum PresentPath {
    /// The render's sync_file becomes the dma-buf's write fence and the
    /// image goes to the backend at once.
    Direct,
    /// CPU fallback: a present thread waits for the render first.
    Thread(PresentThread),
}

pub struct Swapchain {
    device: vk::Device,
    fns: ash::Device,
    ext: ExtFns,
    images: Box<[Image]>,
    /// The images' handles as the application sees them, freed or not.
    handles: Box<[vk::Image]>,
    pool: Arc<Pool>,
    presenter: Arc<dyn Presenter>,
    path: PresentPath,
    /// CPU fallback for acquires: poll the dma-buf instead of exporting.
    acquire_polls: bool,
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

/// The swapchain commands; handed out for devices the layer owns even where
/// the driver lacks VK_KHR_swapchain.
pub fn intercepted(name: &[u8]) -> Option<*const std::ffi::c_void> {
    use std::ffi::c_void;
    Some(match name {
        b"vkCreateSwapchainKHR" => create::create_swapchain as *const c_void,
        b"vkDestroySwapchainKHR" => create::destroy_swapchain as *const c_void,
        b"vkGetSwapchainImagesKHR" => get_swapchain_images as *const c_void,
        b"vkAcquireNextImageKHR" => acquire_next_image as *const c_void,
        b"vkAcquireNextImage2KHR" => acquire_next_image2 as *const c_void,
        b"vkQueuePresentKHR" => crate::present::queue_present as *const c_void,
        b"vkGetDeviceGroupSurfacePresentModesKHR" => {
            create::device_group_surface_present_modes as *const c_void
        }
        _ => return None,
    })
}

impl Swapchain {
    /// Takes a free image within `timeout` ns and makes `semaphore` and/or
    /// `fence` wait for every access the image's consumer still makes.
    fn acquire(
        &self,
        timeout: u64,
        semaphore: vk::Semaphore,
        fence: vk::Fence,
    ) -> Result<(u32, vk::Result), vk::Result> {
        let deadline =
            (timeout != u64::MAX).then(|| Instant::now() + Duration::from_nanos(timeout));
        let mut waited_since = None;
        let (index, status) = loop {
            match self.pool.take() {
                Take::Image(i, status) => break (i, status),
                Take::Error(e) => return Err(e),
                Take::Empty(_) if timeout == 0 => return Err(vk::Result::NOT_READY),
                Take::Empty(_) if deadline.is_some_and(|d| Instant::now() >= d) => {
                    return Err(vk::Result::TIMEOUT)
                }
                Take::Empty(generation) => {
                    waited_since.get_or_insert_with(Instant::now);
                    self.presenter
                        .wait_for_release(&self.pool, generation, deadline);
                }
            }
        };
        if let Some(since) = waited_since {
            stats::waited(Wait::NoFreeImage, since.elapsed());
        }
        match self.sync_acquire(index, timeout, deadline, semaphore, fence) {
            Ok(()) => Ok((index, status)),
            Err(e) => {
                self.pool.untake(index);
                Err(e)
            }
        }
    }

    fn sync_acquire(
        &self,
        index: u32,
        timeout: u64,
        deadline: Option<Instant>,
        semaphore: vk::Semaphore,
        fence: vk::Fence,
    ) -> Result<(), vk::Result> {
        let Some(dma_buf) = &self.images[index as usize].dma_buf else {
            return Err(vk::Result::ERROR_OUT_OF_DATE_KHR);
        };
        let fence_file = if self.acquire_polls {
            match bridge::wait_for_writer(dma_buf, deadline) {
                Ok(true) => None,
                Ok(false) if timeout == 0 => return Err(vk::Result::NOT_READY),
                Ok(false) => return Err(vk::Result::TIMEOUT),
                Err(e) => {
                    tracing::error!(
                        "vkAcquireNextImageKHR: polling the image's dma-buf failed: {e}"
                    );
                    return Err(vk::Result::ERROR_SURFACE_LOST_KHR);
                }
            }
        } else {
            match bridge::writer_fence_unless_idle(dma_buf) {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(
                        "vkAcquireNextImageKHR: exporting the image's fences failed: {e}"
                    );
                    return Err(vk::Result::ERROR_SURFACE_LOST_KHR);
                }
            }
        };
        // SAFETY: the application passes unsignalled objects without
        // pending operations, as vkAcquireNextImageKHR requires.
        unsafe { bridge::import_acquire(self.device, &self.ext, semaphore, fence, fence_file) }
            .map_err(|r| {
                tracing::error!("vkAcquireNextImageKHR: importing the image's fences failed: {r}");
                vk::Result::ERROR_OUT_OF_HOST_MEMORY
            })
    }

    /// Whether `index` may be presented; marks it presented. Refusals
    /// leave nothing to undo.
    pub fn begin_present(&self, index: u32) -> Result<(), vk::Result> {
        match self.pool.present(index) {
            Ok(()) => Ok(()),
            Err(Some(r)) => {
                stats::count(Counter::FramesOutOfDate);
                Err(r)
            }
            Err(None) => {
                tracing::error!(
                    "vkQueuePresentKHR: image {index} is not acquired; refusing it as out of date"
                );
                stats::count(Counter::FramesOutOfDate);
                Err(vk::Result::ERROR_OUT_OF_DATE_KHR)
            }
        }
    }

    /// The semaphore the present submission signals for image `index`.
    pub fn present_semaphore(&self, index: u32) -> vk::Semaphore {
        self.images[index as usize].semaphore
    }

    /// A presented image whose submission failed goes back to the pool.
    pub fn abort_present(&self, index: u32) {
        self.pool.release(index);
    }

    /// The swapchain's part of a present, once the submission signalling
    /// its semaphore is queued on `queue`: the render's fence onto the
    /// dma-buf and the image to the backend (or to the present thread).
    pub fn finish_present(&self, device: &DeviceState, queue: vk::Queue, index: u32) -> vk::Result {
        let frame = Frame {
            index,
            seq: FRAMES.fetch_add(1, Ordering::Relaxed),
        };
        stats::count(Counter::FramesPresented);
        let image = &self.images[index as usize];
        let result = match &self.path {
            PresentPath::Direct => self.present_direct(device, queue, image, frame),
            PresentPath::Thread(t) => self.present_via_thread(device, queue, image, frame, t),
        };
        if result.as_raw() < 0 {
            self.pool.release(index);
        }
        result
    }

    fn present_direct(
        &self,
        device: &DeviceState,
        queue: vk::Queue,
        image: &Image,
        frame: Frame,
    ) -> vk::Result {
        // SAFETY: the semaphore is exportable and its signal was just submitted.
        let render =
            match unsafe { bridge::export_semaphore(self.device, &self.ext, image.semaphore) } {
                Ok(r) => r,
                Err(r) => {
                    fell_back_once(&format!("exporting the render fence failed ({r})"));
                    self.consume_and_wait(device, queue, image.semaphore);
                    None
                }
            };
        if let (Some(render), Some(dma_buf)) = (&render, &image.dma_buf) {
            if let Err(e) = bridge::attach_write_fence(dma_buf, render) {
                fell_back_once(&format!(
                    "attaching the render fence to a dma-buf failed ({e})"
                ));
                let start = Instant::now();
                // Without the write fence, the render must be done before
                // the consumer may look.
                let _ = render.wait(None);
                stats::waited(Wait::FailedImport, start.elapsed());
            }
        }
        self.presenter.present(frame, render.as_ref())
    }

    /// When the render fence cannot be exported: consumes the present
    /// semaphore's signal on the queue (so it can be signalled again) and
    /// waits until the render is done.
    fn consume_and_wait(&self, device: &DeviceState, queue: vk::Queue, semaphore: vk::Semaphore) {
        let semaphores = [semaphore];
        let stages = [vk::PipelineStageFlags::ALL_COMMANDS];
        let submit = vk::SubmitInfo::default()
            .wait_semaphores(&semaphores)
            .wait_dst_stage_mask(&stages);
        let start = Instant::now();
        // SAFETY: the application gave the layer the queue for this
        // command, and the semaphore's signal is queued before this wait.
        unsafe {
            let _ = device.fns.queue_submit(queue, &[submit], vk::Fence::null());
            let _ = device.fns.queue_wait_idle(queue);
        }
        stats::waited(Wait::FailedImport, start.elapsed());
    }

    fn present_via_thread(
        &self,
        device: &DeviceState,
        queue: vk::Queue,
        image: &Image,
        frame: Frame,
        thread: &PresentThread,
    ) -> vk::Result {
        let semaphores = [image.semaphore];
        let stages = [vk::PipelineStageFlags::ALL_COMMANDS];
        let submit = vk::SubmitInfo::default()
            .wait_semaphores(&semaphores)
            .wait_dst_stage_mask(&stages);
        // SAFETY: the application gave the layer the queue for this
        // command; the semaphore's signal is queued before this wait, and
        // the fence is unsignalled and unused (its last job is done).
        if let Err(r) = unsafe { device.fns.queue_submit(queue, &[submit], image.fence) } {
            return r;
        }
        if !thread.send(frame, image.fence) {
            return vk::Result::ERROR_OUT_OF_DATE_KHR;
        }
        // The image is the thread's now, so no error may release it here;
        // the backend's answer comes later, and what it said last stands in
        // (errors reach the application at its next acquire).
        match self.pool.status() {
            vk::Result::SUBOPTIMAL_KHR => vk::Result::SUBOPTIMAL_KHR,
            _ => vk::Result::SUCCESS,
        }
    }

    /// Retires the swapchain (an `oldSwapchain` that is being replaced):
    /// acquires fail with `OUT_OF_DATE`, the backend stops, and images
    /// that are free and idle are freed now rather than at destruction.
    fn retire(&mut self) {
        self.pool.retire();
        self.presenter.stop();
        let images = &self.images;
        let gone = self.pool.take_gone(|i| {
            images[i as usize]
                .dma_buf
                .as_ref()
                .is_some_and(|d| d.is_ready(syncfile::Access::Read).unwrap_or(false))
        });
        let ctx = Ctx {
            device: &self.fns,
            ext: &self.ext,
            allocator: None,
        };
        for i in gone {
            self.images[i as usize].destroy(&ctx);
        }
        stats::count(Counter::SwapchainsRetired);
    }

    /// Destroys everything, waiting only for the layer's own submissions
    /// that still use the images.
    fn destroy(mut self) {
        self.presenter.stop();
        if let PresentPath::Thread(t) = &mut self.path {
            t.finish();
        }
        let ctx = Ctx {
            device: &self.fns,
            ext: &self.ext,
            allocator: None,
        };
        for image in self.images.iter_mut() {
            // A present's submission may still be running (the backend gave
            // the image back unshown); its write fence says when it is done.
            if let Some(d) = &image.dma_buf {
                if !d.is_ready(syncfile::Access::Read).unwrap_or(true) {
                    let start = Instant::now();
                    let _ = d.wait(syncfile::Access::Read, None);
                    stats::waited(Wait::Destroy, start.elapsed());
                }
            }
            image.destroy(&ctx);
        }
        stats::count(Counter::SwapchainsDestroyed);
    }
}

/// Logs the first time the sync bridge has to fall back to waiting.
fn fell_back_once(what: &str) {
    use std::sync::atomic::AtomicBool;
    static LOGGED: AtomicBool = AtomicBool::new(false);
    if !LOGGED.swap(true, Ordering::Relaxed) {
        tracing::error!("{what}; presents wait for the render instead (logged once)");
    }
}

unsafe extern "system" fn get_swapchain_images(
    device: vk::Device,
    swapchain: vk::SwapchainKHR,
    p_count: *mut u32,
    p_images: *mut vk::Image,
) -> vk::Result {
    guard(
        "vkGetSwapchainImagesKHR",
        vk::Result::ERROR_OUT_OF_HOST_MEMORY,
        || {
            // SAFETY: the swapchain is alive for the command.
            let Some(s) = (unsafe { get(swapchain) }) else {
                // SAFETY: the device is alive for the command.
                return match unsafe { DEVICES.get(dispatch::key(device)) } {
                    // SAFETY: the application's arguments, for the driver.
                    Some(d) => unsafe {
                        (d.swapchain.get_swapchain_images_khr)(device, swapchain, p_count, p_images)
                    },
                    None => vk::Result::ERROR_OUT_OF_HOST_MEMORY,
                };
            };
            // SAFETY: the application passes a valid count and array.
            unsafe { crate::surface::fill(&s.handles, p_count, p_images) }
        },
    )
}

unsafe extern "system" fn acquire_next_image(
    device: vk::Device,
    swapchain: vk::SwapchainKHR,
    timeout: u64,
    semaphore: vk::Semaphore,
    fence: vk::Fence,
    p_index: *mut u32,
) -> vk::Result {
    guard(
        "vkAcquireNextImageKHR",
        vk::Result::ERROR_OUT_OF_DATE_KHR,
        || {
            // SAFETY: the swapchain is alive for the command.
            let Some(s) = (unsafe { get(swapchain) }) else {
                // SAFETY: the device is alive for the command.
                return match unsafe { DEVICES.get(dispatch::key(device)) } {
                    // SAFETY: the application's arguments, for the driver.
                    Some(d) => unsafe {
                        (d.swapchain.acquire_next_image_khr)(
                            device, swapchain, timeout, semaphore, fence, p_index,
                        )
                    },
                    None => vk::Result::ERROR_DEVICE_LOST,
                };
            };
            // SAFETY: the application passes a valid index pointer.
            unsafe { acquire_into(s, timeout, semaphore, fence, p_index) }
        },
    )
}

unsafe extern "system" fn acquire_next_image2(
    device: vk::Device,
    p_info: *const vk::AcquireNextImageInfoKHR<'_>,
    p_index: *mut u32,
) -> vk::Result {
    guard(
        "vkAcquireNextImage2KHR",
        vk::Result::ERROR_OUT_OF_DATE_KHR,
        || {
            // SAFETY: the application passes a valid info structure.
            let info = unsafe { &*p_info };
            // SAFETY: the swapchain is alive for the command.
            let Some(s) = (unsafe { get(info.swapchain) }) else {
                // SAFETY: the device is alive for the command.
                return match unsafe { DEVICES.get(dispatch::key(device)) } {
                    // SAFETY: the application's arguments, for the driver.
                    Some(d) => unsafe {
                        (d.swapchain.acquire_next_image2_khr)(device, p_info, p_index)
                    },
                    None => vk::Result::ERROR_DEVICE_LOST,
                };
            };
            // The device mask can only name the one device of the group.
            // SAFETY: the application passes a valid index pointer.
            unsafe { acquire_into(s, info.timeout, info.semaphore, info.fence, p_index) }
        },
    )
}

/// # Safety
/// `p_index` is valid for writing.
unsafe fn acquire_into(
    s: &Swapchain,
    timeout: u64,
    semaphore: vk::Semaphore,
    fence: vk::Fence,
    p_index: *mut u32,
) -> vk::Result {
    let timer = CpuTimer::start(&ACQUIRE_CPU);
    let result = s.acquire(timeout, semaphore, fence);
    drop(timer);
    match result {
        Ok((i, status)) => {
            // SAFETY: the caller passes a valid index pointer.
            unsafe { *p_index = i };
            stats::count(Counter::AcquiresSucceeded);
            status
        }
        Err(r) => {
            stats::count(match r {
                vk::Result::NOT_READY => Counter::AcquiresNotReady,
                vk::Result::TIMEOUT => Counter::AcquiresTimeout,
                _ => Counter::AcquiresOutOfDate,
            });
            r
        }
    }
}

/// Destroys an owned swapchain taken out of the map, and reports.
pub fn destroy(s: Box<Swapchain>) {
    Swapchain::destroy(*s);
    stats::write(Event::SwapchainDestroyed);
}
