//! The most frequent keys in bounded memory: the space-saving algorithm (Metwally et al.,
//! 2005). With `capacity` counters, every key seen more than `total / capacity` times is
//! kept; a count may be over-estimated by at most the count of the entry it replaced.

#[derive(Debug)]
pub(super) struct TopK {
    entries: Vec<(String, u64)>,
    capacity: usize,
}

impl TopK {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            entries: Vec::with_capacity(capacity),
            capacity,
        }
    }

    /// Count one more of `key`: its counter, a free one, or the smallest one taken over.
    pub(super) fn add(&mut self, key: &str) {
        if let Some(entry) = self.entries.iter_mut().find(|(k, _)| k == key) {
            entry.1 += 1;
        } else if self.entries.len() < self.capacity {
            self.entries.push((key.to_owned(), 1));
        } else if let Some(smallest) = self.entries.iter_mut().min_by_key(|(_, n)| *n) {
            key.clone_into(&mut smallest.0);
            smallest.1 += 1;
        }
    }

    /// The `n` largest counts, largest first (ties by key).
    pub(super) fn top(&self, n: usize) -> Vec<(String, u64)> {
        let mut top = self.entries.clone();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(n);
        top
    }
}

#[cfg(test)]
mod tests {
    use super::TopK;

    /// A stream of many distinct keys keeps the frequent ones in a fixed number of entries.
    #[test]
    fn frequent_keys_survive_a_flood_of_rare_ones() {
        let mut top = TopK::new(8);
        for i in 0..10_000 {
            top.add(&format!("rare-{i}"));
            if i % 4 == 0 {
                top.add("hot");
            }
            if i % 5 == 0 {
                top.add("warm");
            }
        }
        // 14,500 counted, 8 counters: every key seen more than 1,812 times is kept.
        assert_eq!(top.entries.len(), 8);
        let mut best: Vec<String> = top.top(2).into_iter().map(|(k, _)| k).collect();
        best.sort();
        assert_eq!(best, ["hot", "warm"]);
    }
}
