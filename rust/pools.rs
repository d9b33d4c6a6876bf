//! The worker pools the kernels run on, kept per process.
//!
//! - An explicit thread count ([`install`]) gets a pool built on the first call that asks for
//!   that count and kept for later calls. A pool built per call starts its threads and lets
//!   them go at the end of every call; against that, kept pools measured (`benches/ab.py`, 21
//!   rounds, 2-core Zen 4) 0.90x and 0.95x of the time on float32 `[10, 10k, 28]` (1 and 2
//!   threads: a 1 ms call, where the threads' start weighs most), and 0.95-1.00x on files of
//!   0.2-1 GiB.
//! - The default ([`process_default`]) is rayon's global pool, in the process that started it.
//!
//! A pool belongs to the process that built it: in a process forked from it (a DataLoader or
//! multiprocessing worker) its threads do not exist, and work handed to them would wait
//! forever, so a forked child builds its own pools, the default one included. The parent's are
//! never dropped there (their threads are not there to stop).

use std::sync::{Mutex, OnceLock};

use rayon::ThreadPool;

use crate::error::{Error, Result};

/// The most explicit thread counts kept per process: a caller asking for yet another count gets
/// a pool of its own for the call (kept threads sleep when idle, but each holds its stack).
const KEPT: usize = 4;

/// The key of a forked child's default pool (rayon's default count), always kept.
const DEFAULT: usize = 0;

/// The process's kept pools.
static POOLS: Pools = Pools::new(KEPT);

/// The process whose rayon global pool the kernels use: the first to ask for the default.
static GLOBAL_OWNER: OnceLock<u32> = OnceLock::new();

/// Run `op` on a pool of `threads` workers (at least one; at most 8 per core, as more only
/// cost their start), kept for later calls.
///
/// ```
/// let threads = _core::pools::install(3, rayon::current_num_threads).unwrap();
/// assert_eq!(threads, 3);
/// ```
pub fn install<R: Send>(threads: usize, op: impl FnOnce() -> R + Send) -> Result<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    POOLS.install(threads.min(8 * cores), op)
}

/// The pool to run on by default: `None` for rayon's global pool, in the process that started
/// it; in a process forked from it, a pool of the default size of its own, built on its first
/// call and kept.
pub fn process_default() -> Result<Option<&'static ThreadPool>> {
    let pid = std::process::id();
    if *GLOBAL_OWNER.get_or_init(|| pid) == pid {
        return Ok(None);
    }
    Ok(Some(match POOLS.get(DEFAULT)? {
        Pool::Kept(pool) => pool,
        // (not reached: the default pool is always kept)
        Pool::Own(pool) => Box::leak(Box::new(pool)),
    }))
}

/// A pool to run on: kept for the process, or the caller's own for one call.
enum Pool {
    Kept(&'static ThreadPool),
    Own(ThreadPool),
}

impl Pool {
    fn install<R: Send>(&self, op: impl FnOnce() -> R + Send) -> R {
        match self {
            Pool::Kept(pool) => pool.install(op),
            Pool::Own(pool) => pool.install(op),
        }
    }
}

/// Pools kept by thread count, at most `limit` of explicit counts (and the default).
struct Pools {
    /// (process id, threads or [`DEFAULT`], pool)
    kept: Mutex<Vec<(u32, usize, &'static ThreadPool)>>,
    limit: usize,
}

impl Pools {
    const fn new(limit: usize) -> Self {
        Pools { kept: Mutex::new(Vec::new()), limit }
    }

