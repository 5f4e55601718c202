//! A bounded queue of the most recent items, shared by the fold's rings
//! (track, voltages, events, requests) and each device's uplink log.

use std::collections::VecDeque;

/// A queue that forgets its oldest item once full.
#[derive(Clone, Debug)]
pub struct Ring<T> {
    items: VecDeque<T>,
    cap: usize,
}

impl<T> Ring<T> {
    /// An empty ring holding at most `cap` items.
    pub fn new(cap: usize) -> Ring<T> {
        Ring {
            items: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Adds at the back, returning the item that fell off the front.
    pub fn push(&mut self, item: T) -> Option<T> {
        let evicted = (self.items.len() == self.cap)
            .then(|| self.items.pop_front())
            .flatten();
        self.items.push_back(item);
        evicted
    }

    /// Adds in order of `key` (usually the record time), so a late batch
    /// takes its place instead of being drawn after newer items. When full,
    /// the oldest goes; an item older than all of a full ring is not kept.
    pub fn insert_ordered<K: Ord>(&mut self, item: T, key: impl Fn(&T) -> K) {
        let k = key(&item);
        let mut at = self.items.partition_point(|x| key(x) <= k);
        if self.items.len() == self.cap {
            if at == 0 {
                return;
            }
            self.items.pop_front();
            at -= 1;
        }
        self.items.insert(at, item);
    }

    /// Items, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator {
        self.items.iter()
    }

    /// Items, oldest first, mutable.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.items.iter_mut()
    }

    /// How many items are held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The most recent item.
    pub fn last(&self) -> Option<&T> {
        self.items.back()
    }

    /// The item at `index`, counted from the oldest.
    pub fn get(&self, index: usize) -> Option<&T> {
        self.items.get(index)
    }

    /// The most items this ring holds.
    pub fn capacity(&self) -> usize {
        self.cap
    }
}
