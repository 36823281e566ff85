//! Sets of group sequences (or subscribe IDs) kept as merged inclusive ranges: which groups
//! of a subscription are accounted for. Sequential values take one entry whatever their
//! number. Sets fed by a peer are capped ([`Ranges::insert_capped`]).

use std::collections::BTreeMap;

/// Group sequences, as disjoint, non-adjacent inclusive ranges keyed by their start.
#[derive(Debug, Default)]
pub(super) struct Ranges(BTreeMap<u64, u64>);

impl Ranges {
    /// Adds `start..=end` (in either order), merging with overlapping or adjacent ranges.
    pub(super) fn insert(&mut self, start: u64, end: u64) {
        let (mut start, mut end) = (start.min(end), start.max(end));
        let touching: Vec<(u64, u64)> = self
            .0
            .range(..=end.saturating_add(1))
            .rev()
            .take_while(|&(_, &e)| e.saturating_add(1) >= start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touching {
            self.0.remove(&s);
            start = start.min(s);
            end = end.max(e);
        }
        self.0.insert(start, end);
    }

    /// Adds `start..=end`, then forgets the lowest ranges while more than `cap` are held: a
    /// peer that makes the set sparse (disjoint drops, scattered IDs) costs at most `cap`
    /// entries. Forgetting only ever makes the set smaller, never claims a value it lacks.
    pub(super) fn insert_capped(&mut self, start: u64, end: u64, cap: usize) {
        self.insert(start, end);
        while self.0.len() > cap.max(1) {
            self.0.pop_first();
        }
    }

    /// How many disjoint ranges it holds.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether `seq` is in the set.
    pub(super) fn contains(&self, seq: u64) -> bool {
        self.0
            .range(..=seq)
            .next_back()
            .is_some_and(|(_, &e)| e >= seq)
    }

    /// Whether every sequence of `start..=end` is in the set (vacuously true when
    /// `end < start`).
    pub(super) fn covers(&self, start: u64, end: u64) -> bool {
        end < start
            || self
                .0
                .range(..=start)
                .next_back()
                .is_some_and(|(_, &e)| e >= end)
    }
}

#[cfg(test)]
mod tests {
    use super::Ranges;

    #[test]
    fn merges_overlapping_and_adjacent_ranges() {
        let mut r = Ranges::default();
        r.insert(5, 7);
        r.insert(1, 1);
        r.insert(9, 9);
        assert!(!r.covers(1, 9));
        assert!(!r.contains(8) && r.contains(9) && r.contains(6));
        r.insert(8, 8);
        assert!(r.covers(5, 9));
        r.insert(3, 2);
        assert!(!r.covers(1, 9), "4 is missing");
        r.insert(4, 4);
        assert!(r.covers(1, 9));
        assert_eq!(r.0.len(), 1);
        assert!(!r.covers(0, 9) && !r.covers(1, 10));
        assert!(r.covers(7, 3), "an empty range is covered");
        r.insert(u64::MAX, u64::MAX);
        r.insert(0, 0);
        assert!(r.contains(u64::MAX) && r.covers(0, 9));
    }

    #[test]
    fn a_capped_set_forgets_its_lowest_ranges() {
        let mut r = Ranges::default();
        for v in (0..200_000u64).step_by(2) {
            r.insert_capped(v, v, 1024);
        }
        assert_eq!(r.len(), 1024);
        assert!(r.contains(199_998) && !r.contains(0));
        // Contiguous values still merge into one entry.
        let mut r = Ranges::default();
        for v in 1..=1_000_000u64 {
            r.insert_capped(v, v, 4);
        }
        assert_eq!(r.len(), 1);
        assert!(r.covers(1, 1_000_000));
    }
}
