//! Host-visible buffers a test copies swapchain images into, to read
//! what the GPU wrote.

use ash::vk;

use super::Vk;
use crate::common::child::Result;

impl Vk {
    /// A host-visible, coherent buffer of `size` bytes, mapped.
    pub fn host_buffer(&self, size: u64) -> Result<HostBuffer<'_>> {
        // SAFETY: objects of this device, freed by `HostBuffer`'s Drop.
        unsafe {
            let buffer = self.device.create_buffer(
                &vk::BufferCreateInfo::default()
                    .size(size)
                    .usage(vk::BufferUsageFlags::TRANSFER_DST),
                None,
            )?;
            let req = self.device.get_buffer_memory_requirements(buffer);
            let wanted =
                vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT;
            let kind = (0..self.memory.memory_type_count)
                .find(|&i| {
                    req.memory_type_bits & (1 << i) != 0
                        && self.memory.memory_types[i as usize]
                            .property_flags
                            .contains(wanted)
                })
                .ok_or("no host-visible coherent memory type")?;
            let memory = self.device.allocate_memory(
                &vk::MemoryAllocateInfo::default()
                    .allocation_size(req.size)
                    .memory_type_index(kind),
                None,
            )?;
            self.device.bind_buffer_memory(buffer, memory, 0)?;
            let ptr = self
                .device
                .map_memory(memory, 0, size, vk::MemoryMapFlags::empty())?;
            Ok(HostBuffer {
                vk: self,
                buffer,
                memory,
                ptr: ptr.cast(),
                size: size as usize,
            })
        }
    }
}

pub struct HostBuffer<'a> {
    vk: &'a Vk,
    pub buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    ptr: *mut u8,
    size: usize,
}

impl HostBuffer<'_> {
    /// The buffer's bytes. Only read them when no GPU work writing the
    /// buffer is pending, or to see whether it ran.
    pub fn bytes(&self) -> Vec<u8> {
        // SAFETY: a live, coherent mapping of `size` bytes; the copy is a
        // plain read (the GPU may write concurrently only when the caller
        // checks whether it has, which any value answers).
        unsafe { std::slice::from_raw_parts(self.ptr, self.size).to_vec() }
    }

    pub fn fill(&self, byte: u8) {
        // SAFETY: as above, with no GPU work on the buffer.
        unsafe { std::ptr::write_bytes(self.ptr, byte, self.size) }
    }
}

impl Drop for HostBuffer<'_> {
    fn drop(&mut self) {
        // SAFETY: the device is idle with respect to this buffer (callers
        // wait for their submissions before dropping it).
        unsafe {
            let _ = self.vk.device.device_wait_idle();
            self.vk.device.destroy_buffer(self.buffer, None);
            self.vk.device.free_memory(self.memory, None);
        }
    }
}
