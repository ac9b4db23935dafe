//! The bytes under the base64 of a progress string: LEB128 varints, zigzag for signed values,
//! and a bounds-checked reader that accepts only the shortest form of each varint, so every
//! value has exactly one encoding. Pure.

/// A LEB128 varint of at most 70 bits; every field fits in 65 (`first_failure_ms + 1`) or,
/// zigzagged, in 65 (a signed offset distance).
pub(super) const MAX_VARINT_LEN: usize = 10;

/// Bytes of `v` as a LEB128 varint.
pub(super) fn varint_len(v: u128) -> usize {
    (128 - v.leading_zeros() as usize).div_ceil(7).max(1)
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `d` as an unsigned value, small when `|d|` is small: 0, -1, 1, -2, … → 0, 1, 2, 3, …
pub(super) fn zigzag(d: i128) -> u128 {
    ((d << 1) ^ (d >> 127)) as u128
}

/// The inverse of [`zigzag`].
pub(super) fn unzigzag(z: u128) -> i128 {
    ((z >> 1) as i128) ^ -((z & 1) as i128)
}

/// Reads the decoded bytes front to back; every read is bounds-checked.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl Reader<'_> {
    pub(super) fn remaining(&self) -> usize {
        self.0.len()
    }

    pub(super) fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    /// A LEB128 varint of at most [`MAX_VARINT_LEN`] bytes in its shortest form (no trailing
    /// zero group).
    pub(super) fn varint(&mut self) -> Option<u128> {
        let mut v = 0u128;
        for i in 0..MAX_VARINT_LEN {
            let b = self.byte()?;
            v |= u128::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return (i == 0 || b != 0).then_some(v);
            }
        }
        None
    }

    /// A varint that must fit `T`.
    pub(super) fn int<T: TryFrom<u128>>(&mut self) -> Option<T> {
        T::try_from(self.varint()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_round_trips_and_keeps_small_values_small() {
        for d in [
            0i128,
            -1,
            1,
            -2,
            2,
            i128::from(i64::MIN),
            i128::from(i64::MAX),
        ] {
            assert_eq!(unzigzag(zigzag(d)), d);
        }
        assert_eq!(
            [0, -1, 1, -2].map(zigzag),
            [0, 1, 2, 3],
            "signed distances interleave"
        );
    }
}
