//! `pNext` chains: finding a structure in the application's chain, and
//! passing the driver a chain without some of the application's structures
//! while never writing to them (they are the application's, and `const`).

use std::ffi::c_void;

use ash::vk;

use super::registry;
use crate::plumbing::loader;

/// The first structure of type `T` in the input chain at `p_next`.
///
/// # Safety
/// `p_next` is null or the start of a valid input chain that outlives the
/// returned reference.
pub unsafe fn find<'a, T: vk::TaggedStructure>(p_next: *const c_void) -> Option<&'a T> {
    let mut p = p_next.cast::<vk::BaseInStructure<'_>>();
    while !p.is_null() {
        // SAFETY: every structure of a valid chain starts with sType and pNext.
        let node = unsafe { &*p };
        if node.s_type == T::STRUCTURE_TYPE {
            // SAFETY: the structure its sType names.
            return Some(unsafe { &*p.cast::<T>() });
        }
        p = node.p_next;
    }
    None
}

/// An input chain as the layer passes it on: the application's, without
/// the structures left out. Structures before the last one left out are
/// shallow copies (their own pointers still point into the application's
/// memory), relinked; everything after it is the application's own.
pub struct Edited {
    /// The copies, 8-byte aligned; boxed, so they stay where they are
    /// while the chain is in use.
    _copies: Vec<Box<[u64]>>,
    head: *const c_void,
}

/// A structure the layer would have to copy but does not know the size
/// of (it is newer than the layer's registry).
#[derive(Debug, thiserror::Error)]
#[error("the chain holds {0:?}, a structure this layer does not know")]
pub struct UnknownStructure(pub vk::StructureType);

impl Edited {
    /// The chain at `p_next` without the structures of the types in
    /// `leave_out`.
    ///
    /// # Safety
    /// As [`find`]; the result is used only while the application's chain
    /// is alive.
    pub unsafe fn without(
        p_next: *const c_void,
        leave_out: &[vk::StructureType],
    ) -> Result<Edited, UnknownStructure> {
        let mut nodes = Vec::new();
        let mut p = p_next.cast::<vk::BaseInStructure<'_>>();
        while !p.is_null() {
            nodes.push(p);
            // SAFETY: as in `find`.
            p = unsafe { (*p).p_next };
        }
        // SAFETY: the nodes of a valid chain.
        let s_type = |n: *const vk::BaseInStructure<'_>| unsafe { (*n).s_type };
        let Some(last) = nodes.iter().rposition(|&n| leave_out.contains(&s_type(n))) else {
            return Ok(Edited {
                _copies: Vec::new(),
                head: p_next,
            });
        };
        // SAFETY: as above.
        let mut next: *const c_void = unsafe { (*nodes[last]).p_next }.cast();
        let mut copies = Vec::new();
        for &node in nodes[..last].iter().rev() {
            let ty = s_type(node);
            if leave_out.contains(&ty) {
                continue;
            }
            let size = registry::chained_size(ty)
                .or_else(|| loader::chained_size(ty))
                .ok_or(UnknownStructure(ty))?;
            let mut copy = vec![0u64; size.div_ceil(8)].into_boxed_slice();
            // SAFETY: the node is a structure of `size` bytes (its sType
            // says so), the copy has room for them, and the two do not
            // overlap; the copy is then relinked to what follows it.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    node.cast::<u8>(),
                    copy.as_mut_ptr().cast::<u8>(),
                    size,
                );
                (*copy.as_mut_ptr().cast::<vk::BaseOutStructure<'_>>()).p_next =
                    next.cast_mut().cast();
            }
            next = copy.as_ptr().cast();
            copies.push(copy);
        }
        Ok(Edited {
            _copies: copies,
            head: next,
        })
    }

    /// The chain, for the `pNext` of the layer's copy of the structure it
    /// hangs from.
    pub fn head(&self) -> *const c_void {
        self.head
    }
}