    /// This process's pool of `threads` workers ([`DEFAULT`]: rayon's default count), built
    /// and kept on first use while there is room, else built for the caller alone.
    fn get(&self, threads: usize) -> Result<Pool> {
        let pid = std::process::id();
        let lock = || self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let find = |pools: &[(u32, usize, &'static ThreadPool)]| pools.iter().find(|&&(owner, n, _)| owner == pid && n == threads).map(|&(_, _, pool)| pool);
        let kept = find(&lock());
        if let Some(pool) = kept {
            return Ok(Pool::Kept(pool));
        }
        // built outside the lock: a fork while another thread holds it would leave it held
        let builder = rayon::ThreadPoolBuilder::new();
        let builder = if threads == DEFAULT { builder } else { builder.num_threads(threads) };
        let pool = builder.build().map_err(|e| {
            let count = if threads == DEFAULT { "the".to_string() } else { threads.to_string() };
            Error::invalid("threads", "threads", format!("could not start {count} worker threads: {e}"))
        })?;
        let mut pools = lock();
        // a forked child's entries for its parent's pools go (the pools themselves stay leaked)
        pools.retain(|&(owner, _, _)| owner == pid);
        if let Some(kept) = find(&pools) {
            // another thread built one first: ours is dropped
            return Ok(Pool::Kept(kept));
        }
        let explicit = pools.iter().filter(|&&(_, n, _)| n != DEFAULT).count();
        if threads == DEFAULT || explicit < self.limit {
            let pool: &'static ThreadPool = Box::leak(Box::new(pool));
            pools.push((pid, threads, pool));
            return Ok(Pool::Kept(pool));
        }
        Ok(Pool::Own(pool))
    }

    /// Run `op` on this process's pool of `threads` workers (at least one).
    fn install<R: Send>(&self, threads: usize, op: impl FnOnce() -> R + Send) -> Result<R> {
        Ok(self.get(threads.max(1))?.install(op))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::thread::ThreadId;

    use super::*;

    /// Every thread of the pool that `pools` runs `threads` workers on.
    fn pool_threads(pools: &Pools, threads: usize) -> HashSet<ThreadId> {
        pools.install(threads, || rayon::broadcast(|_| std::thread::current().id()).into_iter().collect()).unwrap()
    }

    #[test]
    fn a_count_runs_on_that_many_threads_and_its_pool_is_kept() {
        let pools = Pools::new(2);
        let three = pool_threads(&pools, 3);
        assert_eq!(three.len(), 3);
        assert!(!three.contains(&std::thread::current().id()), "ran on the caller's thread");
        // the same threads again: kept, not built anew
        assert_eq!(pool_threads(&pools, 3), three);
        let two = pool_threads(&pools, 2);
        assert_eq!(two.len(), 2);
        assert!(two.is_disjoint(&three));
        assert_eq!(pool_threads(&pools, 2), two);
        assert_eq!(pool_threads(&pools, 3), three);
        assert_eq!(pools.install(0, rayon::current_num_threads).unwrap(), 1);
    }

    #[test]
    fn the_default_pool_is_kept_beyond_the_limit() {
        let pools = Pools::new(1);
        pool_threads(&pools, 4);
        let (Pool::Kept(first), Pool::Kept(again)) = (pools.get(DEFAULT).unwrap(), pools.get(DEFAULT).unwrap()) else {
            panic!("the default pool was not kept");
        };
        assert!(std::ptr::eq(first, again));
        // rayon's default count, as the global pool's
        assert_eq!(first.current_num_threads(), rayon::current_num_threads());
        assert_eq!(pools.kept.lock().unwrap().len(), 2);
        // this process started the global pool: the default is that one
        assert!(process_default().unwrap().is_none());
    }

    #[test]
    fn counts_beyond_the_limit_run_on_pools_of_their_own() {
        let pools = Pools::new(1);
        let one = pool_threads(&pools, 4);
        for _ in 0..3 {
            // not kept: new threads every call, of the count asked for
            let five = pool_threads(&pools, 5);
            assert_eq!(five.len(), 5);
            assert_ne!(pool_threads(&pools, 5), five);
        }
        assert_eq!(pool_threads(&pools, 4), one);
        assert_eq!(pools.kept.lock().unwrap().len(), 1);
    }
}
