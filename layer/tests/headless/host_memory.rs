//! The application's allocation callbacks (`pAllocator`) on the layer's
//! swapchains, judged by the application's own bookkeeping: the driver
//! objects a swapchain is made of are made with the callbacks given to
//! `vkCreateSwapchainKHR` and all freed with them by
//! `vkDestroySwapchainKHR`; and a callback that fails, at any one of those
//! allocations in turn (as the Vulkan CTS's `alloc_callback_fail` does),
//! fails the creation with `VK_ERROR_OUT_OF_HOST_MEMORY`, leaving no
//! allocation and no descriptor behind.

use std::alloc::Layout;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use ash::vk;
use libtest_mimic::Completion;
use serde_json::{json, Value};

use crate::client::Switch;
use crate::client::{Chain, Vk};
use crate::common::child::Result as ChildResult;
use crate::common::{check, child_json, stat, Outcome};
use crate::fds;
use crate::support::{baseline, run_ok_within, Machine, Scratch};

/// More failure points than one swapchain's allocations could need.
const MAX_POINTS: i64 = 400;

pub fn callbacks_honoured_and_failures_clean(m: &Machine) -> Outcome {
    if let Some(skip) = m.lacks(&[&m.vulkan]) {
        return skip;
    }
    if baseline() {
        return Ok(Completion::ignored_with(
            "the layer's swapchains; the CTS judges Mesa's",
        ));
    }
    let s = Scratch::new("host-memory")?;
    let mut c = s.child("host_memory")?;
    let out = run_ok_within(&mut c, std::time::Duration::from_secs(600))?;
    let r = child_json(&out)?;
    let failures = r["failures"].as_array().ok_or("no failures")?;
    check(!failures.is_empty(), || {
        format!("the callbacks were never called: {r}")
    })?;
    for (n, f) in failures.iter().enumerate() {
        check(f["result"] == "ERROR_OUT_OF_HOST_MEMORY", || {
            format!("allocation {n} failed: {f}")
        })?;
        check(f["live"] == 0 && f["fds"] == r["fds_start"], || {
            format!("the failed creation at allocation {n} left something behind: {f}; {r}")
        })?;
    }
    check(r["made"].as_u64().unwrap_or(0) > 0, || r.to_string())?;
    check(r["live_after_destroy"] == 0, || {
        format!("allocations left after vkDestroySwapchainKHR: {r}")
    })?;
    check(r["fds_end"] == r["fds_start"], || {
        format!("descriptors leaked: {r}")
    })?;
    let stats = s.stats()?;
    check(stat(&stats, &["panics_caught"]) == 0, || stats.to_string())?;
    println!(
        "host memory: {} failure points, each VK_ERROR_OUT_OF_HOST_MEMORY with nothing left; a swapchain made {} allocations through the callbacks, all freed at its destruction",
        failures.len(),
        r["made"]
    );
    Ok(Completion::Completed)
}

/// The application's allocator: the system's, with a count of what is
/// live, and a budget of allocations after which each one fails.
struct Recorder {
    budget: AtomicI64,
    made: AtomicU64,
    live: Mutex<HashMap<usize, Layout>>,
}

impl Recorder {
    fn allocate(&self, size: usize, align: usize) -> *mut c_void {
        if self.budget.fetch_sub(1, Ordering::Relaxed) <= 0 {
            return std::ptr::null_mut();
        }
        let Ok(layout) = Layout::from_size_align(size.max(1), align.max(1)) else {
            return std::ptr::null_mut();
        };
        // SAFETY: a layout of non-zero size.
        let p = unsafe { std::alloc::alloc(layout) };
        if !p.is_null() {
            self.made.fetch_add(1, Ordering::Relaxed);
            self.lock().insert(p as usize, layout);
        }
        p.cast()
    }

