//! The free gaps of an address space, indexed for first-fit placement in O(log n) whatever
//! the holes (as Linux's maple tree keeps the largest gap of each subtree).
//!
//! A treap (a binary search tree keyed by a gap's start, heap-ordered by a priority hashed
//! from the start, so expected O(log n) deep) of small boxed nodes; each node also holds the
//! largest gap of its subtree, which lets a search skip every subtree where no gap is long
//! enough. The gaps are the complement of the regions in `[0, end)`: [`Gaps::take`] when a
//! region is added, [`Gaps::give`] when one is removed (merging with the gaps beside it).
//!
//! Memory: one 48-byte node a gap, at most one more gap than regions; no large contiguous
//! allocation (memd's heap serves small blocks best).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

type Tree = Option<Box<Node>>;

#[derive(Clone, Debug)]
struct Node {
    start: u64,
    end: u64,
    /// The longest gap in this node's subtree.
    longest: u64,
    priority: u64,
    left: Tree,
    right: Tree,
}

/// The secret mixed into every priority ([`set_seed`]).
static SEED: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);

/// Mixes `seed` into the priorities of every gap index made from now on: with a seed a
/// process cannot know, it cannot choose addresses whose priorities would make a tree deep
/// (memd seeds it with its layout randomization's entropy).
pub fn set_seed(seed: u64) {
    SEED.store(seed | 1, Ordering::Relaxed);
}

/// A priority that looks random (splitmix64 of the start and the seed), so the tree stays
/// shallow.
fn priority(start: u64) -> u64 {
    let mut z = start.wrapping_add(SEED.load(Ordering::Relaxed));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn longest(t: &Tree) -> u64 {
    t.as_ref().map_or(0, |n| n.longest)
}

fn update(n: &mut Node) {
    n.longest = (n.end - n.start)
        .max(longest(&n.left))
        .max(longest(&n.right));
}

/// Splits `t` into the gaps starting below `key` and the rest.
fn split(t: Tree, key: u64) -> (Tree, Tree) {
    let Some(mut n) = t else {
        return (None, None);
    };
    if n.start < key {
        let (l, r) = split(n.right.take(), key);
        n.right = l;
        update(&mut n);
        (Some(n), r)
    } else {
        let (l, r) = split(n.left.take(), key);
        n.left = r;
        update(&mut n);
        (l, Some(n))
    }
}

/// Joins `a` and `b`, every gap of `a` below every gap of `b`.
fn merge(a: Tree, b: Tree) -> Tree {
    match (a, b) {
        (None, b) => b,
        (a, None) => a,
        (Some(mut a), Some(mut b)) => {
            if a.priority > b.priority {
                a.right = merge(a.right.take(), Some(b));
                update(&mut a);
                Some(a)
            } else {
                b.left = merge(Some(a), b.left.take());
                update(&mut b);
                Some(b)
            }
        }
    }
}

/// Applies `f` to the gap starting at `key` (its start may move, but not past a neighbour:
/// the order of the tree holds) and refreshes the longest gaps on the way back up; whether
/// there was one.
fn adjust(t: &mut Tree, key: u64, f: impl FnOnce(&mut Node)) -> bool {
    let Some(n) = t else {
        return false;
    };
    let found = if key < n.start {
        adjust(&mut n.left, key, f)
    } else if key > n.start {
        adjust(&mut n.right, key, f)
    } else {
        f(n);
        true
    };
    update(n);
    found
}

/// The first gap (lowest start) of at least `len` bytes starting at or above `lo`.
fn first_fit(t: &Tree, lo: u64, len: u64) -> Option<(u64, u64)> {
    let n = t.as_ref().filter(|n| n.longest >= len)?;
    if n.start < lo {
        return first_fit(&n.right, lo, len);
    }
    first_fit(&n.left, lo, len)
        .or_else(|| (n.end - n.start >= len).then_some((n.start, n.end)))
        .or_else(|| first_fit(&n.right, lo, len))
}

/// The free gaps of `[0, end)`, disjoint and never adjacent (a gap always ends where a region
/// starts, or at `end`).
#[derive(Clone, Debug)]
pub struct Gaps {
    root: Tree,
    len: usize,
}

impl Gaps {
    /// All of `[0, end)` free: one gap.
    pub fn new(end: u64) -> Gaps {
        let mut gaps = Gaps { root: None, len: 0 };
        if end > 0 {
            gaps.insert(0, end);
        }
        gaps
    }

    /// Number of gaps.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no gap at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn insert(&mut self, start: u64, end: u64) {
        let node = Box::new(Node {
            start,
            end,
            longest: end - start,
            priority: priority(start),
            left: None,
            right: None,
        });
        let (l, r) = split(self.root.take(), start);
        self.root = merge(merge(l, Some(node)), r);
        self.len += 1;
    }

    /// Removes the gap starting at `start` (there must be one).
    fn remove(&mut self, start: u64) {
        let (l, r) = split(self.root.take(), start);
        let (m, r) = split(r, start + 1);
        if m.is_some() {
            self.len -= 1;
        }
        self.root = merge(l, r);
    }

    /// The gap holding `addr` (`start <= addr < end`).
    pub fn containing(&self, addr: u64) -> Option<(u64, u64)> {
        let mut t = &self.root;
        let mut best = None;
        while let Some(n) = t {
            if n.start <= addr {
                best = Some((n.start, n.end));
                t = &n.right;
            } else {
                t = &n.left;
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
        // In place where the node stays (the usual case: a mapping placed at a gap's start).
        match (s < start, end < e) {
            (false, false) => self.remove(s),
            (false, true) => {
                adjust(&mut self.root, s, |n| n.start = end);
            }
            (true, false) => {
                adjust(&mut self.root, s, |n| n.end = start);
            }
            (true, true) => {
                adjust(&mut self.root, s, |n| n.end = start);
                self.insert(end, e);
            }
        }
        true
    }

    /// `[start, end)` is free again (a region was removed), joined with the gaps beside it.
    pub fn give(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        // Joined in place to the gap before, or the one after (whose start moves down).
        let right = self.starting_at(end);
        match (self.ending_at(start), right) {
            (Some((ls, _)), Some((_, re))) => {
                self.remove(end);
                adjust(&mut self.root, ls, |n| n.end = re);
            }
            (Some((ls, _)), None) => {
                adjust(&mut self.root, ls, |n| n.end = end);
            }
            (None, Some(_)) => {
                adjust(&mut self.root, end, |n| n.start = start);
            }
            (None, None) => self.insert(start, end),
        }
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
        let (s, _) = first_fit(&self.root, lo, len)?;
        (s.checked_add(len)? <= hi).then_some(s)
    }

    /// Every gap in address order (for checks).
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut stack: Vec<&Node> = Vec::new();
        let mut t = self.root.as_deref();
        core::iter::from_fn(move || {
            while let Some(n) = t {
                stack.push(n);
                t = n.left.as_deref();
            }
            let n = stack.pop()?;
            t = n.right.as_deref();
            Some((n.start, n.end))
        })
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
        assert_eq!(g.len(), runs.len());
        let copy = g.clone();
        assert_eq!(copy.iter().collect::<Vec<_>>(), runs);
    }
}
