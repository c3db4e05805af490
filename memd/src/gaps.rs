//! The free gaps of an address space, indexed for first-fit placement in O(log n) whatever
//! the holes (as Linux's maple tree keeps the largest gap of each subtree).
//!
//! A treap (a binary search tree keyed by a gap's start, heap-ordered by a pseudo-random
//! priority, so expected O(log n) deep) in one arena of nodes; each node also holds the largest
//! gap of its subtree, which lets a search skip every subtree where no gap is long enough.
//! The gaps are the complement of the regions in `[0, end)`: [`Gaps::take`] when a region is
//! added, [`Gaps::give`] when one is removed (merging with the gaps beside it).
//!
//! Memory: one 40-byte node a gap, at most one more gap than regions. The arena is compacted
//! when half of it is free slots, and a copy (a fork's) holds the live nodes only.

use alloc::vec::Vec;

/// No node.
const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Node {
    start: u64,
    end: u64,
    /// The longest gap in this node's subtree.
    longest: u64,
    priority: u32,
    left: u32,
    right: u32,
}

/// The free gaps of `[0, end)`, disjoint and never adjacent (a gap always ends where a region
/// starts, or at `end`).
#[derive(Debug)]
pub struct Gaps {
    nodes: Vec<Node>,
    /// Slots of removed nodes, reused first.
    free: Vec<u32>,
    root: u32,
    /// The state of the priority generator.
    seed: u32,
}

impl Gaps {
    /// All of `[0, end)` free: one gap.
    pub fn new(end: u64) -> Gaps {
        let mut gaps = Gaps {
            nodes: Vec::new(),
            free: Vec::new(),
            root: NIL,
            seed: 0x9E37_79B9,
        };
        if end > 0 {
            let n = gaps.node(0, end);
            gaps.root = n;
        }
        gaps
    }

    /// Number of gaps.
    pub fn len(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    /// Whether there is no gap at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn node(&mut self, start: u64, end: u64) -> u32 {
        // xorshift32: priorities only need to look random to keep the tree shallow.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 17;
        self.seed ^= self.seed << 5;
        let n = Node {
            start,
            end,
            longest: end - start,
            priority: self.seed,
            left: NIL,
            right: NIL,
        };
        match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = n;
                i
            }
            None => {
                self.nodes.push(n);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn longest(&self, t: u32) -> u64 {
        if t == NIL {
            0
        } else {
            self.nodes[t as usize].longest
        }
    }

    fn update(&mut self, t: u32) {
        let n = self.nodes[t as usize];
        let longest = (n.end - n.start)
            .max(self.longest(n.left))
            .max(self.longest(n.right));
        self.nodes[t as usize].longest = longest;
    }

    /// Splits `t` into the gaps starting below `key` and the rest.
    fn split(&mut self, t: u32, key: u64) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        let n = self.nodes[t as usize];
        if n.start < key {
            let (l, r) = self.split(n.right, key);
            self.nodes[t as usize].right = l;
            self.update(t);
            (t, r)
        } else {
            let (l, r) = self.split(n.left, key);
            self.nodes[t as usize].left = r;
            self.update(t);
            (l, t)
        }
    }

