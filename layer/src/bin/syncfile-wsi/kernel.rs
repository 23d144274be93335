//! The kernel: its version, the dma-buf sync_file ioctls (asked on a real
//! dma-buf, with the `syncfile` crate's primitives and probe), and the
//! device nodes that make dma-bufs, with what this user may do with them.

use std::path::{Path, PathBuf};

use rustix::fs::Access as Perm;
use serde_json::json;
use syncfile::heap::{DmaHeap, SYSTEM};
use syncfile::kms::Card;
use syncfile::probe::{self, Support};
use syncfile::{Access, DmaBuf, Error};

use crate::report::{row, Mark, Section};

/// What one of the two ioctls answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Works,
    /// `ENOTTY`: the kernel (or a sandbox) has no such ioctl.
    Missing,
    /// Not asked: the export gave no sync_file to import.
    Untried,
    Failed(String),
}

impl Answer {
    fn of(r: syncfile::Result<()>) -> Answer {
        match r {
            Ok(()) => Answer::Works,
            Err(Error::Unsupported) => Answer::Missing,
            Err(e) => Answer::Failed(e.to_string()),
        }
    }

    fn word(&self) -> String {
        match self {
            Answer::Works => "works".into(),
            Answer::Missing => "missing (ENOTTY)".into(),
            Answer::Untried => "not tried".into(),
            Answer::Failed(e) => format!("failed: {e}"),
        }
    }
}

/// The ioctls as asked on one dma-buf.
pub struct Ioctls {
    /// Which source made the dma-buf.
    pub source: String,
    pub export: Answer,
    pub import: Answer,
    /// The layer's own answer (`syncfile::probe`): what its swapchains do.
    pub support: Result<Support, String>,
}

/// The kernel as the doctor found it.
pub struct Kernel {
    /// `None` when no source could make a dma-buf.
    pub ioctls: Option<Ioctls>,
    pub section: Section,
}

fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// A dma-buf from the first source that makes one: the system dma-heap,
/// else a dumb buffer of a DRM card exported with PRIME.
fn dma_buf() -> Option<(String, DmaBuf)> {
    if let Ok(buf) = DmaHeap::open(SYSTEM).and_then(|h| h.alloc(4096)) {
        return Some((format!("dma-heap {}/{SYSTEM}", syncfile::heap::DIR), buf));
    }
    for card in nodes("/dev/dri", "card") {
        let Ok(c) = Card::open(&card) else { continue };
        let made = c.create_dumb(16, 16, 32).and_then(|d| {
            let buf = c.export(d.handle);
            let _ = c.close_handle(d.handle);
            buf
        });
        if let Ok(buf) = made {
            return Some((format!("DRM dumb buffer on {}", card.display()), buf));
        }
    }
    None
}

fn ask(source: String, buf: &DmaBuf) -> Ioctls {
    let exported = buf.export_sync_file(Access::Read);
    let import = match &exported {
        Ok(file) => Answer::of(buf.import_sync_file(file, Access::Read)),
        Err(_) => Answer::Untried,
    };
    Ioctls {
        source,
        export: Answer::of(exported.map(drop)),
        import,
        support: probe::probe(buf).map_err(|e| e.to_string()),
    }
}

/// The entries of `dir` whose names start with `prefix`, sorted.
fn nodes(dir: &str, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

fn permissions(path: &Path) -> (bool, bool) {
    let can = |p| rustix::fs::access(path, p).is_ok();
    (can(Perm::READ_OK), can(Perm::WRITE_OK))
}

pub fn check() -> Kernel {
    let version = release();
    let ioctls = dma_buf().map(|(source, buf)| ask(source, &buf));
    let mut rows = vec![row("version", Mark::Info, &version)];
    let ioctls_json = match &ioctls {
        None => {
            rows.push(row(
                "sync_file ioctls",
                Mark::No,
                "not asked: no dma-buf source usable (udmabuf, a dma-heap, a DRM card)",
            ));
            serde_json::Value::Null
        }
        Some(i) => {
            rows.push(row(
                "EXPORT_SYNC_FILE",
                Mark::of(i.export == Answer::Works),
                format!("{} (on a {})", i.export.word(), i.source),
            ));
            rows.push(row(
                "IMPORT_SYNC_FILE",
                Mark::of(i.import == Answer::Works),
                i.import.word(),
            ));
            json!({
                "source": i.source,
                "export": i.export.word(),
                "import": i.import.word(),
                "available": matches!(i.support, Ok(Support::Available)),
            })
        }
    };
    let mut list = vec![PathBuf::from("/dev/udmabuf")];
    list.extend(nodes(syncfile::heap::DIR, ""));
    list.extend(nodes("/dev/dri", "card"));
    list.extend(nodes("/dev/dri", "renderD"));
    let mut nodes_json = Vec::new();
    for path in list {
        if !path.exists() {
            rows.push(row(path.display().to_string(), Mark::No, "absent"));
            nodes_json.push(json!({ "path": path, "present": false }));
            continue;
        }
        let (r, w) = permissions(&path);
        let driver = path
            .starts_with("/dev/dri")
            .then(|| Card::open(&path).and_then(|c| c.driver_name()).ok())
            .flatten();
        let what = match (r, w) {
            (true, true) => "readable and writable",
            (true, false) => "readable, not writable",
            (false, true) => "writable, not readable",
            (false, false) => "not readable or writable by this user",
        };
        let value = match &driver {
            Some(d) => format!("{d}: {what}"),
            None => what.to_owned(),
        };
        rows.push(row(path.display().to_string(), Mark::of(r && w), value));
        nodes_json.push(json!({
            "path": path, "present": true, "readable": r, "writable": w, "driver": driver,
        }));
    }
    let section = Section {
        name: "kernel",
        rows,
        json: json!({ "version": version, "ioctls": ioctls_json, "nodes": nodes_json }),
    };
    Kernel { ioctls, section }
}
