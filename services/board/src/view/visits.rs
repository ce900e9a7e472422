//! The visits one board instance holds, by patient, in as little memory as they take.
//!
//! A hash map writes every slot of a table it keeps at most seven-eighths full, and while it
//! grows it holds its old table and the new one, twice that size, at once. Here the visits are
//! one vector sorted by patient: the slots it has not filled yet are never written, and it
//! grows by moving what it holds once. The board's peak memory in the benchmark fell by more
//! than a quarter with it (docs/benchmarks.md, "The board's visits in a sorted vector").
//!
//! Patients come in nearly in order (their numbers come from one sequence, in the order they
//! registered), so almost every new one goes at the end. One that does not (a watch started
//! again goes over the bucket by each key's last change, not by patient) waits in a short
//! unsorted list, which is merged into the vector when it is full: inserting in the middle
//! would move half the vector for each, and a restart could bring thousands.

/// How many out-of-order patients wait before they are merged in: each lookup also scans
/// them, and each merge moves the visits after the first of them.
const UNSORTED_AT_MOST: usize = 512;

/// Values by patient number.
#[derive(Debug)]
pub(super) struct Visits<V> {
    /// Sorted by patient, each patient once.
    sorted: Vec<(i64, V)>,
    /// Patients that came out of order, none of them in `sorted`.
    unsorted: Vec<(i64, V)>,
}

impl<V> Default for Visits<V> {
    fn default() -> Self {
        Self {
            sorted: Vec::new(),
            unsorted: Vec::new(),
        }
    }
}

impl<V: Copy> Visits<V> {
    pub(super) fn get(&self, patient: i64) -> Option<&V> {
        match self.sorted.binary_search_by_key(&patient, |(key, _)| *key) {
            Ok(at) => Some(&self.sorted[at].1),
            Err(_) => self
                .unsorted
                .iter()
                .find(|(key, _)| *key == patient)
                .map(|(_, value)| value),
        }
    }

    /// Sets `patient`'s value, in place of the one it had.
    pub(super) fn insert(&mut self, patient: i64, value: V) {
        match self.sorted.binary_search_by_key(&patient, |(key, _)| *key) {
            Ok(at) => self.sorted[at].1 = value,
            // At the end, unless patients wait unsorted: this one may be among them.
            Err(at) if at == self.sorted.len() && self.unsorted.is_empty() => {
                self.sorted.push((patient, value));
            }
            Err(_) => {
                if let Some(held) = self.unsorted.iter_mut().find(|(key, _)| *key == patient) {
                    held.1 = value;
                    return;
                }
                self.unsorted.push((patient, value));
                if self.unsorted.len() >= UNSORTED_AT_MOST {
                    self.merge();
                }
            }
        }
    }

    /// Removes `patient`, if held. Rare (a key removed from the bucket by hand), so the
    /// vector's tail moves up by one.
    pub(super) fn remove(&mut self, patient: i64) -> Option<V> {
        if let Ok(at) = self.sorted.binary_search_by_key(&patient, |(key, _)| *key) {
            return Some(self.sorted.remove(at).1);
        }
        let at = self.unsorted.iter().position(|(key, _)| *key == patient)?;
        Some(self.unsorted.swap_remove(at).1)
    }

    /// Every value, in no particular order.
    pub(super) fn values(&self) -> impl Iterator<Item = &V> {
        self.sorted
            .iter()
            .chain(&self.unsorted)
            .map(|(_, value)| value)
    }

    /// Merges the unsorted patients into the sorted vector, from its end: each visit moves
    /// once, to its final place, and only those after the first unsorted patient move.
    fn merge(&mut self) {
        self.unsorted.sort_unstable_by_key(|(key, _)| *key);
        let mut old = self.sorted.len();
        self.sorted.extend_from_slice(&self.unsorted);
        let mut to = self.sorted.len();
        while let Some(&last) = self.unsorted.last() {
            to -= 1;
            if old > 0 && self.sorted[old - 1].0 > last.0 {
                old -= 1;
                self.sorted[to] = self.sorted[old];
            } else {
                self.sorted[to] = last;
                self.unsorted.pop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{UNSORTED_AT_MOST, Visits};

    /// A fixed sequence of pseudo-random numbers (xorshift), so a failure repeats.
    struct Numbers(u64);

    impl Numbers {
        fn next(&mut self, below: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % below
        }
    }

    fn check_same(visits: &Visits<u64>, model: &BTreeMap<i64, u64>) {
        let mut held: Vec<u64> = visits.values().copied().collect();
        let mut expected: Vec<u64> = model.values().copied().collect();
        held.sort_unstable();
        expected.sort_unstable();
        assert_eq!(held, expected, "the values held");
        for (patient, value) in model {
            assert_eq!(visits.get(*patient), Some(value), "patient {patient}");
        }
        assert!(
            visits.sorted.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "the vector stays sorted, each patient once"
        );
        assert!(visits.unsorted.len() < UNSORTED_AT_MOST);
    }

    #[test]
    fn holds_what_a_map_would_whatever_the_order_of_the_patients() {
        // In order with small swaps (a live day), then updates and new patients at random
        // (a watch started again), then some removed.
        let mut numbers = Numbers(0x9E37_79B9_7F4A_7C15);
        let mut visits = Visits::default();
        let mut model = BTreeMap::new();
        for step in 0..20_000_i64 {
            let patient = if numbers.next(10) == 0 {
                step.saturating_sub(i64::try_from(numbers.next(40)).unwrap_or(0))
            } else {
                step
            };
            visits.insert(patient, step as u64);
            model.insert(patient, step as u64);
        }
        check_same(&visits, &model);
        for step in 0..20_000_u64 {
            let patient = i64::try_from(numbers.next(60_000)).unwrap_or(0) - 10_000;
            visits.insert(patient, step);
            model.insert(patient, step);
        }
        check_same(&visits, &model);
        for _ in 0..2_000 {
            let patient = i64::try_from(numbers.next(60_000)).unwrap_or(0) - 10_000;
            assert_eq!(visits.remove(patient), model.remove(&patient));
        }
        check_same(&visits, &model);
        assert_eq!(visits.get(-20_000), None);
    }

    #[test]
    fn patients_in_order_never_wait_in_the_unsorted_list() {
        let mut visits = Visits::default();
        for patient in 1..=1_000 {
            visits.insert(patient, 0_u64);
            visits.insert(patient, 1);
        }
        assert!(visits.unsorted.is_empty());
        assert_eq!(visits.sorted.len(), 1_000);
        assert!(visits.values().all(|value| *value == 1));
    }

    #[test]
    fn an_out_of_order_patient_is_found_before_and_after_the_merge() {
        let mut visits = Visits::default();
        visits.insert(10, 1_u64);
        visits.insert(5, 2);
        assert_eq!((visits.get(5), visits.get(10)), (Some(&2), Some(&1)));
        assert_eq!(visits.unsorted.len(), 1);
        // Replaced where it waits, not held twice.
        visits.insert(5, 3);
        assert_eq!(visits.unsorted.len(), 1);
        let patients = i64::try_from(UNSORTED_AT_MOST).unwrap_or(0);
        for patient in 0..patients {
            if patient != 5 {
                visits.insert(-patient, 4);
            }
        }
        assert!(visits.unsorted.len() < UNSORTED_AT_MOST);
        assert_eq!((visits.get(5), visits.get(10)), (Some(&3), Some(&1)));
        assert_eq!(visits.remove(5), Some(3));
        assert_eq!(visits.get(5), None);
    }
}
