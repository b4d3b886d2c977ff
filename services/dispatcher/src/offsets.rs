//! Gap-aware offset tracking for one partition: records finish out of order (a slow endpoint
//! beside fast ones), and the committable position is the lowest unfinished offset.

use std::collections::BTreeSet;

#[derive(Debug, Default)]
pub struct PartitionOffsets {
    unfinished: BTreeSet<i64>,
    /// One past the highest offset seen.
    next: Option<i64>,
    /// The position last committed.
    committed: Option<i64>,
}

impl PartitionOffsets {
    pub fn started(&mut self, offset: i64) {
        self.unfinished.insert(offset);
        self.next = Some(self.next.map_or(offset + 1, |n| n.max(offset + 1)));
    }

    pub fn finished(&mut self, offset: i64) {
        self.unfinished.remove(&offset);
    }

    pub fn in_flight(&self) -> usize {
        self.unfinished.len()
    }

    /// The next offset to read after a restart: everything below it is finished.
    pub fn committable(&self) -> Option<i64> {
        match self.unfinished.first() {
            Some(&lowest) => Some(lowest),
            None => self.next,
        }
    }

    /// The committable position if it moved since the last commit.
    pub fn to_commit(&self) -> Option<i64> {
        self.committable().filter(|c| Some(*c) != self.committed)
    }

    pub fn mark_committed(&mut self, position: i64) {
        self.committed = Some(position);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_unfinished_offset_holds_the_commit() {
        let mut p = PartitionOffsets::default();
        for o in 10..15 {
            p.started(o);
        }
        p.finished(11);
        p.finished(12);
        assert_eq!(p.committable(), Some(10), "10 is still running");
        p.finished(10);
        assert_eq!(p.committable(), Some(13));
        p.finished(14);
        assert_eq!(p.committable(), Some(13));
        p.finished(13);
        assert_eq!(p.committable(), Some(15));
        p.mark_committed(15);
        assert_eq!(p.to_commit(), None);
        assert_eq!(p.in_flight(), 0);
    }
}
