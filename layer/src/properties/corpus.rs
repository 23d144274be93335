//! Replays the corpus in `tests/corpus/`: inputs that once broke a parser
//! or that a fuzzer would start from, each kept as a file. Settings files
//! go through the settings parser, format tables through the feedback; a
//! file whose name starts with `bad-` must draw a warning or an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use wayland_protocols::wp::linux_dmabuf::zv1::client::zwp_linux_dmabuf_feedback_v1::Event;

use crate::platform::wayland::feedback::Feedback;
use crate::plumbing::settings::lookup::{self, Inputs};
use crate::plumbing::settings::CONFIG;

fn files(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

fn is_bad(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("bad-"))
}

#[test]
fn settings_files() {
    for path in files("settings") {
        // Each file as the one `SYNCFILE_WSI_CONFIG` names, read as the
        // layer reads it: a file that is not UTF-8 is ignored whole.
        let env = BTreeMap::from([(CONFIG.to_owned(), path.display().to_string())]);
        let read = |p: &Path| std::fs::read(p);
        let (_, warnings) = lookup::load(&Inputs {
            env: &env,
            exe: None,
            config_dir: None,
            read: &read,
        });
        if is_bad(&path) {
            assert!(!warnings.is_empty(), "{}: no warning", path.display());
        } else {
            assert!(warnings.is_empty(), "{}: {warnings:?}", path.display());
        }
    }
}

#[test]
fn format_tables() {
    for path in files("format-tables") {
        let bytes = std::fs::read(&path).unwrap();
        let fd = rustix::fs::memfd_create("table", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::io::write(&fd, &bytes).unwrap();
        // Bad tables claim more bytes than their file has.
        let size = if is_bad(&path) {
            bytes.len() as u32 + 16
        } else {
            bytes.len() as u32
        };
        let mut fb = Feedback::default();
        assert!(fb.handle(Event::FormatTable { fd, size }).is_none());
        let indices = (0u16..64).flat_map(u16::to_ne_bytes).collect();
        assert!(fb.handle(Event::TrancheFormats { indices }).is_none());
        assert!(fb.handle(Event::TrancheDone).is_none());
        let done = fb.handle(Event::Done).expect("done ends the feedback");
        assert_eq!(done.is_err(), is_bad(&path), "{}", path.display());
    }
}
