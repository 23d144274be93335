//! Atomic commits and the events that report them.

use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use rustix::io::Errno;

use super::uapi::{self, call};
use super::Card;
use crate::{Result, SyncFile};

/// Property values to set in one commit, grouped by object as the kernel
/// wants them.
#[derive(Clone, Debug, Default)]
pub struct AtomicRequest {
    objects: Vec<(u32, Vec<(u32, u64)>)>,
    /// A writeback connector's `WRITEBACK_OUT_FENCE_PTR`, which the commit
    /// points at a descriptor it hands back.
    out_fence: Option<(u32, u32)>,
}

impl AtomicRequest {
    /// An empty request.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets property `property` of object `object` to `value`.
    pub fn set(&mut self, object: u32, property: u32, value: u64) -> &mut Self {
        match self.objects.iter_mut().find(|(o, _)| *o == object) {
            Some((_, props)) => props.push((property, value)),
            None => self.objects.push((object, vec![(property, value)])),
        }
        self
    }

    /// Asks writeback connector `connector` for a fence that signals when
    /// its framebuffer holds the frame: its `WRITEBACK_OUT_FENCE_PTR`
    /// property is `property`. [`Card::commit`] returns the fence.
    pub fn writeback_out_fence(&mut self, connector: u32, property: u32) -> &mut Self {
        self.out_fence = Some((connector, property));
        self
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty() && self.out_fence.is_none()
    }
}

/// How a commit is made (`DRM_MODE_ATOMIC_*`, `DRM_MODE_PAGE_FLIP_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitFlags {
    /// Send a [`FlipEvent`] when the commit is on the screen.
    pub event: bool,
    /// Return at once; the kernel applies it once its fences signal.
    pub nonblocking: bool,
    /// A mode set may happen (a CRTC switched on or off, a new mode).
    pub allow_modeset: bool,
    /// Only check that the commit would be accepted.
    pub test_only: bool,
    /// Flip without waiting for vblank (tearing), where the driver can.
    pub tearing: bool,
}

impl CommitFlags {
    fn raw(self) -> u32 {
        [
            (self.event, 0x0001),
            (self.tearing, 0x0002),
            (self.test_only, 0x0100),
            (self.nonblocking, 0x0200),
            (self.allow_modeset, 0x0400),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .fold(0, |a, (_, bit)| a | bit)
    }
}

/// A commit reached the screen (`DRM_EVENT_FLIP_COMPLETE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlipEvent {
    /// What the commit passed in.
    pub user_data: u64,
    /// The vblank it happened at, in the clock of
    /// [`cap::TIMESTAMP_MONOTONIC`](super::cap::TIMESTAMP_MONOTONIC)
    /// (`CLOCK_MONOTONIC` on every current kernel), in ns.
    pub time_ns: u64,
    /// The CRTC's vblank counter.
    pub sequence: u32,
    /// The CRTC that flipped.
    pub crtc: u32,
}

impl Card {
    /// `DRM_IOCTL_MODE_ATOMIC`; `user_data` comes back in the flip event.
    /// Returns the writeback fence if the request asked for one.
    pub fn commit(
        &self,
        request: &AtomicRequest,
        flags: CommitFlags,
        user_data: u64,
    ) -> Result<Option<SyncFile>> {
        // Where the kernel writes the writeback fence's descriptor.
        let mut out_fence: i32 = -1;
        let mut request = request.clone();
        if let Some((connector, property)) = request.out_fence {
            request.set(
                connector,
                property,
                std::ptr::from_mut(&mut out_fence) as u64,
            );
        }
        let mut objects = Vec::with_capacity(request.objects.len());
        let mut counts = Vec::with_capacity(request.objects.len());
        let mut props = Vec::new();
        let mut values = Vec::new();
        for (object, set) in &request.objects {
            objects.push(*object);
            counts.push(set.len() as u32);
            props.extend(set.iter().map(|(p, _)| *p));
            values.extend(set.iter().map(|(_, v)| *v));
        }
        let mut a = uapi::Atomic {
            flags: flags.raw(),
            count_objs: objects.len() as u32,
            objs_ptr: objects.as_ptr() as u64,
            count_props_ptr: counts.as_ptr() as u64,
            props_ptr: props.as_ptr() as u64,
            prop_values_ptr: values.as_ptr() as u64,
            reserved: 0,
            user_data,
        };
        // SAFETY: `objects` and `counts` have `count_objs` entries, `props`
        // and `values` the sum of the counts; all outlive the call, as does
        // `out_fence`, the one value the kernel writes through.
        unsafe { call::<{ uapi::MODE_ATOMIC }, _>(self.as_fd(), &mut a) }?;
        Ok((out_fence >= 0 && !flags.test_only).then(|| {
            // SAFETY: the kernel installed this descriptor for us.
            SyncFile::from(unsafe { OwnedFd::from_raw_fd(out_fence) })
        }))
    }

