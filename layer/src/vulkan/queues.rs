//! The queues a device was created with, filled in as the application
//! retrieves them: the layer needs a queue's family for the ownership
//! transfers of its present submission. Their shape is fixed at device
//! creation, so recording a queue is a short scan and an atomic store, and
//! looking one up takes no lock.

use std::sync::atomic::{AtomicU64, Ordering};

use ash::vk;
use ash::vk::Handle;

use crate::plumbing::stats::{self, Counter};

pub struct Queues {
    groups: Box<[QueueGroup]>,
    handles: Box<[AtomicU64]>,
}

/// The queues of one `VkDeviceQueueCreateInfo`.
struct QueueGroup {
    family: u32,
    flags: vk::DeviceQueueCreateFlags,
    count: u32,
    /// Where its handles start in `Queues::handles`.
    first: usize,
}

impl Queues {
    /// # Safety
    /// `info` is a valid `VkDeviceCreateInfo`.
    pub unsafe fn new(info: &vk::DeviceCreateInfo<'_>) -> Self {
        // SAFETY: the create info holds this many queue create infos.
        let creates =
            unsafe { super::array(info.p_queue_create_infos, info.queue_create_info_count) };
        let mut first = 0;
        let groups = creates
            .iter()
            .map(|c| {
                let g = QueueGroup {
                    family: c.queue_family_index,
                    flags: c.flags,
                    count: c.queue_count,
                    first,
                };
                first += c.queue_count as usize;
                g
            })
            .collect();
        Self {
            groups,
            handles: (0..first).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    #[inline(always)]
    pub fn record(&self, family: u32, flags: vk::DeviceQueueCreateFlags, index: u32, q: vk::Queue) {
        for g in self.groups.iter() {
            if g.family == family && g.flags == flags && index < g.count {
                if let Some(slot) = self.handles.get(g.first + index as usize) {
                    // Queues are retrieved again and again: only the first
                    // time writes (and counts).
                    if slot.load(Ordering::Relaxed) == 0
                        && slot.swap(q.as_raw(), Ordering::Relaxed) == 0
                    {
                        stats::count(Counter::Queues);
                    }
                }
                return;
            }
        }
    }

    /// The family of `queue`, once the application has retrieved it.
    pub fn family(&self, queue: vk::Queue) -> Option<u32> {
        let raw = queue.as_raw();
        self.groups.iter().find_map(|g| {
            self.handles[g.first..g.first + g.count as usize]
                .iter()
                .any(|h| h.load(Ordering::Relaxed) == raw)
                .then_some(g.family)
        })
    }

    pub fn retrieved(&self) -> usize {
        self.handles
            .iter()
            .filter(|h| h.load(Ordering::Relaxed) != 0)
            .count()
    }
}
