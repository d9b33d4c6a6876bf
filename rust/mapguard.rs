//! A SIGBUS guard for datacarto's read-only file mappings.
//!
//! Reading a memory-mapped file that another program truncates (`os.truncate`, `np.save` over
//! it) makes the kernel raise SIGBUS on the next touch of a page past the new end, which kills
//! the process. This module keeps a lock-free registry of the address ranges datacarto maps for
//! reading. A process-wide SIGBUS handler, installed lazily the first time a range is
//! registered, claims only faults whose address lies inside a registered range: it maps
//! anonymous zero pages over the whole range (so the faulting read, and every later one,
//! completes with zeros) and marks the range changed; the owner then discards what it computed
//! and reports the change as an error. Every other SIGBUS goes to the handler that was
//! installed before (Python's `faulthandler`, torch, ...) or, if there was none, to the
//! default action, so foreign faults still kill the process as they would without datacarto.
//!
//! Signals are delivered to the faulting thread, so the guard works on any thread (rayon
//! workers, a Dask worker calling `compute`). The handler only loads atomics and calls
//! `mmap`, `sigaction` and `raise`, all async-signal-safe.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Mappings that can be guarded at once; a dynamics file holds one while it is open.
const SLOTS: usize = 256;

struct Slot {
    /// owned by a [`Guarded`] (set before `start`, cleared after it)
    taken: AtomicBool,
    /// first byte of the range, 0 when the slot is free; published after `end`
    start: AtomicUsize,
    /// one past the last byte, rounded up to whole pages
    end: AtomicUsize,
    /// a fault inside the range was claimed: the contents are zeros from then on
    changed: AtomicBool,
}

static REGISTRY: [Slot; SLOTS] = [const { Slot { taken: AtomicBool::new(false), start: AtomicUsize::new(0), end: AtomicUsize::new(0), changed: AtomicBool::new(false) } }; SLOTS];

/// A registered read mapping; unregisters itself when dropped. Drop it before unmapping.
#[derive(Debug)]
pub struct Guarded {
    slot: usize,
}

impl Guarded {
    /// True once a SIGBUS inside the range was claimed (the file shrank under the mapping).
    pub fn changed(&self) -> bool {
        REGISTRY[self.slot].changed.load(Ordering::Acquire)
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let slot = &REGISTRY[self.slot];
        slot.start.store(0, Ordering::Release);
        slot.end.store(0, Ordering::Release);
        slot.changed.store(false, Ordering::Release);
        slot.taken.store(false, Ordering::Release);
    }
}

/// Errors of [`register`].
#[derive(Debug)]
pub enum GuardError {
    /// every slot is in use
    Full,
    /// `sigaction` failed
    Install(std::io::Error),
}

impl std::fmt::Display for GuardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuardError::Full => write!(f, "more than {SLOTS} dynamics files are mapped at once"),
            GuardError::Install(e) => write!(f, "could not install the SIGBUS guard: {e}"),
        }
    }
}

/// Register the mapping `[start, start + len)` (page-aligned `start`, as `mmap` returns it).
///
/// # Safety
/// The range must be a mapping the caller owns and reads only; the returned guard must be
/// dropped before the mapping is unmapped, and nothing may rely on the range's contents after
/// [`Guarded::changed`] turns true (they become zeros).
pub unsafe fn register(start: *const u8, len: usize) -> Result<Guarded, GuardError> {
    imp::ensure_installed().map_err(GuardError::Install)?;
    let page = imp::page_size();
    let begin = start as usize;
    let end = begin + len.div_ceil(page) * page;
    for (index, slot) in REGISTRY.iter().enumerate() {
        if slot.taken.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            slot.changed.store(false, Ordering::Release);
            slot.end.store(end, Ordering::Release);
            slot.start.store(begin, Ordering::Release);
            return Ok(Guarded { slot: index });
        }
    }
    Err(GuardError::Full)
}

/// Put the handler back in front if another one was installed since (as [`register`] does):
/// for a registered range read again, so that a handler installed in between (for example
/// `faulthandler.enable()`) is chained behind ours rather than taking the range's faults.
pub fn ensure_first() -> Result<(), GuardError> {
    imp::ensure_installed().map_err(GuardError::Install)
}

/// The registered range holding `address`, if any: (slot, start, end).
fn claim_range(address: usize) -> Option<(usize, usize, usize)> {
    for (index, slot) in REGISTRY.iter().enumerate() {
        let start = slot.start.load(Ordering::Acquire);
        if start != 0 && address >= start {
            let end = slot.end.load(Ordering::Acquire);
            if address < end {
                return Some((index, start, end));
            }
        }
    }
    None
}

#[cfg(any(target_os = "linux", target_os = "macos"))]
mod imp {
    use std::io;
    use std::ptr;
    use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::{claim_range, REGISTRY};

    /// `si_code` of a fault on a mapped page past the end of its file (Linux and macOS)
    const BUS_ADRERR: libc::c_int = 2;
    /// `si_code` of an I/O error while reading a mapped page
    const BUS_OBJERR: libc::c_int = 3;

    static INSTALL: Mutex<()> = Mutex::new(());
    /// The handler that was installed before ours (leaked: the handler may read it any time).
    static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(ptr::null_mut());
    /// Set while a foreign fault is handed to the previous handler; a SIGBUS arriving then
    /// (a handler that re-raises into us) ends in the default action instead of a loop.
    static CHAINING: AtomicBool = AtomicBool::new(false);
    static PAGE: AtomicUsize = AtomicUsize::new(0);

