//! 16-bit RTP sequence number arithmetic.

/// Extends 16-bit sequence numbers to a monotonic `i64` line, relative to the highest value
/// seen so far (a jump of at most ±32767 is taken as the nearest interpretation, so wraps in
/// either direction are handled).
#[derive(Clone, Debug, Default)]
pub struct SeqUnwrapper {
    last: Option<i64>,
}

impl SeqUnwrapper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Unwraps `seq` and moves the reference point forward when it is newer.
    pub fn unwrap(&mut self, seq: u16) -> i64 {
        let ext = self.peek(seq);
        if self.last.is_none_or(|l| ext > l) {
            self.last = Some(ext);
        }
        ext
    }

    /// Unwraps `seq` without moving the reference point.
    pub fn peek(&self, seq: u16) -> i64 {
        match self.last {
            None => i64::from(seq),
            Some(last) => {
                let delta = seq.wrapping_sub(last as u16) as i16;
                last + i64::from(delta)
            }
        }
    }

    /// Highest unwrapped value seen so far.
    pub fn last(&self) -> Option<i64> {
        self.last
    }

    pub fn reset(&mut self) {
        self.last = None;
    }
}

/// `a` is newer than `b` in 16-bit serial number arithmetic.
pub fn seq_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrap_across_wrap_both_directions() {
        let mut u = SeqUnwrapper::new();
        assert_eq!(u.unwrap(65534), 65534);
        assert_eq!(u.unwrap(65535), 65535);
        assert_eq!(u.unwrap(0), 65536);
        assert_eq!(u.unwrap(1), 65537);
        // A late packet from before the wrap stays before it.
        assert_eq!(u.unwrap(65533), 65533);
        assert_eq!(u.last(), Some(65537));
        let mut d = SeqUnwrapper::new();
        assert_eq!(d.unwrap(2), 2);
        assert_eq!(d.unwrap(65535), -1);
        assert!(seq_newer(0, 65535));
        assert!(!seq_newer(65535, 0));
        assert!(!seq_newer(5, 5));
    }
}
