//! The program `scripts/bench-dispatch` runs under callgrind: it sets up a
//! device, then calls one device command N times inside
//! `syncfile_bench_loop`, the only function callgrind counts.
//!
//! ```text
//! dispatch-bench queue|memreq N
//! ```
//!
//! `queue` is `vkGetDeviceQueue`, which the layer intercepts; `memreq` is
//! `vkGetBufferMemoryRequirements`, which it does not.

use std::process::ExitCode;

use ash::vk;

/// One command call, through the pointer the application got from
/// `vkGetDeviceProcAddr`.
type Call = Box<dyn Fn()>;

#[no_mangle]
#[inline(never)]
pub extern "C" fn syncfile_bench_loop(call: &Call, n: u64) {
    for _ in 0..n {
        call();
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(command), Some(Ok(n))) = (args.next(), args.next().map(|s| s.parse::<u64>())) else {
        eprintln!("usage: dispatch-bench queue|memreq N");
        return ExitCode::from(2);
    };
    match run(&command, n) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dispatch-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: &str, n: u64) -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: loading the system's Vulkan loader, as any application does;
    // every object made below is destroyed before returning.
    unsafe {
        let entry = ash::Entry::load()?;
        let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_1);
        let instance = entry.create_instance(
            &vk::InstanceCreateInfo::default().application_info(&app),
            None,
        )?;
        let pd = *instance
            .enumerate_physical_devices()?
            .first()
            .ok_or("no device")?;
        let priorities = [1.0f32];
        let queues = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(0)
            .queue_priorities(&priorities)];
        let device = instance.create_device(
            pd,
            &vk::DeviceCreateInfo::default().queue_create_infos(&queues),
            None,
        )?;
        let buffer = device.create_buffer(
            &vk::BufferCreateInfo::default()
                .size(4096)
                .usage(vk::BufferUsageFlags::TRANSFER_DST),
            None,
        )?;
        let handle = device.handle();
        let call: Call = match command {
            "queue" => {
                let f = device.fp_v1_0().get_device_queue;
                Box::new(move || {
                    let mut q = vk::Queue::null();
                    f(handle, 0, 0, &mut q);
                    let _ = std::hint::black_box(q);
                })
            }
            "memreq" => {
                let f = device.fp_v1_0().get_buffer_memory_requirements;
                Box::new(move || {
                    let mut r = vk::MemoryRequirements::default();
                    f(handle, buffer, &mut r);
                    let _ = std::hint::black_box(r);
                })
            }
            other => return Err(format!("unknown command {other}").into()),
        };
        syncfile_bench_loop(&call, n);
        device.destroy_buffer(buffer, None);
        device.destroy_device(None);
        instance.destroy_instance(None);
    }
    Ok(())
}