    /// Joins `a` and `b`, every gap of `a` below every gap of `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.nodes[a as usize].priority > self.nodes[b as usize].priority {
            let r = self.merge(self.nodes[a as usize].right, b);
            self.nodes[a as usize].right = r;
            self.update(a);
            a
        } else {
            let l = self.merge(a, self.nodes[b as usize].left);
            self.nodes[b as usize].left = l;
            self.update(b);
            b
        }
    }

    fn insert(&mut self, start: u64, end: u64) {
        let n = self.node(start, end);
        let (l, r) = self.split(self.root, start);
        let l = self.merge(l, n);
        self.root = self.merge(l, r);
    }

    /// Removes the gap starting at `start` (there must be one).
    fn remove(&mut self, start: u64) {
        let (l, r) = self.split(self.root, start);
        let (m, r) = self.split(r, start + 1);
        if m != NIL {
            self.free.push(m);
        }
        self.root = self.merge(l, r);
        if self.free.len() > 32 && self.free.len() * 2 > self.nodes.len() {
            *self = self.compacted();
        }
    }

    /// The same gaps in an arena of live nodes only.
    fn compacted(&self) -> Gaps {
        let mut copy = Gaps {
            nodes: Vec::with_capacity(self.len()),
            free: Vec::new(),
            root: NIL,
            seed: self.seed,
        };
        for (start, end) in self.iter() {
            copy.insert(start, end);
        }
        copy
    }

    /// The gap holding `addr` (`start <= addr < end`).
    pub fn containing(&self, addr: u64) -> Option<(u64, u64)> {
        let mut t = self.root;
        let mut best = None;
        while t != NIL {
            let n = &self.nodes[t as usize];
            if n.start <= addr {
                best = Some((n.start, n.end));
                t = n.right;
            } else {
                t = n.left;
            }
        }
        best.filter(|&(_, end)| addr < end)
    }

    /// The gap ending at `end` exactly, if any.
    fn ending_at(&self, end: u64) -> Option<(u64, u64)> {
        end.checked_sub(1)
            .and_then(|last| self.containing(last))
            .filter(|&(_, e)| e == end)
    }

    /// The gap starting at `start` exactly, if any.
    fn starting_at(&self, start: u64) -> Option<(u64, u64)> {
        self.containing(start).filter(|&(s, _)| s == start)
    }

    /// `[start, end)` is no longer free (a region was added there): the gap holding it keeps
    /// what lies on either side. `false`, with nothing changed, when the range is not inside
    /// one gap.
    pub fn take(&mut self, start: u64, end: u64) -> bool {
        let Some((s, e)) = self.containing(start) else {
            return false;
        };
        if end > e || start >= end {
            return false;
        }
        self.remove(s);
        if s < start {
            self.insert(s, start);
        }
        if end < e {
            self.insert(end, e);
        }
        true
    }

    /// `[start, end)` is free again (a region was removed), joined with the gaps beside it.
    pub fn give(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut s, mut e) = (start, end);
        if let Some((ls, _)) = self.ending_at(start) {
            self.remove(ls);
            s = ls;
        }
        if let Some((_, re)) = self.starting_at(end) {
            self.remove(end);
            e = re;
        }
        self.insert(s, e);
    }

    /// The first gap (lowest start) of at least `len` bytes starting at or above `lo`.
    fn first_fit(&self, t: u32, lo: u64, len: u64) -> Option<(u64, u64)> {
        if t == NIL || self.longest(t) < len {
            return None;
        }
        let n = self.nodes[t as usize];
        if n.start < lo {
            return self.first_fit(n.right, lo, len);
        }
        self.first_fit(n.left, lo, len)
            .or_else(|| (n.end - n.start >= len).then_some((n.start, n.end)))
            .or_else(|| self.first_fit(n.right, lo, len))
    }

    /// The lowest `s` with `[s, s + len)` free and inside `[lo, hi)` (first fit by address),
    /// or `None`. O(log n) expected.
    pub fn find(&self, len: u64, lo: u64, hi: u64) -> Option<u64> {
        if len == 0 || lo >= hi || hi - lo < len {
            return None;
        }
        if let Some((_, e)) = self.containing(lo)
            && e.min(hi) - lo >= len
        {
            return Some(lo);
        }
        let (s, _) = self.first_fit(self.root, lo, len)?;
        (s.checked_add(len)? <= hi).then_some(s)
    }

    /// Every gap in address order (for checks).
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut stack = Vec::new();
        let mut t = self.root;
        core::iter::from_fn(move || {
            while t != NIL {
                stack.push(t);
                t = self.nodes[t as usize].left;
            }
            let n = stack.pop()?;
            let node = &self.nodes[n as usize];
            t = node.right;
            Some((node.start, node.end))
        })
    }
}

