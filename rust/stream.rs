//! Stores that write past the cache, for results nobody reads soon.
//!
//! A pass writes 65 bytes of results per unit, into memory that is in no cache. An ordinary
//! store first reads the line it lands on ("read for ownership"), so every result line costs
//! a read and a write of memory; on files of one or two columns the results outweigh the
//! input. A non-temporal store writes a whole line without reading it. Its price: such stores
//! are weakly ordered, so a thread must [`fence`] before another one may read what it wrote.

use std::mem::MaybeUninit;

/// The line a non-temporal store writes whole.
const LINE: usize = 64;

/// `source` to `target` (the same length): one 64-byte non-temporal store per line when
/// `target` is whole aligned lines (a tile's float64 output: its length is a constant where
/// this is inlined), an ordinary copy otherwise. Until [`fence`], other threads may not see a
/// streamed line.
///
/// The stores are single 64-byte ones: four 16-byte SSE2 stores to a line measured 20% slower
/// on a whole pass over a binary file (Zen 4), and a general copy's branches (partial lines
/// at both ends) in the tile loop changed how the compiler laid that loop out (twice as slow).
///
/// # Safety
/// The CPU has AVX-512F. Every element of `source` is initialized (it is read as raw bytes).
///
/// ```
/// use std::mem::MaybeUninit;
///
/// #[repr(align(64))]
/// struct Line([MaybeUninit<f64>; 8]);
/// # #[cfg(target_arch = "x86_64")]
/// if std::arch::is_x86_feature_detected!("avx512f") {
///     let source = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0].map(MaybeUninit::new);
///     let mut target = Line([MaybeUninit::uninit(); 8]);
///     unsafe { _core::stream::line(&mut target.0, &source) };
///     _core::stream::fence();
///     assert_eq!(unsafe { target.0[7].assume_init() }, 8.0);
/// }
/// ```
#[inline(always)]
pub unsafe fn line<T: Copy>(target: &mut [MaybeUninit<T>], source: &[MaybeUninit<T>]) {
    assert_eq!(target.len(), source.len(), "a copy needs slices of one length");
    #[cfg(target_arch = "x86_64")]
    if whole_lines(target) {
        use std::arch::x86_64::{_mm512_loadu_si512, _mm512_stream_si512};
        let (to, from) = (target.as_mut_ptr().cast::<u8>(), source.as_ptr().cast::<u8>());
        for at in (0..std::mem::size_of_val(target)).step_by(LINE) {
            // SAFETY: AVX-512F is present (the contract); aligned whole lines of `target`, the
            // same bytes of `source` (one length), which cannot overlap (`target` is borrowed
            // mutably)
            unsafe { _mm512_stream_si512(to.add(at).cast(), _mm512_loadu_si512(from.add(at).cast())) };
        }
        return;
    }
    target.copy_from_slice(source);
}

/// Eight float64 lanes to `target` (eight long), as [`line()`] copies them: one 64-byte
/// non-temporal store where `target` is a whole aligned line, an ordinary store otherwise (for
/// results made in registers, which need no copy in memory first).
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub unsafe fn lanes(target: &mut [MaybeUninit<f64>], lanes: std::arch::x86_64::__m512d) {
    use std::arch::x86_64::{_mm512_storeu_pd, _mm512_stream_pd};
    assert_eq!(target.len(), 8, "eight lanes");
    let to = target.as_mut_ptr().cast::<f64>();
    // SAFETY: AVX-512F is present (the contract); eight float64 of `target`, aligned for the
    // streamed store
    unsafe {
        if whole_lines(target) {
            _mm512_stream_pd(to, lanes);
        } else {
            _mm512_storeu_pd(to, lanes);
        }
    }
}

/// Whether `target` is whole 64-byte lines, aligned: what a non-temporal store writes.
#[inline(always)]
fn whole_lines<T>(target: &[T]) -> bool {
    std::mem::size_of_val(target).is_multiple_of(LINE) && (target.as_ptr() as usize).is_multiple_of(LINE)
}

/// Make this thread's streamed stores visible to any thread that later synchronizes with it
/// (a rayon join, a mutex): call once after the last [`line()`] of a piece of work.
#[inline]
pub fn fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86-64's baseline; a fence has no other effect.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy of `values` to `offset` elements past a 64-byte boundary.
    fn copied<T: Copy + Default>(values: &[T], offset: usize) -> Vec<T> {
        #[repr(align(64))]
        struct Room([u8; 256]);
        let mut room = Room([0; 256]);
        let target = unsafe { std::slice::from_raw_parts_mut(room.0.as_mut_ptr().cast::<MaybeUninit<T>>().add(offset), values.len()) };
        let source: Vec<MaybeUninit<T>> = values.iter().map(|&v| MaybeUninit::new(v)).collect();
        unsafe { line(target, &source) };
        fence();
        target.iter().map(|t| unsafe { t.assume_init() }).collect()
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn an_aligned_line_and_anything_else_copy_the_same_values() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        let values: Vec<f64> = (0..8).map(|i| i as f64 / 3.0).collect();
        for offset in 0..4 {
            assert_eq!(copied(&values, offset), values, "offset {offset}");
            assert_eq!(copied(&values[..5], offset), &values[..5], "offset {offset}");
        }
        let flags: Vec<bool> = (0..64).map(|i| i % 3 == 0).collect();
        assert_eq!(copied(&flags, 0), flags);
        assert_eq!(copied(&flags, 1), flags);
    }
}
