//! The compositor's dma-buf feedback (`platform::wayland::feedback`) and
//! its format table: bytes and indices from another process, trusted for
//! nothing. Tables decode entry by entry, tranches name only entries of
//! the table, a table larger than its file is refused (reading past a
//! file's end would raise SIGBUS in the application), and no sequence of
//! events panics.

use std::os::fd::OwnedFd;

use proptest::prelude::*;
use wayland_protocols::wp::linux_dmabuf::zv1::client::zwp_linux_dmabuf_feedback_v1::Event;

use crate::platform::wayland::feedback::Feedback;
use crate::platform::wayland::formats::{parse_format_table, tranche_pairs};

fn memfd(bytes: &[u8]) -> OwnedFd {
    let fd = rustix::fs::memfd_create("table", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::io::write(&fd, bytes).unwrap();
    fd
}

/// The events of a feedback, as a compositor (good or bad) might send them.
#[derive(Clone, Debug)]
enum Sent {
    /// A table of these bytes, announced as this many.
    Table(Vec<u8>, u32),
    Indices(Vec<u8>),
    TrancheDone,
    Done,
}

fn sent() -> impl Strategy<Value = Sent> {
    prop_oneof![
        (proptest::collection::vec(any::<u8>(), 0..200), any::<u32>())
            .prop_map(|(b, size)| Sent::Table(b, size)),
        proptest::collection::vec(any::<u8>(), 0..200).prop_flat_map(|b| {
            let n = b.len() as u32;
            prop_oneof![Just(n), 0..=n].prop_map(move |size| Sent::Table(b.clone(), size))
        }),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Sent::Indices),
        Just(Sent::TrancheDone),
        Just(Sent::Done),
    ]
}

proptest! {
    #[test]
    fn tables_decode_entry_by_entry(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let table = parse_format_table(&bytes);
        prop_assert_eq!(table.len(), bytes.len() / 16);
        for (e, chunk) in table.iter().zip(bytes.chunks_exact(16)) {
            prop_assert_eq!(e.0.to_ne_bytes(), [chunk[0], chunk[1], chunk[2], chunk[3]]);
            prop_assert_eq!(&e.1.to_ne_bytes()[..], &chunk[8..16]);
        }
    }

    #[test]
    fn tranches_name_only_table_entries(
        table in proptest::collection::vec((any::<u32>(), any::<u64>()), 0..20),
        indices in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let pairs = tranche_pairs(&table, &indices);
        prop_assert!(pairs.len() <= indices.len() / 2);
        prop_assert!(pairs.iter().all(|p| table.contains(p)));
    }

    #[test]
    fn no_feedback_panics_and_oversized_tables_are_refused(
        events in proptest::collection::vec(sent(), 0..16),
    ) {
        let mut fb = Feedback::default();
        // At each `done` the feedback holds pairs of tables it accepted
        // (tranches name the table current when they came), or the error
        // of a table refused since the last good one.
        let mut known: Vec<(u32, u64)> = Vec::new();
        let mut refused = false;
        for e in events {
            let event = match e {
                Sent::Table(bytes, size) => {
                    if size as usize > bytes.len() {
                        refused = true;
                    } else {
                        known.extend(parse_format_table(&bytes[..size as usize]));
                        refused = false;
                    }
                    Event::FormatTable { fd: memfd(&bytes), size }
                }
                Sent::Indices(indices) => Event::TrancheFormats { indices },
                Sent::TrancheDone => Event::TrancheDone,
                Sent::Done => Event::Done,
            };
            if let Some(result) = fb.handle(event) {
                match result {
                    Ok(tranches) => {
                        prop_assert!(!refused);
                        for pair in tranches.iter().flatten() {
                            prop_assert!(known.contains(pair));
                        }
                    }
                    Err(_) => prop_assert!(refused),
                }
                refused = false;
            }
        }
    }
}
