//! dma-bufs and fences without a GPU, for tests (feature `test-sources`).
//!
//! Three kernel facilities make dma-bufs on any machine that has them: the
//! system dma-heap ([`heap`]), udmabuf ([`udmabuf`]) and the virtual GEM
//! driver ([`vgem`]), which also makes fences the caller signals. They are
//! often missing on development machines, so [`availability`] tells a test
//! harness whether to run, skip, or fail the tests that need them.
//! [`FencedBuffer`] puts pending fences on a buffer from any of them.

use std::fmt;
use std::sync::OnceLock;

use crate::error::Result;
use crate::DmaBuf;

pub use buffer::FencedBuffer;

mod buffer;
pub mod heap;
pub mod raw;
mod uapi;
pub mod udmabuf;
pub mod vgem;

/// The environment variable that says "this is the test VM": set to `1`, a
/// missing source is a failure instead of a reason to skip.
pub const VM_ENV: &str = "SYNCFILE_WSI_VM";

/// One way to make dma-bufs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The system dma-heap, [`heap`].
    Heap,
    /// A sealed memfd through udmabuf, [`udmabuf`].
    Udmabuf,
    /// A vgem dumb buffer exported with PRIME, [`vgem`].
    Vgem,
}

impl Source {
    /// Every source, for tests that run on each.
    pub const ALL: [Source; 3] = [Source::Heap, Source::Udmabuf, Source::Vgem];

    /// A short lowercase name, for test names.
    pub fn name(self) -> &'static str {
        match self {
            Source::Heap => "heap",
            Source::Udmabuf => "udmabuf",
            Source::Vgem => "vgem",
        }
    }

    /// A new dma-buf of at least `len` bytes from this source. A vgem
    /// buffer made here has no handle left to attach fences with; use
    /// [`vgem::Vgem`] directly for that.
    pub fn alloc(self, len: usize) -> Result<DmaBuf> {
        match self {
            Source::Heap => heap::alloc(len),
            Source::Udmabuf => udmabuf::alloc(len),
            Source::Vgem => vgem::Vgem::open()?.create_buffer(len)?.export(),
        }
    }

    /// Why this source cannot make buffers here, or `None` if it can: it
    /// really makes (and frees) one small buffer.
    pub fn missing(self) -> Option<String> {
        let error = self.alloc(1).err()?;
        let what = match self {
            Source::Heap => heap::PATH,
            Source::Udmabuf => udmabuf::PATH,
            Source::Vgem => "a vgem card node in /dev/dri",
        };
        Some(match error.errno() {
            Some(rustix::io::Errno::NOENT | rustix::io::Errno::NODEV) => {
                format!("{what} not present")
            }
            _ => format!("{what} unusable: {error}"),
        })
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// What a test harness should do with tests that need some sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Every source works: run the tests.
    Ready,
    /// A source is missing and this is not the VM: report the tests as
    /// ignored, for these reasons (one per missing source).
    Skip(Vec<String>),
    /// A source is missing in the VM, where all must work: fail the tests,
    /// for these reasons (one per missing source).
    Fail(Vec<String>),
}

/// Whether this process runs in the test VM ([`VM_ENV`] is `1`).
pub fn in_vm() -> bool {
    std::env::var_os(VM_ENV).is_some_and(|value| value == "1")
}

/// Checks `needs` (each source once per process, remembered) and says what
/// to do with tests that need them.
///
/// ```
/// use syncfile::sources::{availability, Availability, Source};
///
/// match availability(&[Source::Udmabuf]) {
///     Availability::Ready => {
///         let buffer = Source::Udmabuf.alloc(4096)?;
///         assert!(syncfile::is_dma_buf(&buffer)?);
///     }
///     Availability::Skip(reasons) => println!("ignored: {}", reasons.join(", ")),
///     Availability::Fail(reasons) => panic!("the test VM lacks {}", reasons.join(", ")),
/// }
/// # Ok::<(), syncfile::Error>(())
/// ```
pub fn availability(needs: &[Source]) -> Availability {
    let missing: Vec<String> = needs.iter().filter_map(|s| cached_missing(*s)).collect();
    if missing.is_empty() {
        Availability::Ready
    } else if in_vm() {
        Availability::Fail(missing)
    } else {
        Availability::Skip(missing)
    }
}

fn cached_missing(source: Source) -> Option<String> {
    static HEAP: OnceLock<Option<String>> = OnceLock::new();
    static UDMABUF: OnceLock<Option<String>> = OnceLock::new();
    static VGEM: OnceLock<Option<String>> = OnceLock::new();
    let cell = match source {
        Source::Heap => &HEAP,
        Source::Udmabuf => &UDMABUF,
        Source::Vgem => &VGEM,
    };
    cell.get_or_init(|| source.missing()).clone()
}
