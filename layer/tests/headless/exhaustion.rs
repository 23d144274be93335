//! Descriptors running out under the layer (`RLIMIT_NOFILE` a few above
//! what the process holds): swapchain creation fails whole, with a
//! result, and leaves nothing behind; frames that cannot get a descriptor
//! end with a result the application can act on; once descriptors are
//! back, the same swapchain works again; nothing leaks.

use ash::vk;
use libtest_mimic::Completion;
use serde_json::{json, Value};

use crate::client::{Chain, Vk};
use crate::common::child::Result as ChildResult;
use crate::common::{check, child_json, stat, Outcome};
use crate::fds;
use crate::support::{baseline, run_ok_within, Machine, Scratch};

/// Descriptors left free while swapchain creation is tried: fewer than one
/// swapchain needs (a dma-buf and its consumer's copy per image, the
/// consumer's bell).
const SPARE: u64 = 2;
const FRAMES: u32 = 6;

pub fn descriptors_run_out(m: &Machine) -> Outcome {
    if let Some(skip) = m.lacks(&[&m.vulkan]) {
        return skip;
    }
    if baseline() {
        return Ok(Completion::ignored_with(
            "the layer's own descriptors; Mesa's WSI needs none here",
        ));
    }
    let s = Scratch::new("descriptors")?;
    let mut c = s.child("descriptors")?;
    let out = run_ok_within(&mut c, std::time::Duration::from_secs(300))?;
    let r = child_json(&out)?;
    let stats = s.stats()?;
    check(r["created_short"].is_string(), || {
        format!("a swapchain was made with {SPARE} descriptors to spare: {r}")
    })?;
    check(r["fds_after_failed_create"] == r["fds_start"], || {
        format!("a failed creation left descriptors behind: {r}")
    })?;
    let after: Vec<&Value> = r["after"]
        .as_array()
        .ok_or("no frames after")?
        .iter()
        .collect();
    check(
        after.len() == FRAMES as usize && after.iter().all(|f| f.is_u64()),
        || format!("the swapchain did not work again once descriptors were back: {r}"),
    )?;
    check(r["fds_end"] == r["fds_start"], || {
        format!("descriptors leaked: {r}")
    })?;
    check(stat(&stats, &["panics_caught"]) == 0, || {
        format!("the layer caught panics: {stats}")
    })?;
    let log = String::from_utf8_lossy(&out.stderr);
    let said = log
        .lines()
        .filter(|l| l.contains("vkCreateSwapchainKHR"))
        .count();
    check(said >= 1, || {
        format!("the failed creation was not logged: {log}")
    })?;
    println!(
        "descriptors: creation with {SPARE} to spare: {}; frames with none to spare: {}; after: {} frames",
        r["created_short"], r["starved"], after.len()
    );
    Ok(Completion::Completed)
}

fn set_limit(soft: u64) -> ChildResult<()> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit on a struct of our own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        l.rlim_cur = soft.min(l.rlim_max);
        if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
    }
    Ok(())
}

fn frames(chain: &mut Chain<'_>, n: u32) -> Vec<Value> {
    (0..n)
        .map(|_| match chain.frame() {
            Ok(i) => json!(i),
            Err(e) => json!(e.to_string()),
        })
        .collect()
}

/// The child of [`descriptors_run_out`].
pub fn child() -> ChildResult<Value> {
    let vk = Vk::new(false)?;
    let mode = vk::PresentModeKHR::IMMEDIATE;
    // One swapchain made and gone first, so the driver's and the layer's
    // one-off descriptors (its probe, its caches) are open already.
    drop(Chain::new(&vk, mode, 32, 0, vk::SwapchainKHR::null())?);
    let (fds_start, normal) = (fds::count()?, 65536);
    set_limit(fds::highest()? as u64 + 1 + SPARE)?;
    let created = Chain::new(&vk, mode, 32, 0, vk::SwapchainKHR::null());
    set_limit(normal)?;
    let created_short = match created {
        Ok(_) => Value::Null,
        Err(e) => json!(e.to_string()),
    };
    let fds_after_failed_create = fds::count()?;
    let mut chain = Chain::new(&vk, mode, 32, 0, vk::SwapchainKHR::null())?;
    frames(&mut chain, 3);
    set_limit(fds::highest()? as u64 + 1)?;
    let starved = frames(&mut chain, FRAMES);
    set_limit(normal)?;
    // The frames that failed may have left their semaphores signalled;
    // the device waits them out before the swapchain goes on.
    chain.wait_idle()?;
    let after = frames(&mut chain, FRAMES);
    chain.wait_idle()?;
    drop(chain);
    Ok(json!({
        "fds_start": fds_start,
        "created_short": created_short,
        "fds_after_failed_create": fds_after_failed_create,
        "starved": starved,
        "after": after,
        "fds_end": fds::count()?,
    }))
}
