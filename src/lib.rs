//! Safe wrappers over the Linux dma-buf and sync_file ioctls.
//!
//! Linux shares buffers between drivers as *dma-bufs*. Each carries
//! *implicit* fences: the drivers that use it attach a fence per access,
//! and the next user waits for the ones it conflicts with (a reader for the
//! writers, a writer for everyone). A *sync_file* is the *explicit* form of
//! such a fence: a file descriptor that signals when its fences have.
//!
//! Since Linux 6.0 the two meet through two ioctls, which this crate wraps:
//!
//! * [`DmaBuf::export_sync_file`] turns the implicit fences an access would
//!   wait for into a [`SyncFile`];
//! * [`DmaBuf::import_sync_file`] adds a [`SyncFile`]'s fences to the
//!   buffer's implicit fences, as a read or a write.
//!
//! Around them: waiting on both kinds of file with `poll(2)`
//! ([`DmaBuf::wait`], [`SyncFile::wait`]), merging and inspecting sync_files
//! ([`SyncFile::merge`], [`SyncFile::info`]), bracketing CPU access to a
//! mapping ([`DmaBuf::cpu_access`]), and telling a kernel without the ioctls
//! from every other failure ([`probe::probe`], [`Error::Unsupported`]).
//!
//! [`heap`] allocates dma-bufs from a dma-heap, for consumers that own the
//! buffers they read. [`kms`] shows dma-bufs on a display with atomic
//! commits, which the kernel holds until the buffers' fences signal. With the `test-sources` feature, [`sources`] makes
//! dma-bufs and fences
//! without a GPU (the system dma-heap, udmabuf and vgem), for tests.
//!
//! Like rustix, the crate is thin: one method per kernel operation, no
//! waits the caller did not ask for, and errors that keep the kernel's
//! errno. It is Linux only, and it is not a Vulkan or GPU crate: the
//! fences come from whatever driver made them, and the buffers from the
//! caller (a GPU driver's export, a dma-heap, a KMS card).
//!
//! # Example
//!
//! A producer attaches its render's fence to a dma-buf, and a consumer
//! waits for the buffer (`examples/handoff.rs`, which also runs in the
//! project's test guest; on a machine without the system dma-heap it says
//! so and stops):
//!
#![doc = concat!("```\n", include_str!("../examples/handoff.rs"), "```")]
#![deny(missing_docs)]

mod dma_buf;
mod error;
pub mod heap;
mod ioctl;
pub mod kms;
mod poll;
pub mod probe;
#[cfg(feature = "test-sources")]
pub mod sources;
mod sync_file;

pub use dma_buf::{is_dma_buf, Access, BorrowedDmaBuf, CpuAccess, DmaBuf};
pub use error::{Error, Result};
pub use sync_file::{FenceInfo, FenceStatus, SyncFile, SyncFileInfo};
