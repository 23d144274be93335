//! KMS as the display platform will use it, on vkms in the test guest:
//! the card's connector, modes and primary plane; a udmabuf imported as a
//! framebuffer and scanned out by atomic commits, each reported by a flip
//! event; and the kernel holding a flip until the buffer's fences signal
//! (a pending vgem write fence in the dma-buf, or the same fence as the
//! plane's `IN_FENCE_FD`), with the kernel's own flip timestamp against
//! the moment the test signalled the fence as the oracle; and what the
//! plane shows read back through vkms's writeback connector.

use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use libtest_mimic::Failed;
use rustix::event::{poll, PollFd, PollFlags};
use syncfile::kms::{
    client_cap, AtomicRequest, Card, CommitFlags, FlipEvent, FramebufferDesc, ModeInfo, Object,
    Output, CONNECTOR_WRITEBACK,
};
use syncfile::sources::vgem::{Vgem, VgemFence};
use syncfile::sources::{FencedBuffer, Source};
use syncfile::{Access, SyncFile};
use syncfile_tests::{Outcome, Suite};

type Test = fn() -> Outcome;

/// `DRM_FORMAT_XRGB8888`.
const XRGB8888: u32 = u32::from_le_bytes(*b"XR24");
/// `DRM_MODE_TYPE_PREFERRED`.
const PREFERRED: u32 = 1 << 3;
/// How long the test leaves a fence pending before it signals it: long
/// enough for a flip that does not wait to happen first.
const PENDING: Duration = Duration::from_millis(300);

fn main() {
    let mut suite = Suite::new();
    let missing = find_vkms().err();
    let tests: [(&str, Test); 4] = [
        ("vkms-scans-out-a-udmabuf", scans_out_a_udmabuf),
        (
            "writeback-reads-back-the-frame",
            writeback_reads_back_the_frame,
        ),
        (
            "flip-waits-for-the-write-fence",
            flip_waits_for_the_write_fence,
        ),
        ("flip-waits-for-the-in-fence", flip_waits_for_the_in_fence),
    ];
    for (name, test) in tests {
        suite.add_unless(name, missing.clone(), test);
    }
    suite.run(true)
}

/// The vkms card, if this machine has one.
fn find_vkms() -> Result<Card, String> {
    Card::find("vkms").map_err(|e| format!("no vkms card ({e}; the guest loads vkms)"))
}

/// vkms's display as a commit drives it: the connected Virtual connector
/// and its preferred mode, routed through its CRTC and primary plane.
struct Display {
    card: Card,
    out: Output,
    mode: ModeInfo,
}

impl Display {
    fn open() -> Result<Display, Failed> {
        let card = find_vkms()?;
        card.set_client_cap(client_cap::ATOMIC, 1)?;
        card.set_master(true)?;
        let connector = card
            .resources()?
            .connectors
            .iter()
            .map(|&c| card.connector(c))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .find(|c| c.connected && !c.modes.is_empty())
            .ok_or("no connected connector with modes")?;
        let mode = *connector
            .modes
            .iter()
            .find(|m| m.type_ & PREFERRED != 0)
            .unwrap_or(&connector.modes[0]);
        let out = Output::route(&card, &connector, XRGB8888)
            .map_err(|e| format!("no CRTC and primary plane showing XRGB8888: {e}"))?;
        Ok(Display { card, out, mode })
    }

    /// The writeback connector, with its properties learnt.
    fn writeback(&mut self) -> Result<u32, Failed> {
        self.card
            .set_client_cap(client_cap::WRITEBACK_CONNECTORS, 1)?;
        let mut found = None;
        for c in self.card.resources()?.connectors {
            if self.card.connector(c)?.kind == CONNECTOR_WRITEBACK {
                found = Some(c);
            }
        }
        let wb = found.ok_or("no writeback connector")?;
        self.out.learn(&self.card, wb, Object::Connector)?;
        Ok(wb)
    }

    fn prop(&self, object: u32, name: &str) -> Result<u32, Failed> {
        self.out
            .prop(object, name)
            .map_err(|_| format!("object {object} has no {name} property").into())
    }

    fn size(&self) -> (u32, u32) {
        (self.mode.hdisplay.into(), self.mode.vdisplay.into())
    }

    /// A framebuffer on `buffer`'s dma-buf, the size of the mode.
    fn framebuffer(&self, buffer: &FencedBuffer) -> Result<u32, Failed> {
        let (w, h) = self.size();
        let handle = self.card.import(buffer.dma_buf().as_fd())?;
        let fb = self.card.add_framebuffer(&FramebufferDesc {
            width: w,
            height: h,
            format: XRGB8888,
            handle,
            pitch: w * 4,
            offset: 0,
            modifier: None,
        })?;
        self.card.close_handle(handle)?;
        Ok(fb)
    }

