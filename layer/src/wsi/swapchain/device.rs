//! What the WSI core keeps per device whose swapchains it owns: the
//! command pools its ownership transfers are recorded from, the semaphores
//! that hand a mixed present's waits on to the driver, the acquires whose
//! ownership transfer still waits for the application's next submission,
//! its live swapchains, and images whose last present has not finished
//! when their swapchain was destroyed.
//!
//! Made with the device's first swapchain and freed with the device.

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ash::vk;
use ash::vk::Handle;

use super::image::{Ctx, Image};
use crate::plumbing::dispatch::KeyMap;
use crate::plumbing::loader::SetDeviceLoaderData;
use crate::vulkan::device::{DeviceState, ExtFns, Owned};

/// The WSI state of every device with a swapchain of the layer's, by
/// dispatch key.
pub static WSI_DEVICES: KeyMap<Arc<WsiDevice>> = KeyMap::new();

pub struct WsiDevice {
    pub fns: ash::Device,
    pub ext: Arc<ExtFns>,
    pub foreign_family: u32,
    set_loader_data: SetDeviceLoaderData,
    pools: Mutex<Vec<(u32, vk::CommandPool)>>,
    handoff: Mutex<(Vec<vk::Semaphore>, usize)>,
    /// Acquire semaphores whose image the application's next submission
    /// waiting on them takes back from the consumer.
    pending: Mutex<Vec<PendingAcquire>>,
    /// `pending.len()`, read without the lock on every submission.
    pending_count: AtomicUsize,
    /// The handles of its live swapchains.
    pub live: Mutex<Vec<u64>>,
    /// Images of destroyed swapchains whose last present was still running.
    graveyard: Mutex<Vec<Image>>,
    /// Images the application made to alias swapchain images.
    pub aliases: super::alias::Aliases,
}

/// An acquire whose ownership transfer waits for a submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingAcquire {
    pub semaphore: vk::Semaphore,
    pub swapchain: u64,
    pub index: u32,
    /// Which acquire of that image it was (see `Pool::acquires`).
    pub seq: u64,
}

