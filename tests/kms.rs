//! KMS as the display platform will use it, on vkms in the test guest:
//! the card's connector, modes and primary plane; a udmabuf imported as a
//! framebuffer and scanned out by atomic commits, each reported by a flip
//! event; and the kernel holding a flip until the buffer's fences signal
//! (a pending vgem write fence in the dma-buf, or the same fence as the
//! plane's `IN_FENCE_FD`), with the kernel's own flip timestamp against
//! the moment the test signalled the fence as the oracle.

mod common;

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use common::{Outcome, Suite};
use libtest_mimic::Failed;
use rustix::event::{poll, PollFd, PollFlags};
use syncfile::kms::{
    client_cap, AtomicRequest, Card, CommitFlags, FlipEvent, FramebufferDesc, ModeInfo, Object,
};
use syncfile::sources::vgem::Vgem;
use syncfile::sources::{FencedBuffer, Source};
use syncfile::Access;

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
    let tests: [(&str, Test); 3] = [
        ("vkms-scans-out-a-udmabuf", scans_out_a_udmabuf),
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
    let cards = std::fs::read_dir("/dev/dri").map_err(|e| format!("no /dev/dri: {e}"))?;
    for entry in cards.flatten() {
        let path = entry.path();
        let is_card = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("card"));
        if let Some(card) = is_card.then(|| Card::open(&path).ok()).flatten() {
            if card.driver_name().is_ok_and(|n| n == "vkms") {
                return Ok(card);
            }
        }
    }
    Err("no vkms card (the guest loads vkms)".into())
}

/// vkms's display as a commit drives it: its one CRTC, the connected
/// Virtual connector and its preferred mode, and the CRTC's primary plane.
struct Display {
    card: Card,
    crtc: u32,
    connector: u32,
    mode: ModeInfo,
    plane: u32,
    /// Property ids by (object, name).
    props: HashMap<(u32, String), u32>,
}

impl Display {
    fn open() -> Result<Display, Failed> {
        let card = find_vkms()?;
        card.set_client_cap(client_cap::ATOMIC, 1)?;
        card.set_master(true)?;
        let res = card.resources()?;
        let connector = res
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
        let encoder = *connector
            .encoders
            .first()
            .ok_or("the connector has no encoder")?;
        let crtcs = card.encoder_crtcs(encoder)?;
        let (index, &crtc) = res
            .crtcs
            .iter()
            .enumerate()
            .find(|(i, _)| crtcs & (1 << i) != 0)
            .ok_or("no CRTC for the connector")?;
        let mut props = HashMap::new();
        let mut add = |id: u32, kind: Object| -> Result<(), Failed> {
            for p in card.properties(id, kind)? {
                props.insert((id, p.name), p.id);
            }
            Ok(())
        };
        add(crtc, Object::Crtc)?;
        add(connector.id, Object::Connector)?;
        let mut plane = None;
        for id in card.planes()? {
            let p = card.plane(id)?;
            let kind = card.properties(id, Object::Plane)?;
            let primary = kind.iter().any(|k| k.name == "type" && k.value == 1);
            if primary && p.possible_crtcs & (1 << index) != 0 && p.formats.contains(&XRGB8888) {
                plane = Some(id);
                add(id, Object::Plane)?;
                break;
            }
        }
        let plane = plane.ok_or("no primary plane for the CRTC that shows XRGB8888")?;
        Ok(Display {
            card,
            crtc,
            connector: connector.id,
            mode,
            plane,
            props,
        })
    }