    /// Lights the display up with `fb` (a blocking mode set).
    fn mode_set(&self, fb: u32) -> Result<u32, Failed> {
        let blob = self.card.create_mode_blob(&self.mode)?;
        let mut r = AtomicRequest::new();
        self.out.enable(&mut r, blob)?;
        self.out.show(&mut r, fb, self.size())?;
        let flags = CommitFlags {
            allow_modeset: true,
            ..Default::default()
        };
        self.card.commit(&r, flags, 0)?;
        Ok(blob)
    }

    /// A nonblocking flip to `fb`, with `extra` set too; its event carries
    /// `tag`.
    fn flip(&self, fb: u32, tag: u64, extra: &[(&str, u64)]) -> Result<(), Failed> {
        let mut r = AtomicRequest::new();
        self.out.show(&mut r, fb, self.size())?;
        for &(name, value) in extra {
            r.set(self.out.plane, self.prop(self.out.plane, name)?, value);
        }
        let flags = CommitFlags {
            event: true,
            nonblocking: true,
            ..Default::default()
        };
        self.card.commit(&r, flags, tag)?;
        Ok(())
    }

    /// The next flip event (the test's commits come one at a time).
    fn next_event(&self) -> Result<FlipEvent, Failed> {
        loop {
            let mut fds = [PollFd::new(&self.card, PollFlags::IN)];
            let ten_s = rustix::event::Timespec {
                tv_sec: 10,
                tv_nsec: 0,
            };
            if poll(&mut fds, Some(&ten_s))? == 0 {
                return Err("no flip event within 10 s".into());
            }
            if let Some(&e) = self.card.read_events()?.first() {
                return Ok(e);
            }
        }
    }

    /// Switches the display (and the connectors in `also`) off again and
    /// gives up master.
    fn off(&self, fbs: &[u32], blob: u32, also: &[u32]) -> Result<(), Failed> {
        let mut r = AtomicRequest::new();
        self.out.disable(&mut r)?;
        for &c in also {
            r.set(c, self.prop(c, "CRTC_ID")?, 0);
        }
        let flags = CommitFlags {
            allow_modeset: true,
            ..Default::default()
        };
        self.card.commit(&r, flags, 0)?;
        for &fb in fbs {
            self.card.remove_framebuffer(fb)?;
        }
        self.card.destroy_blob(blob)?;
        self.card.set_master(false)?;
        Ok(())
    }

    /// The framebuffer the plane shows, as the kernel says.
    fn shown(&self) -> Result<u32, Failed> {
        Ok(self.card.plane(self.out.plane)?.framebuffer)
    }
}

fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Two udmabufs the size of the mode, with vgem to fence them.
fn buffers(d: &Display) -> Result<(Vgem, FencedBuffer, FencedBuffer), Failed> {
    let (w, h) = d.size();
    let len = (w * h * 4) as usize;
    let vgem = Vgem::open()?;
    let a = FencedBuffer::new(Source::Udmabuf, &vgem, len)?;
    let b = FencedBuffer::new(Source::Udmabuf, &vgem, len)?;
    Ok((vgem, a, b))
}

/// A mode set shows the first buffer; a nonblocking flip with an event
/// shows the second, and the event carries the commit's tag.
fn scans_out_a_udmabuf() -> Outcome {
    let d = Display::open()?;
    let (_vgem, a, b) = buffers(&d)?;
    let (fa, fb) = (d.framebuffer(&a)?, d.framebuffer(&b)?);
    let blob = d.mode_set(fa)?;
    check(
        d.shown()? == fa,
        "after the mode set the plane does not show the first buffer",
    )?;
    d.flip(fb, 7, &[])?;
    let event = d.next_event()?;
    check(
        event.user_data == 7 && event.crtc == d.out.crtc,
        "the flip event is not the commit's",
    )?;
    check(
        d.shown()? == fb,
        "after its flip event the plane does not show the second buffer",
    )?;
    d.off(&[fa, fb], blob, &[])
}

/// A flip to a buffer whose dma-buf holds a pending write fence happens
/// only after the fence signals.
fn flip_waits_for_the_write_fence() -> Outcome {
    flip_waits_for(|_, b| {
        let fence = b.attach_fence(Access::Write)?;
        Ok((fence, Vec::new(), "its buffer's write fence"))
    })
}

/// A flip whose plane's `IN_FENCE_FD` is a pending sync_file happens only
/// after it signals.
fn flip_waits_for_the_in_fence() -> Outcome {
    flip_waits_for(|vgem, _| {
        let (fence, sync_file) = vgem.pending_sync_file()?;
        Ok((fence, vec![sync_file], "its IN_FENCE_FD"))
    })
}