    /// The flip events waiting on the card, without blocking (the card is
    /// opened non-blocking; `poll(2)` it for readability to wait).
    pub fn read_events(&self) -> Result<Vec<FlipEvent>> {
        let mut buf = [0u8; 1024];
        let n = match rustix::io::read(self.as_fd(), &mut buf) {
            Ok(n) => n,
            Err(Errno::AGAIN) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        Ok(parse_events(&buf[..n]))
    }
}

/// The flip events in `bytes` (whole `struct drm_event`s, as a read of the
/// card returns them); events of other kinds are skipped.
fn parse_events(bytes: &[u8]) -> Vec<FlipEvent> {
    let u32_at = |b: &[u8], at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= uapi::EVENT_HEADER {
        let kind = u32_at(rest, 0);
        let len = u32_at(rest, 4) as usize;
        if len < uapi::EVENT_HEADER || len > rest.len() {
            break;
        }
        let event = &rest[..len];
        if kind == uapi::EVENT_FLIP_COMPLETE && len >= uapi::EVENT_VBLANK_LEN {
            let user_data = u64::from(u32_at(event, 8)) | (u64::from(u32_at(event, 12)) << 32);
            let (sec, usec) = (u64::from(u32_at(event, 16)), u64::from(u32_at(event, 20)));
            out.push(FlipEvent {
                user_data,
                time_ns: sec * 1_000_000_000 + usec * 1000,
                sequence: u32_at(event, 24),
                crtc: u32_at(event, 28),
            });
        }
        rest = &rest[len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vblank(kind: u32, user_data: u64, sec: u32, usec: u32, seq: u32, crtc: u32) -> Vec<u8> {
        let mut e = Vec::new();
        for v in [kind, 32] {
            e.extend(v.to_ne_bytes());
        }
        e.extend(user_data.to_ne_bytes());
        for v in [sec, usec, seq, crtc] {
            e.extend(v.to_ne_bytes());
        }
        e
    }

    #[test]
    fn flip_events_are_parsed_and_others_skipped() {
        let mut bytes = vblank(0x01, 1, 0, 0, 0, 0);
        bytes.extend(vblank(0x02, 0x1_0000_0002, 3, 250, 7, 42));
        bytes.extend([0u8; 5]);
        assert_eq!(
            parse_events(&bytes),
            [FlipEvent {
                user_data: 0x1_0000_0002,
                time_ns: 3_000_250_000,
                sequence: 7,
                crtc: 42,
            }]
        );
    }

    #[test]
    fn a_truncated_event_ends_the_list() {
        let mut bytes = vblank(0x02, 9, 1, 0, 1, 1);
        bytes.truncate(20);
        assert!(parse_events(&bytes).is_empty());
    }

    #[test]
    fn requests_group_properties_by_object() {
        let mut r = AtomicRequest::new();
        r.set(1, 10, 100).set(2, 20, 200).set(1, 11, 101);
        assert_eq!(
            r.objects,
            [(1, vec![(10, 100), (11, 101)]), (2, vec![(20, 200)])]
        );
        let flags = CommitFlags {
            event: true,
            nonblocking: true,
            ..Default::default()
        };
        assert_eq!(flags.raw(), 0x0201);
    }
}