impl Clone for Gaps {
    fn clone(&self) -> Gaps {
        self.compacted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const P: u64 = 4096;

    #[test]
    fn take_and_give_keep_the_complement() {
        let mut g = Gaps::new(100 * P);
        assert!(g.take(10 * P, 20 * P));
        assert!(g.take(30 * P, 31 * P));
        assert!(!g.take(15 * P, 16 * P), "inside a region");
        assert!(!g.take(25 * P, 35 * P), "across a region");
        assert_eq!(
            g.iter().collect::<Vec<_>>(),
            vec![(0, 10 * P), (20 * P, 30 * P), (31 * P, 100 * P)]
        );
        g.give(30 * P, 31 * P);
        assert_eq!(
            g.iter().collect::<Vec<_>>(),
            vec![(0, 10 * P), (20 * P, 100 * P)]
        );
        g.give(10 * P, 20 * P);
        assert_eq!(g.iter().collect::<Vec<_>>(), vec![(0, 100 * P)]);
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn find_is_first_fit_within_bounds() {
        let mut g = Gaps::new(1000 * P);
        // One-page holes between one-page regions from page 100 to 300, then a big gap.
        for i in (100..300).step_by(2) {
            assert!(g.take(i * P, (i + 1) * P));
        }
        assert!(g.take(0, 100 * P));
        assert_eq!(g.find(P, 0, 1000 * P), Some(101 * P));
        assert_eq!(g.find(2 * P, 0, 1000 * P), Some(299 * P));
        assert_eq!(g.find(2 * P, 150 * P, 1000 * P), Some(299 * P));
        assert_eq!(g.find(P, 150 * P, 1000 * P), Some(151 * P));
        assert_eq!(
            g.find(P, 151 * P, 152 * P),
            Some(151 * P),
            "lo inside a gap"
        );
        assert_eq!(g.find(2 * P, 0, 300 * P), None, "past hi");
        assert_eq!(g.find(701 * P, 0, 1000 * P), Some(299 * P));
        assert_eq!(g.find(702 * P, 0, 1000 * P), None);
        assert_eq!(g.find(0, 0, 1000 * P), None);
    }

    #[test]
    fn matches_a_scan_of_every_gap_under_random_changes() {
        let mut g = Gaps::new(4096 * P);
        let mut used = vec![false; 4096];
        let mut x = 12345u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..3000 {
            let a = next() % 4096;
            let n = 1 + next() % 16;
            let b = (a + n).min(4096);
            if next() % 2 == 0 {
                if (a..b).all(|i| !used[i as usize]) {
                    assert!(g.take(a * P, b * P));
                    (a..b).for_each(|i| used[i as usize] = true);
                }
            } else {
                // Free each run of used pages in [a, b).
                let mut i = a;
                while i < b {
                    if used[i as usize] {
                        let s = i;
                        while i < b && used[i as usize] {
                            used[i as usize] = false;
                            i += 1;
                        }
                        g.give(s * P, i * P);
                    } else {
                        i += 1;
                    }
                }
            }
            let len = 1 + next() % 8;
            let lo = next() % 4096;
            let hi = lo + next() % (4096 - lo + 1);
            let want = (lo..hi.saturating_sub(len - 1))
                .find(|&s| (s..s + len).all(|i| !used[i as usize]))
                .map(|s| s * P);
            assert_eq!(g.find(len * P, lo * P, hi * P), want);
        }
        // The gaps are exactly the free runs.
        let mut runs = Vec::new();
        let mut i = 0;
        while i < 4096 {
            if !used[i] {
                let s = i;
                while i < 4096 && !used[i] {
                    i += 1;
                }
                runs.push((s as u64 * P, i as u64 * P));
            } else {
                i += 1;
            }
        }
        assert_eq!(g.iter().collect::<Vec<_>>(), runs);
        assert!(g.nodes.len() <= 2 * g.len() + 33, "the arena is compacted");
        let copy = g.clone();
        assert_eq!(copy.iter().collect::<Vec<_>>(), runs);
        assert_eq!(copy.nodes.len(), g.len(), "a copy holds live nodes only");
    }
}
