//! Arrow validity bitmaps as the practice kernels read them in place: the bitmap's bytes and
//! the bit of a chunk's first row (a sliced Arrow array starts mid-byte), least significant
//! bit first; `None` when the chunk has no nulls.

/// A chunk's validity: its bitmap and the bit of its first row, or None (no nulls).
pub type Validity<'a> = Option<(&'a [u8], usize)>;

/// Whether `row` of the chunk is valid (not null).
#[inline]
pub fn is_valid(validity: Validity<'_>, row: usize) -> bool {
    validity.is_none_or(|(bits, offset)| {
        let i = offset + row;
        (bits[i >> 3] >> (i & 7)) & 1 == 1
    })
}

/// Whether the bitmap has a bit for each of the chunk's `rows` rows.
pub fn covers(validity: Validity<'_>, rows: usize) -> bool {
    validity.is_none_or(|(bits, offset)| bits.len() * 8 >= offset + rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_read_from_the_chunk_offset_least_significant_first() {
        let bits = [0b1000_0101u8, 0b0000_0001];
        assert!([0, 2, 7, 8].iter().all(|&r| is_valid(Some((&bits, 0)), r)));
        assert!([1, 3, 6].iter().all(|&r| !is_valid(Some((&bits, 0)), r)));
        // from bit 2: rows 0 and 5 are bits 2 and 7
        assert!(is_valid(Some((&bits, 2)), 0) && is_valid(Some((&bits, 2)), 5));
        assert!(!is_valid(Some((&bits, 2)), 1));
        assert!(is_valid(None, 123));
        assert!(covers(Some((&bits, 2)), 14) && !covers(Some((&bits, 2)), 15));
        assert!(covers(None, usize::MAX));
    }
}
