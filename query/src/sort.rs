//! Sorting one VARCHAR column (`ORDER BY customer_id`, the runner's activation lists) by the first
//! 16 bytes of each string as one `u128`, the full strings compared only where those are equal.
//!
//! Written here rather than taken from `arrow-ord`, whose sort of a string column compares the
//! strings through slices (a length check, a `memcmp` call and an indirection for every comparison):
//! customer keys are mostly 16 bytes or fewer, so an integer comparison decides almost every pair.
//! Measured on 674k 16-byte keys: see BENCHMARKS.md ("The journey run: statistics and sorted keys").

use arrow_array::{Array, StringArray, UInt32Array};

/// The first 16 bytes of `s`, big-endian, zero-padded: `prefix(a) < prefix(b)` implies `a < b`
/// bytewise (equal prefixes decide nothing: "ab" and "ab\0" share one).
fn prefix(s: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    let n = s.len().min(16);
    if let (Some(dst), Some(src)) = (b.get_mut(..n), s.get(..n)) {
        dst.copy_from_slice(src);
    }
    u128::from_be_bytes(b)
}

/// The row order that sorts `a` (bytewise, which is the order of UTF-8 strings), ascending or
/// descending; `None` when `a` has NULLs or more rows than a `u32` counts (the caller sorts
/// another way).
pub(crate) fn string_order(a: &StringArray, descending: bool) -> Option<UInt32Array> {
    if a.null_count() > 0 || u32::try_from(a.len()).is_err() {
        return None;
    }
    let mut v: Vec<(u128, u32)> = (0..a.len())
        .map(|i| (prefix(a.value(i).as_bytes()), i as u32))
        .collect();
    let full = |i: u32| a.value(i as usize).as_bytes();
    v.sort_unstable_by(|x, y| {
        let o = x.0.cmp(&y.0).then_with(|| full(x.1).cmp(full(y.1)));
        if descending {
            o.reverse()
        } else {
            o
        }
    });
    Some(v.into_iter().map(|(_, i)| i).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// The order equals a plain sort of the strings, for strings that share long prefixes, hold
    /// NUL bytes, are empty, or are not ASCII.
    #[test]
    fn the_order_is_the_strings_order() {
        let mut rnd = crate::test_rng(0x2545_F491_4F6C_DD1Du64);
        let alphabet = ["a", "b", "\0", "é", "z", "0", "9", "\u{1F600}"];
        let mut strings: Vec<String> = Vec::new();
        for _ in 0..5000 {
            let mut s = match rnd(4) {
                0 => String::new(),
                1 => "customer-0000000".to_string(),
                2 => "ab".to_string(),
                _ => format!("{:016}", rnd(1000)),
            };
            for _ in 0..rnd(20) {
                s.push_str(alphabet[rnd(alphabet.len() as u64) as usize]);
            }
            strings.push(s);
        }
        let a = StringArray::from(strings.clone());
        for descending in [false, true] {
            let order = string_order(&a, descending).unwrap();
            let got: Vec<&str> = order
                .values()
                .iter()
                .map(|i| a.value(*i as usize))
                .collect();
            let mut want: Vec<&str> = strings.iter().map(String::as_str).collect();
            want.sort_unstable();
            if descending {
                want.reverse();
            }
            assert_eq!(got, want, "descending: {descending}");
        }
        let with_null = StringArray::from(vec![Some("a"), None]);
        assert!(string_order(&with_null, false).is_none());
    }
}
