//! Pacing the reading of response bodies by what is held for them.
//!
//! The engine holds the bytes of each message still incomplete (a JSON body, an
//! SSE event). Over one message's worth in all, only one exchange — the one
//! holding the most, so the closest to its message's end — may read on; the
//! others wait (their bytes stay in the network). However many large answers
//! arrive at once, they are then finished one at a time, not all together. The
//! driver keeps this table beside the engine and hands its verdict to whatever
//! gates the reads.

use std::collections::BTreeMap;

/// The incomplete messages held per exchange, and which exchange reads on when
/// they are over the limit.
#[derive(Debug, Clone)]
pub struct BodyPacing {
    /// Bytes held per exchange (none at 0).
    held: BTreeMap<u64, usize>,
    /// Their sum.
    total: usize,
    /// Over the limit, the exchange that reads on.
    lead: Option<u64>,
    /// Over this many bytes held, only the lead reads.
    limit: usize,
}

impl BodyPacing {
    /// A table with this limit (one message's worth).
    pub fn new(limit: usize) -> Self {
        Self {
            held: BTreeMap::new(),
            total: 0,
            lead: None,
            limit,
        }
    }

    /// Exchange `id` now holds `bytes` (0 when its message completed or it ended).
    /// Returns the new total and lead when either changed (a map lookup otherwise, as
    /// for every small message, which ends in the chunk that began it).
    pub fn update(&mut self, id: u64, bytes: usize) -> Option<(usize, Option<u64>)> {
        let before = match bytes {
            0 => self.held.remove(&id),
            _ => self.held.insert(id, bytes),
        }
        .unwrap_or(0);
        if before == bytes {
            return None;
        }
        self.total = self.total + bytes - before;
        self.lead = if self.total <= self.limit {
            None
        } else if self.lead.is_some_and(|l| self.held.contains_key(&l)) {
            self.lead
        } else {
            self.held.iter().max_by_key(|(_, n)| **n).map(|(id, _)| *id)
        };
        Some((self.total, self.lead))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_the_limit_everyone_reads_over_it_the_fullest_finishes_first() {
        let mut p = BodyPacing::new(100);
        assert_eq!(p.update(1, 40), Some((40, None)));
        assert_eq!(p.update(2, 50), Some((90, None)));
        assert_eq!(p.update(2, 50), None, "nothing changed");
        // Over: the one holding the most leads, and keeps the lead while it holds bytes.
        assert_eq!(p.update(3, 30), Some((120, Some(2))));
        assert_eq!(p.update(1, 70), Some((150, Some(2))));
        // Its message done, the next fullest leads.
        assert_eq!(p.update(2, 0), Some((100, None)));
        assert_eq!(p.update(3, 31), Some((101, Some(1))));
        assert_eq!(p.update(1, 0), Some((31, None)));
        assert_eq!(p.update(3, 0), Some((0, None)));
        assert_eq!(p.update(9, 0), None, "an exchange that never held anything");
    }
}
