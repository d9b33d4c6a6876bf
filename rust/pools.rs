//! Worker pools for an explicit thread count: built on the first call that asks for a count,
//! then kept for the process's later calls.
//!
//! A pool built per call starts its threads and lets them go at the end of every call. Against
//! that, kept pools measured (`benches/ab.py`, 21 rounds, 2-core Zen 4) 0.90x and 0.95x of the
//! time on float32 `[10, 10k, 28]` (1 and 2 threads: a 1 ms call, where the threads' start
//! weighs most), and 0.95-1.00x on files of 0.2-1 GiB. A pool belongs to the process that built it: in a process forked from it (a DataLoader
//! or multiprocessing worker) its threads do not exist, and work handed to them would wait
//! forever, so a forked child builds its own; the parent's are never dropped there (their
//! threads are not there to stop).

use std::sync::Mutex;

use rayon::ThreadPool;

use crate::error::{Error, Result};

/// The most thread counts kept per process: a caller asking for yet another count gets a pool
/// of its own for the call (kept threads sleep when idle, but each holds its stack).
const KEPT: usize = 4;

/// The process's kept pools.
static POOLS: Pools = Pools::new(KEPT);

/// Run `op` on a pool of `threads` workers (at least one), kept for later calls.
///
/// ```
/// let threads = _core::pools::install(3, rayon::current_num_threads).unwrap();
/// assert_eq!(threads, 3);
/// ```
pub fn install<R: Send>(threads: usize, op: impl FnOnce() -> R + Send) -> Result<R> {
    POOLS.install(threads, op)
}

/// Pools kept by thread count, at most `limit` of them.
struct Pools {
    /// (process id, threads, pool)
    kept: Mutex<Vec<(u32, usize, &'static ThreadPool)>>,
    limit: usize,
}

impl Pools {
    const fn new(limit: usize) -> Self {
        Pools { kept: Mutex::new(Vec::new()), limit }
    }

    fn install<R: Send>(&self, threads: usize, op: impl FnOnce() -> R + Send) -> Result<R> {
        let threads = threads.max(1);
        let pid = std::process::id();
        let lock = || self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let find = |pools: &[(u32, usize, &'static ThreadPool)]| pools.iter().find(|&&(owner, n, _)| owner == pid && n == threads).map(|&(_, _, pool)| pool);
        let kept = find(&lock());
        if let Some(pool) = kept {
            return Ok(pool.install(op));
        }
        // built outside the lock: a fork while another thread holds it would leave it held
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| Error::invalid("threads", "threads", format!("could not start {threads} worker threads: {e}")))?;
        let mut pools = lock();
        // a forked child's entries for its parent's pools go (the pools themselves stay leaked)
        pools.retain(|&(owner, _, _)| owner == pid);
        if let Some(kept) = find(&pools) {
            // another thread built one first: ours is dropped
            drop(pools);
            return Ok(kept.install(op));
        }
        if pools.len() < self.limit {
            let pool: &'static ThreadPool = Box::leak(Box::new(pool));
            pools.push((pid, threads, pool));
            drop(pools);
            return Ok(pool.install(op));
        }
        drop(pools);
        Ok(pool.install(op))
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