    pub(super) fn page_size() -> usize {
        match PAGE.load(Ordering::Relaxed) {
            0 => {
                // SAFETY: sysconf has no preconditions
                let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(1);
                PAGE.store(page, Ordering::Relaxed);
                page
            }
            page => page,
        }
    }

    fn handler_address() -> libc::sighandler_t {
        on_sigbus as *const () as libc::sighandler_t
    }

    /// Install the handler unless it is the current one. Checked at every registration, so a
    /// handler installed after ours (`faulthandler.enable()` later in the program) is chained
    /// behind it instead of taking the faults of our mappings.
    pub(super) fn ensure_installed() -> io::Result<()> {
        page_size();
        let _lock = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: plain sigaction calls on zero-initialised structs
        unsafe {
            let mut current: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, ptr::null(), &mut current) != 0 {
                return Err(io::Error::last_os_error());
            }
            if current.sa_sigaction == handler_address() {
                return Ok(());
            }
            let mut ours: libc::sigaction = std::mem::zeroed();
            ours.sa_sigaction = handler_address();
            // SA_ONSTACK: run on the thread's alternate stack when it has one (Rust threads do)
            ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut ours.sa_mask);
            let mut previous: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, &ours, &mut previous) != 0 {
                return Err(io::Error::last_os_error());
            }
            PREVIOUS.store(Box::into_raw(Box::new(previous)), Ordering::Release);
        }
        Ok(())
    }

    #[cfg(target_os = "linux")]
    unsafe fn fault_address(info: *const libc::siginfo_t) -> usize {
        (*info).si_addr() as usize
    }

    #[cfg(target_os = "macos")]
    unsafe fn fault_address(info: *const libc::siginfo_t) -> usize {
        (*info).si_addr as usize
    }

    extern "C" fn on_sigbus(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler
        unsafe {
            let code = if info.is_null() { 0 } else { (*info).si_code };
            // only a real fault (not kill/raise) on one of our ranges is ours
            if code == BUS_ADRERR || code == BUS_OBJERR {
                if let Some((slot, start, end)) = claim_range(fault_address(info)) {
                    let zeros = libc::mmap(start as *mut libc::c_void, end - start, libc::PROT_READ, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED, -1, 0);
                    if zeros != libc::MAP_FAILED {
                        REGISTRY[slot].changed.store(true, Ordering::Release);
                        return; // the faulting read runs again and now reads zeros
                    }
                }
            }
            chain(signal, info, context, code);
        }
    }

    /// Hand a fault that is not ours to the previous handler, or to the default action.
    ///
    /// A SIGBUS sent by `kill`/`raise` (code <= 0) always takes the default action: the
    /// handlers we chain to (faulthandler, torch's) end by restoring their own previous
    /// handler and re-raising, and when that previous handler is ours, passing the re-raised
    /// signal back to them would loop forever.
    unsafe fn chain(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void, code: libc::c_int) {
        let previous = PREVIOUS.load(Ordering::Acquire);
        let handler = if previous.is_null() { libc::SIG_DFL } else { (*previous).sa_sigaction };
        if code <= 0 {
            if handler != libc::SIG_IGN {
                default_action(signal, true);
            }
            return;
        }
        // a fault inside the previous handler itself, or one it returned on without a fix
        let reentered = CHAINING.swap(true, Ordering::AcqRel);
        if reentered || handler == libc::SIG_DFL || handler == libc::SIG_IGN {
            default_action(signal, false);
            return;
        }
        if (*previous).sa_flags & libc::SA_SIGINFO != 0 {
            let action: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = std::mem::transmute(handler);
            action(signal, info, context);
        } else {
            let action: extern "C" fn(libc::c_int) = std::mem::transmute(handler);
            action(signal);
        }
        CHAINING.store(false, Ordering::Release);
    }

    /// Restore the default action (terminate with a core dump). A fault re-executes on return
    /// and dies of it; a sent signal is re-raised, pending until the handler returns.
    unsafe fn default_action(signal: libc::c_int, reraise: bool) {
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut default.sa_mask);
        libc::sigaction(libc::SIGBUS, &default, ptr::null_mut());
        if reraise {
            libc::raise(signal);
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod imp {
    //! No guard elsewhere: mappings are registered but faults are not caught.
    pub(super) fn page_size() -> usize {
        4096
    }
    pub(super) fn ensure_installed() -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "macos")))]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_truncated_mapping_reads_zeros_and_reports_the_change() {
        let page = imp::page_size();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&vec![7u8; 4 * page]).unwrap();
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        let guard = unsafe { register(map.as_ptr(), map.len()) }.unwrap();
        assert_eq!(map[3 * page], 7);
        assert!(!guard.changed());
        file.set_len(page as u64).unwrap();
        // the last page is past the end of the file now: without the guard this is SIGBUS
        let tail: u64 = map[2 * page..].iter().map(|&b| b as u64).sum();
        assert_eq!(tail, 0);
        assert!(guard.changed());
        drop(guard);
        drop(map);
    }

    #[test]
    fn slots_are_reused_and_ranges_are_separate() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[1u8; 100]).unwrap();
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        for _ in 0..3 * SLOTS {
            let guard = unsafe { register(map.as_ptr(), map.len()) }.unwrap();
            assert!(!guard.changed());
        }
        let a = unsafe { register(map.as_ptr(), map.len()) }.unwrap();
        assert!(claim_range(map.as_ptr() as usize + 50).is_some());
        drop(a);
        assert!(claim_range(map.as_ptr() as usize + 50).is_none());
    }
}