/// Semaphores that carry a mixed present's waits to the driver's part,
/// used in turn. A binary semaphore may be signalled again once the
/// present that waited on it has executed that wait; cycling through
/// several keeps each one's reuse presents apart.
const HANDOFF_RING: usize = 8;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl WsiDevice {
    /// The WSI state of `device`, made on first use.
    pub fn of(device: &DeviceState, owned: &Owned) -> Result<Arc<WsiDevice>, vk::Result> {
        // SAFETY: the device is alive; its first word is the dispatch key.
        let key = unsafe { crate::plumbing::dispatch::key(device.handle) };
        // Vulkan lets two threads make swapchains on one device at once.
        static MAKING: Mutex<()> = Mutex::new(());
        let _one_at_a_time = lock(&MAKING);
        // SAFETY: the state is removed only at vkDestroyDevice.
        if let Some(w) = unsafe { WSI_DEVICES.get(key) } {
            return Ok(w.clone());
        }
        let w = Arc::new(WsiDevice {
            fns: device.fns.clone(),
            ext: owned.ext.clone(),
            foreign_family: owned.foreign_family,
            set_loader_data: owned.set_loader_data,
            pools: Mutex::new(Vec::new()),
            handoff: Mutex::new((Vec::new(), 0)),
            pending: Mutex::new(Vec::new()),
            pending_count: AtomicUsize::new(0),
            live: Mutex::new(Vec::new()),
            graveyard: Mutex::new(Vec::new()),
            aliases: Default::default(),
        });
        let room = WSI_DEVICES
            .reserve()
            .map_err(|_| vk::Result::ERROR_OUT_OF_HOST_MEMORY)?;
        room.insert(key, Box::new(w.clone()));
        Ok(w)
    }

    pub fn ctx(&self) -> Ctx<'_> {
        Ctx {
            device: &self.fns,
            ext: &self.ext,
        }
    }

    /// A primary command buffer of queue family `family`, ready for the
    /// application's queues (the loader's dispatch pointer set).
    pub fn command_buffer(&self, family: u32) -> Result<vk::CommandBuffer, vk::Result> {
        let mut pools = lock(&self.pools);
        let pool = match pools.iter().find(|(f, _)| *f == family) {
            Some(&(_, p)) => p,
            None => {
                let info = vk::CommandPoolCreateInfo::default().queue_family_index(family);
                // SAFETY: a plain pool of this device.
                let p = unsafe { self.fns.create_command_pool(&info, None) }?;
                pools.push((family, p));
                p
            }
        };
        let info = vk::CommandBufferAllocateInfo::default()
            .command_pool(pool)
            .level(vk::CommandBufferLevel::PRIMARY)
            .command_buffer_count(1);
        // SAFETY: the pool is this device's, and its lock is held: pools
        // are externally synchronized.
        let cmd = unsafe { self.fns.allocate_command_buffers(&info) }?[0];
        // SAFETY: a dispatchable object the layer made on this device;
        // the loader writes its dispatch pointer into it.
        let r = unsafe { (self.set_loader_data)(self.fns.handle(), cmd.as_raw() as *mut c_void) };
        if r != vk::Result::SUCCESS {
            // SAFETY: the buffer was just allocated from this pool, unused.
            unsafe { self.fns.free_command_buffers(pool, &[cmd]) };
            return Err(r);
        }
        Ok(cmd)
    }

    /// Frees command buffers of `family` (their images are being freed).
    pub fn free_command_buffers(&self, family: u32, cmds: &[vk::CommandBuffer]) {
        let pools = lock(&self.pools);
        if let Some(&(_, pool)) = pools.iter().find(|(f, _)| *f == family) {
            // SAFETY: buffers of this pool that nothing uses any more; the
            // pool's lock is held.
            unsafe { self.fns.free_command_buffers(pool, cmds) };
        }
    }

    /// The next hand-off semaphore of the ring.
    pub fn handoff(&self) -> Result<vk::Semaphore, vk::Result> {
        let mut g = lock(&self.handoff);
        let (ring, next) = &mut *g;
        if ring.len() < HANDOFF_RING {
            // SAFETY: a plain binary semaphore of this device.
            let s = unsafe {
                self.fns
                    .create_semaphore(&vk::SemaphoreCreateInfo::default(), None)
            }?;
            ring.push(s);
            return Ok(s);
        }
        *next = (*next + 1) % ring.len();
        Ok(ring[*next])
    }

    /// Whether any acquire waits for a submission to take its image back.
    #[inline(always)]
    pub fn has_pending(&self) -> bool {
        self.pending_count.load(Ordering::Acquire) != 0
    }

    /// Records an acquire whose image the next submission waiting on its
    /// semaphore takes back (replacing an older one on that semaphore).
    pub fn add_pending(&self, p: PendingAcquire) {
        let mut pending = lock(&self.pending);
        pending.retain(|q| q.semaphore != p.semaphore);
        pending.push(p);
        self.pending_count.store(pending.len(), Ordering::Release);
    }

    /// Takes the pending acquires on `semaphores` out.
    pub fn take_pending(&self, semaphores: impl Fn(vk::Semaphore) -> bool) -> Vec<PendingAcquire> {
        let mut pending = lock(&self.pending);
        let (taken, kept): (Vec<_>, Vec<_>) =
            pending.drain(..).partition(|p| semaphores(p.semaphore));
        *pending = kept;
        self.pending_count.store(pending.len(), Ordering::Release);
        taken
    }

    /// Forgets the pending acquires `which` picks (of a swapchain being
    /// destroyed, of images released unpresented).
    pub fn forget_pending(&self, which: impl Fn(&PendingAcquire) -> bool) {
        let mut pending = lock(&self.pending);
        pending.retain(|p| !which(p));
        self.pending_count.store(pending.len(), Ordering::Release);
    }

    /// Keeps images whose last present still runs until they are done.
    pub fn bury(&self, images: Vec<Image>) {
        lock(&self.graveyard).extend(images);
    }

    /// Frees the buried images that are done now (all of them when the
    /// device is being destroyed, which Vulkan requires to be idle).
    pub fn reap(&self, all: bool) {
        let done: Vec<Image> = {
            let mut g = lock(&self.graveyard);
            let (done, running): (Vec<_>, Vec<_>) = g
                .drain(..)
                .partition(|i| all || super::image_idle(i, &self.fns));
            *g = running;
            done
        };
        for mut image in done {
            self.free(&mut image);
        }
    }

    /// Frees an image nothing uses any more, with its command buffers.
    pub fn free(&self, image: &mut Image) {
        for t in image.take_transfers() {
            self.free_command_buffers(t.family, &[t.release, t.acquire]);
        }
        image.destroy(&self.ctx());
    }

    /// Frees everything, when the device is destroyed.
    pub fn destroy(&self) {
        self.reap(true);
        self.aliases.free_all(&self.fns);
        let (ring, _) = std::mem::take(&mut *lock(&self.handoff));
        for s in ring {
            // SAFETY: the device is idle before its destruction, as Vulkan
            // requires, so no present waits on these any more.
            unsafe { self.fns.destroy_semaphore(s, None) };
        }
        for (_, pool) in lock(&self.pools).drain(..) {
            // SAFETY: as above; destroying a pool frees its buffers.
            unsafe { self.fns.destroy_command_pool(pool, None) };
        }
    }
}

/// The WSI state of the device of a live dispatchable handle, once the
/// device has had a swapchain of the layer's.
///
/// # Safety
/// `handle` is a live dispatchable handle of a device that is not being
/// destroyed meanwhile (Vulkan gives that for the duration of a command).
#[inline(always)]
pub unsafe fn of<H: vk::Handle>(handle: H) -> Option<&'static WsiDevice> {
    // SAFETY: as the caller promises; the state is removed only at
    // vkDestroyDevice.
    unsafe { WSI_DEVICES.get(crate::plumbing::dispatch::key(handle)) }.map(|w| &**w)
}
