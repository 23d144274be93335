//! Finding the layer's state for a dispatchable handle, on every call.
//!
//! Every dispatchable handle starts with the loader's dispatch-table pointer,
//! the *dispatch key*: one per instance (shared by its physical devices) and
//! one per device (shared by its queues and command buffers). The state of
//! each instance and device lives in a [`KeyMap`] under that key.
//!
//! The lookup is on the path of every intercepted command, so it takes no
//! lock and hashes no string: a multiplicative hash of the key picks a slot
//! of a fixed open-addressing table, and the first probe almost always
//! finds it (a process has a handful of instances and devices). Only
//! creation and destruction, which are rare, take the writers' mutex.
//!
//! Readers and writers meet without locks because slots change in only
//! three ways, each safe against a concurrent probe: a free or deleted slot
//! becomes occupied (value stored before key), an occupied slot becomes
//! deleted (a tombstone, so probes go on past it), and a deleted slot
//! becomes free only when the slot after it is free, which no probe for a
//! present key can need. A state is freed when its object is destroyed;
//! Vulkan forbids using an object while it is being destroyed, so no reader
//! can still hold it.

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Slots per map. Dispatch keys are live loader allocations, so their number
/// is the number of live instances (or devices) in the process.
const SLOTS: usize = 1024;
const SLOT_BITS: u32 = SLOTS.trailing_zeros();
/// More live entries than this and reservations fail, so probes stay short.
const MAX_LIVE: usize = SLOTS / 2;

const FREE: usize = 0;
const DELETED: usize = usize::MAX;

/// The dispatch key of a dispatchable handle.
///
/// # Safety
/// `handle` is a valid dispatchable Vulkan handle (an instance, physical
/// device, device, queue or command buffer).
#[inline(always)]
pub unsafe fn key<H: ash::vk::Handle>(handle: H) -> usize {
    // SAFETY: the caller passes a valid dispatchable handle, which points to
    // an object whose first word is the loader's dispatch pointer.
    unsafe { *(handle.as_raw() as usize as *const usize) }
}

struct Slot<T> {
    key: AtomicUsize,
    value: AtomicPtr<T>,
}

/// A lock-free map from dispatch key to the state of one instance or device.
pub struct KeyMap<T> {
    slots: [Slot<T>; SLOTS],
    /// Serializes writers; holds the number of live entries.
    writers: Mutex<usize>,
}

#[derive(Debug, thiserror::Error)]
#[error("more than {MAX_LIVE} live objects of one kind")]
pub struct Full;

#[inline(always)]
fn home(key: usize) -> usize {
    // Keys are heap addresses: the low bits are alignment, the high bits are
    // shared. Fibonacci hashing spreads the middle bits over the table.
    (key >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - SLOT_BITS)
}

impl<T> KeyMap<T> {
    pub const fn new() -> Self {
        Self {
            slots: [const {
                Slot {
                    key: AtomicUsize::new(FREE),
                    value: AtomicPtr::new(ptr::null_mut()),
                }
            }; SLOTS],
            writers: Mutex::new(0),
        }
    }

    /// The state stored under `key`.
    ///
    /// # Safety
    /// The object whose dispatch key this is must stay alive (not be
    /// destroyed) while the returned reference is in use; Vulkan's external
    /// synchronization rules give this for the duration of a command on it.
    #[inline(always)]
    pub unsafe fn get(&self, key: usize) -> Option<&T> {
        let mut i = home(key);
        for _ in 0..SLOTS {
            let slot = &self.slots[i];
            let k = slot.key.load(Ordering::Acquire);
            if k == key {
                // SAFETY: the value was stored before the key was published
                // (release/acquire) and is freed only when the object is
                // destroyed, which the caller rules out.
                return unsafe { slot.value.load(Ordering::Relaxed).as_ref() };
            }
            if k == FREE {
                return None;
            }
            i = (i + 1) % SLOTS;
        }
        None
    }