    fn free(&self, p: *mut c_void) {
        if let Some(layout) = self.lock().remove(&(p as usize)) {
            // SAFETY: allocated above with this layout, freed once.
            unsafe { std::alloc::dealloc(p.cast(), layout) };
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Layout>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live(&self) -> usize {
        self.lock().len()
    }
}

/// # Safety
/// `user` is the [`Recorder`] the callbacks were made with.
unsafe fn recorder<'a>(user: *mut c_void) -> &'a Recorder {
    // SAFETY: as the caller promises.
    unsafe { &*user.cast::<Recorder>() }
}

unsafe extern "system" fn allocation(
    user: *mut c_void,
    size: usize,
    align: usize,
    _: vk::SystemAllocationScope,
) -> *mut c_void {
    // SAFETY: the user data of the callbacks this was given in.
    unsafe { recorder(user) }.allocate(size, align)
}

unsafe extern "system" fn reallocation(
    user: *mut c_void,
    original: *mut c_void,
    size: usize,
    align: usize,
    _: vk::SystemAllocationScope,
) -> *mut c_void {
    // SAFETY: as for `allocation`.
    let r = unsafe { recorder(user) };
    if size == 0 {
        r.free(original);
        return std::ptr::null_mut();
    }
    let p = r.allocate(size, align);
    let old = r.lock().get(&(original as usize)).map(|l| l.size());
    if let (false, Some(old)) = (p.is_null(), old) {
        // SAFETY: both blocks are live and at least this long.
        unsafe { std::ptr::copy_nonoverlapping(original.cast::<u8>(), p.cast(), old.min(size)) };
        r.free(original);
    }
    p
}

unsafe extern "system" fn free(user: *mut c_void, memory: *mut c_void) {
    // SAFETY: as for `allocation`.
    unsafe { recorder(user) }.free(memory)
}

/// The child: fails the 1st, 2nd, … allocation of a swapchain's creation
/// until one succeeds; presents a few frames on that one and destroys it.
pub fn child() -> ChildResult<Value> {
    let vk = Vk::new(false)?;
    let mode = vk::PresentModeKHR::IMMEDIATE;
    // One swapchain made and gone first: the one-off descriptors (the
    // layer's probe, the driver's caches) are open by then.
    drop(Chain::new(&vk, mode, 32, 0, vk::SwapchainKHR::null())?);
    let fds_start = fds::count()?;
    let recorder = Recorder {
        budget: AtomicI64::new(0),
        made: AtomicU64::new(0),
        live: Mutex::new(HashMap::new()),
    };
    let callbacks = vk::AllocationCallbacks {
        p_user_data: &recorder as *const Recorder as *mut c_void,
        pfn_allocation: Some(allocation),
        pfn_reallocation: Some(reallocation),
        pfn_free: Some(free),
        ..Default::default()
    };
    let switch = Switch {
        host: Some(&callbacks),
        ..Switch::default()
    };
    let mut failures = Vec::new();
    for n in 0..MAX_POINTS {
        recorder.budget.store(n, Ordering::Relaxed);
        recorder.made.store(0, Ordering::Relaxed);
        match Chain::create(&vk, mode, 32, 0, vk::SwapchainKHR::null(), &switch) {
            Ok(mut chain) => {
                recorder.budget.store(i64::MAX, Ordering::Relaxed);
                let made = recorder.made.load(Ordering::Relaxed);
                for _ in 0..3 {
                    chain.frame()?;
                }
                chain.wait_idle()?;
                chain.destroy_swapchain(Some(&callbacks));
                let live_after_destroy = recorder.live();
                drop(chain);
                return Ok(json!({
                    "fds_start": fds_start,
                    "failures": failures,
                    "made": made,
                    "live_after_destroy": live_after_destroy,
                    "fds_end": fds::count()?,
                }));
            }
            Err(e) => failures.push(json!({
                "result": format!("{e:?}"),
                "live": recorder.live(),
                "fds": fds::count()?,
            })),
        }
    }
    Err(format!("no swapchain within {MAX_POINTS} allocations: {failures:?}").into())
}
