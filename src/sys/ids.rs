//! Random identifiers and jitter from the kernel's CSPRNG (`getrandom(2)`), so no RNG
//! crate is needed: envelope ids are 32 hex digits like a UUID4 without dashes.

/// Fill `buf` with random bytes; falls back to a clock-derived mix if the call fails.
pub fn fill_random(buf: &mut [u8]) {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n <= 0 {
            break;
        }
        done += n as usize;
    }
    if done < buf.len() {
        let mut x = crate::sys::timefmt::now_ms() ^ ((std::process::id() as u64) << 32) | 1;
        for b in &mut buf[done..] {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
}

/// A fresh 128-bit id as 32 lowercase hex digits (version-4 UUID bits set).
///
/// Ids only need to be unique (the relay de-duplicates by id), not secret, and one is
/// made per event: so the kernel is asked for randomness once per process, and each id
/// mixes that seed with a counter through SplitMix64 (a bijection, so no two counters
/// give the same id within a process, and the random seed separates processes).
pub fn new_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: OnceLock<(u64, u64)> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (s1, s2) = *SEED.get_or_init(|| {
        let mut b = [0u8; 16];
        fill_random(&mut b);
        let (a, c) = b.split_at(8);
        (
            u64::from_le_bytes(a.try_into().unwrap_or([1; 8])),
            u64::from_le_bytes(c.try_into().unwrap_or([2; 8])),
        )
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let hi = splitmix(n ^ s1);
    let lo = splitmix(n.wrapping_add(s2));
    let hi = (hi & !0xf000) | 0x4000; // version 4
    let lo = (lo & !(0xc << 60)) | (0x8 << 60); // variant
    format!("{hi:016x}{lo:016x}")
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random fraction in [0, 1).
/// A random (version 4) UUID in its usual hyphenated form, as Claude Code names sessions.
pub fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    fill_random(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

pub fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    fill_random(&mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_hex_and_distinct() {
        let a = super::new_id();
        let b = super::new_id();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        let many: std::collections::HashSet<String> =
            (0..100_000).map(|_| super::new_id()).collect();
        assert_eq!(many.len(), 100_000);
        let u = super::random_unit();
        assert!((0.0..1.0).contains(&u));
    }
}