    /// Makes room for one more object before it is created, so that
    /// storing its state afterwards cannot fail.
    pub fn reserve(&self) -> Result<Reservation<'_, T>, Full> {
        let mut live = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        if *live >= MAX_LIVE {
            return Err(Full);
        }
        *live += 1;
        Ok(Reservation {
            map: self,
            used: false,
        })
    }

    /// Takes out the state of an object being destroyed.
    pub fn remove(&self, key: usize) -> Option<Box<T>> {
        let mut live = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        let mut i = home(key);
        for _ in 0..SLOTS {
            let slot = &self.slots[i];
            let k = slot.key.load(Ordering::Relaxed);
            if k == FREE {
                return None;
            }
            if k == key {
                slot.key.store(DELETED, Ordering::Release);
                let value = slot.value.swap(ptr::null_mut(), Ordering::Relaxed);
                *live -= 1;
                self.trim(i);
                // SAFETY: the pointer came from Box::into_raw in insert and
                // was taken out of the slot, so this is its only owner.
                return Some(unsafe { Box::from_raw(value) });
            }
            i = (i + 1) % SLOTS;
        }
        None
    }

    /// Frees tombstones at the end of a probe run, walking back from `i`.
    /// Called with the writers' lock held.
    fn trim(&self, mut i: usize) {
        while self.slots[(i + 1) % SLOTS].key.load(Ordering::Relaxed) == FREE
            && self.slots[i].key.load(Ordering::Relaxed) == DELETED
        {
            self.slots[i].key.store(FREE, Ordering::Release);
            i = (i + SLOTS - 1) % SLOTS;
        }
    }
}

/// Room for one object's state in a [`KeyMap`], given back if unused.
pub struct Reservation<'a, T> {
    map: &'a KeyMap<T>,
    used: bool,
}

impl<T> Reservation<'_, T> {
    /// Stores the state of a new object. The key must not be present: keys
    /// are the loader's allocations, unique among live objects.
    pub fn insert(mut self, key: usize, value: Box<T>) {
        debug_assert!(key != FREE && key != DELETED);
        let _writers = self.map.writers.lock().unwrap_or_else(|e| e.into_inner());
        let mut i = home(key);
        loop {
            let slot = &self.map.slots[i];
            let k = slot.key.load(Ordering::Relaxed);
            if k == FREE || k == DELETED {
                slot.value.store(Box::into_raw(value), Ordering::Relaxed);
                slot.key.store(key, Ordering::Release);
                self.used = true;
                return;
            }
            // At most MAX_LIVE < SLOTS live entries: a free or deleted slot exists.
            i = (i + 1) % SLOTS;
        }
    }
}

impl<T> Drop for Reservation<'_, T> {
    fn drop(&mut self) {
        if !self.used {
            *self.map.writers.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove() {
        let map = Box::new(KeyMap::<u32>::new());
        let keys: Vec<usize> = (1..200).map(|i| 0x5555_0000_0000 + i * 0x40).collect();
        for (n, &k) in keys.iter().enumerate() {
            map.reserve().unwrap().insert(k, Box::new(n as u32));
        }
        for (n, &k) in keys.iter().enumerate() {
            // SAFETY: nothing is removed while the reference is used.
            assert_eq!(unsafe { map.get(k) }, Some(&(n as u32)));
        }
        // SAFETY: as above.
        assert_eq!(unsafe { map.get(0x1234_5670) }, None);
        for &k in keys.iter().step_by(2) {
            assert!(map.remove(k).is_some());
        }
        for (n, &k) in keys.iter().enumerate() {
            let expected = (n % 2 == 1).then_some(n as u32);
            // SAFETY: as above.
            assert_eq!(unsafe { map.get(k) }.copied(), expected);
        }
    }

    #[test]
    fn colliding_keys_survive_churn() {
        let map = Box::new(KeyMap::<usize>::new());
        // Keys that all hash to the same slot build one long probe run.
        let base = 0x7f00_0000_0000usize;
        let same: Vec<usize> = (0..)
            .map(|i| base + i * 16)
            .filter(|&k| home(k) == home(base))
            .take(8)
            .collect();
        for &k in &same {
            map.reserve().unwrap().insert(k, Box::new(k));
        }
        for round in 0..10_000 {
            let k = same[round % 7];
            let v = map.remove(k).unwrap();
            map.reserve().unwrap().insert(k, v);
            // SAFETY: nothing is removed while the reference is used.
            assert_eq!(unsafe { map.get(same[7]) }, Some(&same[7]));
        }
        for &k in &same {
            assert_eq!(*map.remove(k).unwrap(), k);
        }
        assert!(map
            .slots
            .iter()
            .all(|s| s.key.load(Ordering::Relaxed) == FREE));
    }

    #[test]
    fn refuses_past_the_limit() {
        let map = Box::new(KeyMap::<()>::new());
        for i in 0..MAX_LIVE {
            map.reserve().unwrap().insert(0x1000 + i * 16, Box::new(()));
        }
        assert!(map.reserve().is_err());
        drop(map.remove(0x1000));
        assert!(map.reserve().is_ok());
    }
}