/// What a fenced flip waits for: the fence the test signals, the
/// sync_files to pass as the plane's `IN_FENCE_FD`, and a name for it.
type Fencing = (VgemFence, Vec<SyncFile>, &'static str);

/// Mode-sets one buffer, then flips to the other with the fence `fence`
/// makes pending, signals it after [`PENDING`], and holds the kernel's flip
/// time against the moment of the signal.
fn flip_waits_for(fence: impl FnOnce(&Vgem, &FencedBuffer) -> Result<Fencing, Failed>) -> Outcome {
    let d = Display::open()?;
    let (vgem, a, b) = buffers(&d)?;
    let (fa, fb) = (d.framebuffer(&a)?, d.framebuffer(&b)?);
    let blob = d.mode_set(fa)?;
    let (fence, in_fence, what) = fence(&vgem, &b)?;
    let extra: Vec<_> = in_fence
        .iter()
        .map(|f| ("IN_FENCE_FD", f.as_fd().as_raw_fd() as u64))
        .collect();
    d.flip(fb, 1, &extra)?;
    std::thread::sleep(PENDING);
    let signalled = monotonic_ns();
    fence.signal()?;
    let event = d.next_event()?;
    check(
        event.time_ns >= signalled,
        &format!(
            "the flip happened {} µs before {what} signalled",
            signalled.saturating_sub(event.time_ns) / 1000
        ),
    )?;
    d.off(&[fa, fb], blob, &[])
}

/// The test pattern's pixel at (x, y), as XRGB8888.
fn pattern(x: u32, y: u32) -> u32 {
    ((x & 0xff) << 16) | ((y & 0xff) << 8) | ((x ^ y) & 0xff)
}

/// Runs `f` on the pixels of `buffer` (`len` bytes), mapped, inside a CPU
/// access bracket of kind `access`.
fn with_pixels<T>(
    buffer: &FencedBuffer,
    len: usize,
    access: Access,
    f: impl FnOnce(&mut [u32]) -> T,
) -> Result<T, Failed> {
    use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};
    let dma_buf = buffer.dma_buf();
    // SAFETY: a fresh shared mapping of the test's own buffer, at an
    // address the kernel picks, touched only through the slice below and
    // unmapped before returning.
    let map = unsafe {
        mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            dma_buf,
            0,
        )
    }?;
    // SAFETY: `len` bytes (a multiple of 4, page-aligned) that nothing else
    // in this process aliases.
    let pixels = unsafe { std::slice::from_raw_parts_mut(map.cast::<u32>(), len / 4) };
    let bracket = dma_buf.cpu_access(access)?;
    let out = f(pixels);
    bracket.finish()?;
    // SAFETY: `map` came from the mmap above; `pixels` is not used again.
    unsafe { munmap(map, len) }?;
    Ok(out)
}

/// A pattern drawn into the scanned-out udmabuf comes back through the
/// writeback connector pixel for pixel (vkms composes the plane into the
/// writeback framebuffer; the fence the commit hands back says when).
fn writeback_reads_back_the_frame() -> Outcome {
    let mut d = Display::open()?;
    let wb = d.writeback()?;
    let (w, h) = d.size();
    let len = (w * h * 4) as usize;
    let (_vgem, shown, copy) = buffers(&d)?;
    with_pixels(&shown, len, Access::Write, |p| {
        for (i, px) in p.iter_mut().enumerate() {
            *px = pattern(i as u32 % w, i as u32 / w);
        }
    })?;
    with_pixels(&copy, len, Access::Write, |p| p.fill(0))?;
    let (fs, fc) = (d.framebuffer(&shown)?, d.framebuffer(&copy)?);
    let blob = d.mode_set(fs)?;
    // vkms clones nothing: the Virtual connector leaves the CRTC for the
    // writeback connector.
    let mut r = AtomicRequest::new();
    r.set(d.out.connector, d.prop(d.out.connector, "CRTC_ID")?, 0);
    r.set(wb, d.prop(wb, "CRTC_ID")?, d.out.crtc.into());
    r.set(wb, d.prop(wb, "WRITEBACK_FB_ID")?, fc.into());
    r.writeback_out_fence(wb, d.prop(wb, "WRITEBACK_OUT_FENCE_PTR")?);
    d.out.show(&mut r, fs, d.size())?;
    let flags = CommitFlags {
        allow_modeset: true,
        ..Default::default()
    };
    let fence = d
        .card
        .commit(&r, flags, 0)?
        .ok_or("the commit gave no writeback fence")?;
    check(
        fence.wait(Some(Duration::from_secs(10)))?,
        "the writeback fence did not signal",
    )?;
    let wrong = with_pixels(&copy, len, Access::Read, |p| {
        p.iter()
            .enumerate()
            .filter(|&(i, &px)| px & 0x00ff_ffff != pattern(i as u32 % w, i as u32 / w))
            .count()
    })?;
    check(
        wrong == 0,
        &format!(
            "{wrong} of {} pixels read back differ from what was shown",
            w * h
        ),
    )?;
    d.off(&[fs, fc], blob, &[wb])
}

fn check(ok: bool, what: &str) -> Outcome {
    if ok {
        Ok(())
    } else {
        Err(what.into())
    }
}