    fn prop(&self, object: u32, name: &str) -> Result<u32, Failed> {
        self.props
            .get(&(object, name.to_owned()))
            .copied()
            .ok_or_else(|| format!("object {object} has no {name} property").into())
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

    /// The plane showing `fb` over the whole mode.
    fn show(&self, request: &mut AtomicRequest, fb: u32) -> Result<(), Failed> {
        let (w, h) = self.size();
        let p = self.plane;
        for (name, value) in [
            ("FB_ID", u64::from(fb)),
            ("CRTC_ID", u64::from(self.crtc)),
            ("SRC_X", 0),
            ("SRC_Y", 0),
            ("SRC_W", u64::from(w) << 16),
            ("SRC_H", u64::from(h) << 16),
            ("CRTC_X", 0),
            ("CRTC_Y", 0),
            ("CRTC_W", w.into()),
            ("CRTC_H", h.into()),
        ] {
            request.set(p, self.prop(p, name)?, value);
        }
        Ok(())
    }

    /// Lights the display up with `fb` (a blocking mode set).
    fn mode_set(&self, fb: u32) -> Result<u32, Failed> {
        let blob = self.card.create_mode_blob(&self.mode)?;
        let mut r = AtomicRequest::new();
        r.set(
            self.connector,
            self.prop(self.connector, "CRTC_ID")?,
            self.crtc.into(),
        );
        r.set(self.crtc, self.prop(self.crtc, "MODE_ID")?, blob.into());
        r.set(self.crtc, self.prop(self.crtc, "ACTIVE")?, 1);
        self.show(&mut r, fb)?;
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
        self.show(&mut r, fb)?;
        for &(name, value) in extra {
            r.set(self.plane, self.prop(self.plane, name)?, value);
        }
        let flags = CommitFlags {
            event: true,
            nonblocking: true,
            ..Default::default()
        };
        Ok(self.card.commit(&r, flags, tag)?)
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

    /// Switches the display off again and gives up master.
    fn off(&self, fbs: &[u32], blob: u32) -> Result<(), Failed> {
        let mut r = AtomicRequest::new();
        r.set(self.connector, self.prop(self.connector, "CRTC_ID")?, 0);
        r.set(self.crtc, self.prop(self.crtc, "MODE_ID")?, 0);
        r.set(self.crtc, self.prop(self.crtc, "ACTIVE")?, 0);
        r.set(self.plane, self.prop(self.plane, "FB_ID")?, 0);
        r.set(self.plane, self.prop(self.plane, "CRTC_ID")?, 0);
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
        Ok(self.card.plane(self.plane)?.framebuffer)
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
        event.user_data == 7 && event.crtc == d.crtc,
        "the flip event is not the commit's",
    )?;
    check(
        d.shown()? == fb,
        "after its flip event the plane does not show the second buffer",
    )?;
    d.off(&[fa, fb], blob)
}

/// A flip to a buffer whose dma-buf holds a pending write fence happens
/// only after the fence signals.
fn flip_waits_for_the_write_fence() -> Outcome {
    let d = Display::open()?;
    let (_vgem, a, b) = buffers(&d)?;
    let (fa, fb) = (d.framebuffer(&a)?, d.framebuffer(&b)?);
    let blob = d.mode_set(fa)?;
    let fence = b.attach_fence(Access::Write)?;
    d.flip(fb, 1, &[])?;
    std::thread::sleep(PENDING);
    let signalled = monotonic_ns();
    fence.signal()?;
    let event = d.next_event()?;
    check(
        event.time_ns >= signalled,
        &format!(
            "the flip happened {} µs before its buffer's write fence signalled",
            signalled.saturating_sub(event.time_ns) / 1000
        ),
    )?;
    d.off(&[fa, fb], blob)
}

/// A flip whose plane's `IN_FENCE_FD` is a pending sync_file happens only
/// after it signals.
fn flip_waits_for_the_in_fence() -> Outcome {
    let d = Display::open()?;
    let (vgem, a, b) = buffers(&d)?;
    let (fa, fb) = (d.framebuffer(&a)?, d.framebuffer(&b)?);
    let blob = d.mode_set(fa)?;
    let (fence, sync_file) = vgem.pending_sync_file()?;
    let fd = sync_file.as_fd().as_raw_fd() as u64;
    d.flip(fb, 2, &[("IN_FENCE_FD", fd)])?;
    std::thread::sleep(PENDING);
    let signalled = monotonic_ns();
    fence.signal()?;
    let event = d.next_event()?;
    check(
        event.time_ns >= signalled,
        &format!(
            "the flip happened {} µs before its IN_FENCE_FD signalled",
            signalled.saturating_sub(event.time_ns) / 1000
        ),
    )?;
    d.off(&[fa, fb], blob)
}

fn check(ok: bool, what: &str) -> Outcome {
    if ok {
        Ok(())
    } else {
        Err(what.into())
    }
}
