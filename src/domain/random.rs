//! Random and time-ordered UUIDs from the operating system's generator, drawn a block at a time.
//!
//! Every SOAP answer carries a fresh `wsa:MessageID`, and every Subscribe a fresh identifier as
//! well. Asking the kernel for 16 bytes each time cost one `getrandom` system call per UUID:
//! two per Subscribe (BENCHMARKS.md, fourteenth pass). Each thread now keeps a block of the
//! kernel's random bytes and hands out 16 at a time. The bytes are the kernel's, as before, so
//! identifiers stay unguessable; one system call serves [`PER_BLOCK`] UUIDs.

use std::cell::RefCell;

use ring::rand::{SecureRandom, SystemRandom};
use uuid::Uuid;

/// UUIDs drawn from one block of the kernel's random bytes.
pub const PER_BLOCK: usize = 64;

const BLOCK_BYTES: usize = 16 * PER_BLOCK;

/// One thread's unused random bytes: `bytes[used..]`.
struct Block {
    bytes: [u8; BLOCK_BYTES],
    used: usize,
}

thread_local! {
    static BLOCK: RefCell<Block> = const {
        RefCell::new(Block { bytes: [0; BLOCK_BYTES], used: BLOCK_BYTES })
    };
}

/// A random (version 4) UUID, from the operating system's generator.
pub fn uuid_v4() -> Uuid {
    match random_bytes() {
        Some(bytes) => uuid::Builder::from_random_bytes(bytes).into_uuid(),
        // The generator failed: ask for these 16 bytes alone, as before.
        None => Uuid::new_v4(),
    }
}

/// A time-ordered (version 7) UUID: the current Unix time in milliseconds, then 74 random bits
/// from the operating system's generator. Identifiers made one after another sort near one
/// another, so an index on them grows at its end instead of at a random leaf; the random bits
/// keep each one unguessable.
pub fn uuid_v7() -> Uuid {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    let Some(bytes) = random_bytes() else {
        return Uuid::now_v7();
    };
    let mut random = [0u8; 10];
    random.copy_from_slice(&bytes[..10]);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

/// 16 of this thread's random bytes, or `None` when the generator fails.
fn random_bytes() -> Option<[u8; 16]> {
    BLOCK.with_borrow_mut(|block| {
        if block.used == BLOCK_BYTES {
            SystemRandom::new().fill(&mut block.bytes).ok()?;
            block.used = 0;
        }
        let taken = &mut block.bytes[block.used..block.used + 16];
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(taken);
        // Handed out once: what stays in memory is only what is still unused.
        taken.fill(0);
        block.used += 16;
        Some(bytes)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn uuids_are_version_4_and_never_repeat_across_blocks_and_threads() {
        let draw = || {
            (0..PER_BLOCK * 5 + 3)
                .map(|_| uuid_v4())
                .collect::<Vec<_>>()
        };
        let here = draw();
        let there = std::thread::spawn(draw)
            .join()
            .expect("the other thread drew");
        let mut seen = HashSet::new();
        for uuid in here.iter().chain(&there) {
            assert_eq!(uuid.get_version_num(), 4, "{uuid}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{uuid}");
            assert!(seen.insert(*uuid), "{uuid} was drawn twice");
        }
        // 128 random bits less the 6 fixed ones: a zeroed (used) slice would show as this.
        let spent = uuid::Builder::from_random_bytes([0; 16]).into_uuid();
        assert!(!seen.contains(&spent), "a used slice was handed out again");
    }

    /// Time-ordered identifiers carry the time they were made, sort by it across milliseconds,
    /// and keep their random bits: no two alike within one millisecond.
    #[test]
    fn time_ordered_uuids_sort_by_their_millisecond_and_never_repeat() {
        let millis = |uuid: &Uuid| {
            uuid.get_timestamp()
                .map(|ts| ts.to_unix())
                .map(|(s, n)| u128::from(s) * 1000 + u128::from(n / 1_000_000))
        };
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let first: Vec<Uuid> = (0..PER_BLOCK * 3).map(|_| uuid_v7()).collect();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = uuid_v7();
        let mut seen = HashSet::new();
        for uuid in &first {
            assert_eq!(uuid.get_version_num(), 7, "{uuid}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{uuid}");
            let made = millis(uuid).expect("a version 7 UUID has a timestamp");
            assert!(
                made >= before && made <= millis(&later).unwrap(),
                "{uuid} at {made}"
            );
            assert!(uuid < &later, "{uuid} sorts after {later}, made 2 ms later");
            assert!(
                seen.insert(uuid.as_bytes()[6..].to_vec()),
                "{uuid}: random bits repeated"
            );
        }
    }
}
