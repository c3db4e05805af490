//! Shared-memory objects: the frames behind `MAP_SHARED` anonymous mappings.
//!
//! An object holds one reference on each of its frames, created zero-filled on first touch, so
//! every process mapping the object sees the same frame whenever it touches the page. Its
//! `mapped` count is the number of pages of regions (in all processes) that refer to it; when it
//! falls to zero the object and its frames go. A 2 MiB-aligned block of the object may be
//! backed by one huge run of 512 consecutive frames ([`SharedObject::huge`]): each process
//! mapping it then maps it as one 2 MiB page (`huge.rs`).

use crate::frames::FrameAllocator;
use crate::kernel::FrameAddr;
use alloc::collections::{BTreeMap, BTreeSet};
use hashbrown::HashMap;

/// One shared-memory object.
#[derive(Default)]
pub struct SharedObject {
    /// Page index to frame.
    pub pages: BTreeMap<u64, FrameAddr>,
    /// Pages of regions referring to the object.
    pub mapped: u64,
    /// The first page index of each 2 MiB block backed by 512 consecutive frames, 2 MiB
    /// aligned: what a process may map as one huge page.
    pub huge: BTreeSet<u64>,
}

/// Every shared-memory object, by id (never 0).
#[derive(Default)]
pub struct SharedObjects {
    objects: HashMap<u32, SharedObject>,
    next: u32,
}

impl SharedObjects {
    /// A new object for a mapping of `pages` pages; `None` when ids are exhausted.
    pub fn create(&mut self, pages: u64) -> Option<u32> {
        for _ in 0..4 {
            self.next = self.next.wrapping_add(1);
            if self.next != 0 && !self.objects.contains_key(&self.next) {
                self.objects.insert(
                    self.next,
                    SharedObject {
                        pages: BTreeMap::new(),
                        mapped: pages,
                        huge: BTreeSet::new(),
                    },
                );
                return Some(self.next);
            }
        }
        None
    }

    /// The object `id`.
    pub fn get_mut(&mut self, id: u32) -> Option<&mut SharedObject> {
        self.objects.get_mut(&id)
    }

    /// Adds `pages` region pages referring to object `id` (a fork, a split mapping).
    pub fn add_mapped(&mut self, id: u32, pages: u64) {
        if let Some(o) = self.objects.get_mut(&id) {
            o.mapped += pages;
        }
    }

    /// Removes `pages` region pages referring to object `id`; frees the object's frames when
    /// none are left.
    pub fn drop_mapped(&mut self, id: u32, pages: u64, frames: &mut FrameAllocator) {
        let Some(o) = self.objects.get_mut(&id) else {
            return;
        };
        o.mapped = o.mapped.saturating_sub(pages);
        if o.mapped == 0
            && let Some(o) = self.objects.remove(&id)
        {
            for frame in o.pages.into_values() {
                frames.drop_ref(frame);
            }
        }
    }

    /// Number of live objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether there are no objects.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}
