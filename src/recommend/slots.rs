//! Where each key (a product, a session: a small integer) has its entry in a list being
//! built, for summing many contributions per key without hashing or sorting. Each use
//! begins a new epoch, so nothing is cleared between uses; kept per thread by its users.

#[derive(Default)]
pub struct Slots {
    slot: Vec<u32>,
    /// The epoch in which each key's slot was set.
    stamp: Vec<u32>,
    epoch: u32,
}

impl Slots {
    /// Begins a use, with room for keys below `len` (more grows as keys come); what the
    /// uses before set is forgotten.
    pub fn begin(&mut self, len: usize) {
        self.grow(len);
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.stamp.fill(0);
            self.epoch = 1;
        }
    }

    /// The entry `key` was given in this use.
    pub fn get(&self, key: usize) -> Option<usize> {
        (self.stamp.get(key) == Some(&self.epoch)).then(|| self.slot[key] as usize)
    }

    /// Gives `key` the entry `entry` for this use.
    pub fn set(&mut self, key: usize, entry: usize) {
        self.grow(key + 1);
        self.stamp[key] = self.epoch;
        self.slot[key] = entry as u32;
    }

    fn grow(&mut self, len: usize) {
        if self.stamp.len() < len {
            let len = len.next_power_of_two();
            self.stamp.resize(len, 0);
            self.slot.resize(len, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_use_sees_only_its_own_entries() {
        let mut s = Slots::default();
        s.begin(4);
        assert_eq!(s.get(2), None);
        s.set(2, 7);
        s.set(9, 1);
        assert_eq!((s.get(2), s.get(9), s.get(3)), (Some(7), Some(1), None));
        s.begin(0);
        assert_eq!(
            (s.get(2), s.get(9)),
            (None, None),
            "forgotten by the next use"
        );
        assert_eq!(s.get(1_000), None);
    }
}
