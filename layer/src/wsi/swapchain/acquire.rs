//! `vkAcquireNextImageKHR`: a free image within the timeout, and the
//! acquire semaphore and fence made to wait for every access its consumer
//! still makes (the sync bridge's acquire half). No CPU wait for a fence;
//! the only wait is for the consumer to give an image back, which is what
//! the timeout is for.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ash::vk;

use super::create::consumer_image;
use super::device::PendingAcquire;
use super::error::SwapchainError;
use super::pool::Take;
use super::Swapchain;
use crate::plumbing::stats::{self, Counter, CpuTimer, Fallback, Wait, ACQUIRE_CPU};
use crate::wsi::bridge;

impl Swapchain {
    /// `vkAcquireNextImageKHR` on this swapchain: the image's index and
    /// `SUCCESS` or `SUBOPTIMAL_KHR`, or the error to return.
    pub fn acquire(
        &self,
        timeout: u64,
        semaphore: vk::Semaphore,
        fence: vk::Fence,
    ) -> Result<(u32, vk::Result), vk::Result> {
        let timer = CpuTimer::start(&ACQUIRE_CPU);
        let result = self.take(timeout, semaphore, fence);
        drop(timer);
        stats::count(match result {
            Ok(_) => Counter::AcquiresSucceeded,
            Err(vk::Result::NOT_READY) => Counter::AcquiresNotReady,
            Err(vk::Result::TIMEOUT) => Counter::AcquiresTimeout,
            Err(_) => Counter::AcquiresOutOfDate,
        });
        result
    }

    fn take(
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
                    self.pool.wait_for_release(generation, deadline);
                }
            }
        };
        if let Some(since) = waited_since {
            stats::waited(Wait::NoFreeImage, since.elapsed());
        }
        match self
            .bind(index)
            .and_then(|()| self.sync(index, timeout, deadline, semaphore, fence))
        {
            Ok(()) => Ok((index, status)),
            Err(e) => {
                self.pool.untake(index);
                Err(e)
            }
        }
    }

    /// Gives image `index` its memory if the application deferred that to
    /// its first acquire (`VK_SWAPCHAIN_CREATE_DEFERRED_MEMORY_ALLOCATION_BIT_EXT`).
    fn bind(&self, index: u32) -> Result<(), vk::Result> {
        let image = &self.images[index as usize];
        let out_of_memory = |e: SwapchainError| {
            tracing::error!(
                "vkAcquireNextImageKHR: binding the deferred memory of image {index}: {e}"
            );
            vk::Result::ERROR_OUT_OF_DEVICE_MEMORY
        };
        if image.bind(&self.wsi.ctx()).map_err(out_of_memory)? {
            let consumer =
                consumer_image(image, self.format, self.extent).map_err(out_of_memory)?;
            self.consumer.set(index, consumer);
            tracing::debug!(
                "image {index} of {} bound at its first acquire",
                self.describe()
            );
            stats::count(Counter::ImagesBoundAtAcquire);
        }
        Ok(())
    }

    fn sync(
        &self,
        index: u32,
        timeout: u64,
        deadline: Option<Instant>,
        semaphore: vk::Semaphore,
        fence: vk::Fence,
    ) -> Result<(), vk::Result> {
        let image = &self.images[index as usize];
        let Some(dma_buf) = image.dma_buf.get() else {
            return Err(vk::Result::ERROR_OUT_OF_DATE_KHR);
        };
        let poll = |dma_buf| match bridge::wait_for_writer(dma_buf, deadline) {
            Ok(true) => Ok(None),
            Ok(false) if timeout == 0 => Err(vk::Result::NOT_READY),
            Ok(false) => Err(vk::Result::TIMEOUT),
            Err(e) => {
                tracing::error!("vkAcquireNextImageKHR: polling the image's dma-buf failed: {e}");
                Err(vk::Result::ERROR_SURFACE_LOST_KHR)
            }
        };
        let fence_file = if self.acquire_polls {
            poll(dma_buf)?
        } else {
            match bridge::writer_fence_unless_idle(dma_buf) {
                Ok(f) => f,
                // The kernel stopped answering under a running swapchain
                // (a sandbox installed later): the poll still tells when
                // the consumer is done, within the application's timeout.
                Err(syncfile::Error::Unsupported) => {
                    export_refused_once();
                    poll(dma_buf)?
                }
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
        unsafe { bridge::import_acquire(self.device, &self.wsi.ext, semaphore, fence, fence_file) }
            .map_err(|r| {
                tracing::error!("vkAcquireNextImageKHR: importing the image's fences failed: {r}");
                vk::Result::ERROR_OUT_OF_HOST_MEMORY
            })?;
        // The consumer has the image: the application's first submission
        // waiting on the semaphore takes it back (see `ownership`).
        if image.released.load(Ordering::Acquire) && semaphore != vk::Semaphore::null() {
            self.wsi.add_pending(PendingAcquire {
                semaphore,
                swapchain: self.handle,
                index,
                seq: self.pool.acquire_seq(index),
            });
        }
        Ok(())
    }
}

/// Counts, once, a kernel that refused an export it answered when the
/// swapchain was made (`stats::fallback` logs the first of the process).
fn export_refused_once() {
    static COUNTED: AtomicBool = AtomicBool::new(false);
    if !COUNTED.swap(true, Ordering::Relaxed) {
        stats::fallback(Fallback::NoKernelIoctls);
    }
}
