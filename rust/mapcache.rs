//! The last file mapping, kept for a moment for the next read of the same file.
//!
//! Mapping a file and unmapping it again costs the kernel a page-table entry per page each
//! time: 10-30% of a pass over a file already in the page cache (more the wider its rows, as
//! the pass itself gets cheaper per byte). Calls come in bursts on one file (windows, options,
//! benchmarks, a worker's shard), so the last mapping is kept, with its SIGBUS guard, and a
//! read of the same file (same device, inode and mapped length) within [`KEEP`] takes it
//! again instead of mapping afresh. That is safe because a shared mapping of a file always
//! shows the file's current bytes, exactly as a new mapping would; a mapping whose guard has
//! claimed a fault (it holds zeros since) is never reused.
//!
//! A background thread lets go of the mapping once it has not been used for [`KEEP`] (then
//! exits), so a file deleted meanwhile has its space back within seconds, and an idle process
//! holds no mapping and no thread. After `fork` the child starts with the lock free and no
//! thread (the parent's thread does not exist there).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use memmap2::Mmap;

use crate::mapguard::{self, GuardError, Guarded};

/// How long an unused mapping is kept.
pub const KEEP: Duration = Duration::from_secs(5);

/// A guarded read-only mapping of a file.
pub struct Region {
    // declared before `mmap`: fields drop in order, and the range must be unregistered first
    guard: Guarded,
    mmap: Mmap,
}

impl Region {
    pub fn new(guard: Guarded, mmap: Mmap) -> Self {
        Region { guard, mmap }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.mmap
    }

    /// True once a read faulted on a page the file no longer holds (the mapping holds zeros).
    pub fn changed(&self) -> bool {
        self.guard.changed()
    }
}

/// Which mapping a file needs: (device, inode, bytes mapped).
pub type Key = (u64, u64, usize);

struct Entry {
    key: Key,
    region: Arc<Region>,
    used: Instant,
}

/// A spin lock rather than a `Mutex`: after `fork` the child must be able to free it, in
/// case the parent's thread held it at that moment.
struct Slot {
    locked: AtomicBool,
    entry: UnsafeCell<Option<Entry>>,
}

// SAFETY: `entry` is only touched while `locked` is held (see `with_entry`).
unsafe impl Sync for Slot {}

static SLOT: Slot = Slot { locked: AtomicBool::new(false), entry: UnsafeCell::new(None) };
/// Whether the thread that lets go of unused mappings runs.
static RELEASER: AtomicBool = AtomicBool::new(false);
static AT_FORK: Once = Once::new();

fn with_entry<R>(f: impl FnOnce(&mut Option<Entry>) -> R) -> R {
    while SLOT.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
        std::hint::spin_loop();
    }
    // SAFETY: the lock is held; `f` neither panics in practice nor re-enters (it never maps
    // or unmaps: dropping a region happens after the lock is released)
    let result = f(unsafe { &mut *SLOT.entry.get() });
    SLOT.locked.store(false, Ordering::Release);
    result
}

/// The mapping for `key`: the kept one if it is that file's and intact, else `map()`'s, which
/// is then kept in its place. A kept one has its SIGBUS guard put back in front first
/// ([`crate::mapguard::ensure_first`]), as a new registration would.
pub fn region<E>(key: Key, map: impl FnOnce() -> Result<Region, E>, guard_error: impl FnOnce(GuardError) -> E) -> Result<Arc<Region>, E> {
    let now = Instant::now();
    let reused = with_entry(|entry| match entry {
        Some(kept) if kept.key == key && !kept.region.changed() => {
            kept.used = now;
            Some(kept.region.clone())
        }
        _ => None,
    });
    if let Some(region) = reused {
        mapguard::ensure_first().map_err(guard_error)?;
        // in a forked child the kept mapping is the parent's and no thread runs to let go of it
        start_releaser();
        return Ok(region);
    }
    let region = Arc::new(map()?);
    let replaced = with_entry(|entry| entry.replace(Entry { key, region: region.clone(), used: now }));
    drop(replaced); // unmapped here, outside the lock, unless a reader still holds it
    start_releaser();
    Ok(region)
}

/// Let go of the kept mapping now (the next read maps afresh).
pub fn release() {
    drop(with_entry(Option::take));
}

/// Whether a mapping is kept right now.
pub fn holding() -> bool {
    with_entry(|entry| entry.is_some())
}

fn start_releaser() {
    AT_FORK.call_once(|| {
        #[cfg(unix)]
        // SAFETY: registers a plain function that only stores to atomics (async-signal-safe)
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
    if RELEASER.swap(true, Ordering::AcqRel) {
        return;
    }
    let spawned = std::thread::Builder::new().name("datacarto-maps".into()).spawn(|| loop {
        std::thread::sleep(KEEP / 4);
        let (expired, empty) = with_entry(|entry| {
            let expired = match entry {
                Some(kept) if kept.used.elapsed() >= KEEP => entry.take(),
                _ => None,
            };
            (expired, entry.is_none())
        });
        drop(expired);
        if empty {
            RELEASER.store(false, Ordering::Release);
            // a mapping kept between the check and the store above found the flag still set
            // and started no thread: look once more before leaving
            if !holding() || RELEASER.swap(true, Ordering::AcqRel) {
                return;
            }
        }
    });
    if spawned.is_err() {
        // no thread (resource limits): keep nothing rather than keep it forever
        RELEASER.store(false, Ordering::Release);
        release();
    }
}

#[cfg(unix)]
extern "C" fn after_fork_in_child() {
    SLOT.locked.store(false, Ordering::Release);
    RELEASER.store(false, Ordering::Release);
}
