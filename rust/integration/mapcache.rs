//! The kept file mapping ([`_core::mapcache`]) through its public API and through
//! [`DynamicsFile::open`].
//!
//! The cache is one per process, so these tests live in their own test binary (the unit tests
//! run in parallel threads and open files of their own) and take [`SERIAL`] so that they do
//! not replace each other's kept mapping either.
//!
//! Reuse is only promised within [`KEEP`] of the last use: an assertion that a mapping was
//! reused is made when the calls involved took less than that (measured, never asserted), and
//! the scenario is run again otherwise, so that a stalled machine cannot fail it.

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use _core::mapcache::{self, Key, Region, KEEP};
use _core::mapguard;
use _core::{compute, Correctness, Dims, DynamicsFile, DynamicsView, Labels, Options, Probs, Statistics, Task};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    // a failed test must not fail the others with a poisoned lock
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How long a liveness check waits for the background thread before failing.
const DEADLINE: Duration = Duration::from_secs(30);
/// Attempts of a scenario whose reuse check needs its calls to come within [`KEEP`].
const ATTEMPTS: usize = 5;

fn page() -> usize {
    // SAFETY: sysconf has no preconditions
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// A file of `pages` pages of `fill` in `dir`, and its cache key (device, inode, length).
fn file_of(dir: &Path, name: &str, pages: usize, fill: u8) -> (PathBuf, Key) {
    let path = dir.join(name);
    std::fs::write(&path, vec![fill; pages * page()]).unwrap();
    let metadata = std::fs::metadata(&path).unwrap();
    (path.clone(), (metadata.dev(), metadata.ino(), pages * page()))
}

/// A guarded mapping of the first `len` bytes of `path`, counting the calls in `maps`.
fn mapper<'a>(path: &'a Path, len: usize, maps: &'a AtomicUsize) -> impl FnOnce() -> Result<Region, String> + 'a {
    move || {
        maps.fetch_add(1, Ordering::SeqCst);
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        // SAFETY: a read-only map of bytes the file holds; the guard is registered before any
        // read and the region drops it before the mapping
        let mmap = unsafe { memmap2::MmapOptions::new().len(len).map(&file) }.map_err(|e| e.to_string())?;
        let guard = unsafe { mapguard::register(mmap.as_ptr(), mmap.len()) }.map_err(|e| e.to_string())?;
        Ok(Region::new(guard, mmap))
    }
}

fn region_of(key: Key, path: &Path, maps: &AtomicUsize) -> Arc<Region> {
    mapcache::region(key, mapper(path, key.2, maps), |e| e.to_string()).unwrap()
}

/// Whether `/proc/self/maps` names `path` (a mapping of it exists in this process).
fn mapped(path: &Path) -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let name = path.to_str().unwrap();
    maps.lines().any(|line| line.ends_with(name) || line.ends_with(&format!("{name} (deleted)")))
}

/// Poll `condition` every 50 ms until it holds, failing after [`DEADLINE`].
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < DEADLINE, "{what}: still not the case after {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run `scenario` until one run took less than [`KEEP`] (it returns how long its reuse-bound
/// calls took), at most [`ATTEMPTS`] times; a run past `KEEP` has checked everything but reuse.
fn within_keep(mut scenario: impl FnMut(usize) -> Duration) {
    for attempt in 0..ATTEMPTS {
        if scenario(attempt) < KEEP {
            return;
        }
        println!("attempt {attempt} took longer than {KEEP:?}: reuse not checked, trying again");
    }
    println!("no attempt came within {KEEP:?}: reuse was not checked on this (overloaded) machine");
}

#[test]
fn the_same_file_reuses_the_mapping_and_another_replaces_it() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    within_keep(|attempt| {
        let (first_path, first_key) = file_of(dir.path(), &format!("first{attempt}"), 3, 1);
        let (second_path, second_key) = file_of(dir.path(), &format!("second{attempt}"), 2, 2);
        let maps = AtomicUsize::new(0);
        let start = Instant::now();
        let a = region_of(first_key, &first_path, &maps);
        let b = region_of(first_key, &first_path, &maps);
        let elapsed = start.elapsed();
        assert!(mapcache::holding());
        assert_eq!(a.bytes().len(), 3 * page());
        assert!(a.bytes().iter().all(|&x| x == 1));
        if elapsed < KEEP {
            // (a) the same key within KEEP: the same region, mapped once
            assert!(Arc::ptr_eq(&a, &b), "the second read of the same file mapped it again");
            assert_eq!(maps.load(Ordering::SeqCst), 1);
        }
        // (b) another key (another inode) maps anew and takes the slot
        let old = Arc::downgrade(&a);
        drop(b);
        let c = region_of(second_key, &second_path, &maps);
        assert!(!Arc::ptr_eq(&a, &c));
        assert!(c.bytes().iter().all(|&x| x == 2));
        // the old one stays valid while a reader holds it, and is unmapped once nobody does
        assert!(a.bytes().iter().all(|&x| x == 1));
        assert!(mapped(&first_path));
        drop(a);
        assert!(old.upgrade().is_none(), "the replaced region was not freed");
        assert!(!mapped(&first_path), "the replaced region is still mapped");
        // the same inode at another mapped length is another key too
        let d = region_of((second_key.0, second_key.1, page()), &second_path, &maps);
        assert!(!Arc::ptr_eq(&c, &d));
        assert_eq!(d.bytes().len(), page());
        mapcache::release();
        assert!(!mapcache::holding());
        elapsed
    });
}

#[test]
fn the_releaser_lets_go_of_an_unused_mapping_and_exits() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = file_of(dir.path(), "idle", 2, 3);
    let maps = AtomicUsize::new(0);
    let region = region_of(key, &path, &maps);
    let kept = Arc::downgrade(&region);
    drop(region);
    assert!(mapped(&path));
    // (c) liveness, not speed: nothing is kept once it went unused (KEEP, give or take)
    eventually("the unused mapping is let go", || !mapcache::holding());
    assert!(kept.upgrade().is_none());
    assert!(!mapped(&path), "the let-go mapping is still in /proc/self/maps");
    // and the thread that let go of it ends, so an idle process holds no thread
    eventually("the releasing thread exits", || !thread_named("datacarto-maps"));
    // a later read starts it again and is let go again
    drop(region_of(key, &path, &maps));
    eventually("the second unused mapping is let go", || !mapcache::holding());
    assert!(!mapped(&path));
}

/// Whether a thread of this process has that name.
fn thread_named(name: &str) -> bool {
    std::fs::read_dir("/proc/self/task").unwrap().flatten().any(|task| std::fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| comm.trim_end() == name))
}

#[test]
fn a_mapping_whose_guard_fired_is_not_reused() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = file_of(dir.path(), "shrinks", 4, 5);
    let maps = AtomicUsize::new(0);
    let region = region_of(key, &path, &maps);
    assert!(!region.changed());
    // (d) another program truncates the file; a read past the new end is claimed by the guard
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(page() as u64).unwrap();
    // SAFETY: inside the mapping; the guard turns the fault into zero pages
    let past_end = unsafe { std::ptr::read_volatile(region.bytes().as_ptr().add(3 * page())) };
    assert_eq!(past_end, 0);
    assert!(region.changed(), "the guard did not claim the fault");
    // the file grows back to the same key (same inode, same length), with new bytes
    std::fs::write(&path, vec![6u8; 4 * page()]).unwrap();
    let again = region_of(key, &path, &maps);
    assert_eq!(maps.load(Ordering::SeqCst), 2, "a mapping holding zeros was reused");
    assert!(!Arc::ptr_eq(&region, &again));
    assert!(!again.changed());
    assert!(again.bytes().iter().all(|&x| x == 6));
    drop((region, again));
    mapcache::release();
}

/// A minimal version 1.0 .npy file of float32 values in C order.
fn npy(shape: [usize; 3], values: &[f32]) -> Vec<u8> {
    let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}, {}), }}", shape[0], shape[1], shape[2]);
    let padded = (10 + header.len() + 1).div_ceil(64) * 64 - 10;
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((padded as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(std::iter::repeat_n(b' ', padded - header.len() - 1));
    bytes.push(b'\n');
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    bytes
}

/// The float32 values a file's view shows, and where they are mapped.
fn view_values(file: &DynamicsFile) -> (Vec<f32>, *const f32) {
    match file.view().probs {
        Probs::F32(values) => (values.to_vec(), values.as_ptr()),
        _ => panic!("expected float32"),
    }
}

#[test]
fn dynamics_files_share_the_mapping_and_see_the_current_bytes() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (e, n, l) = (3usize, 500usize, 4usize);
    let dims = Dims { n_epochs: e, n_examples: n, n_labels: l };
    let gold: Vec<i64> = (0..n).map(|i| (i % l) as i64).collect();
    let options = Options { task: Task::Multiclass, correctness: Correctness::Argmax, epochs: 0..e, threads: Some(2), ..Options::default() };
    let values = |seed: usize| -> Vec<f32> { (0..e * n * l).map(|i| ((i * 31 + seed * 17) % 97) as f32 / 96.0).collect() };
    let in_memory = |data: &[f32]| -> Statistics { compute(DynamicsView::new(Probs::F32(data), dims, "memory").unwrap(), Labels::Classes(&gold), &options, None).unwrap() };
    within_keep(|attempt| {
        let path = dir.path().join(format!("dynamics{attempt}.npy"));
        let (old, new, newer) = (values(1), values(2), values(3));
        assert_ne!(in_memory(&old), in_memory(&new));
        std::fs::write(&path, npy([e, n, l], &old)).unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();

        let start = Instant::now();
        let first = DynamicsFile::open(&path).unwrap();
        let second = DynamicsFile::open(&path).unwrap();
        let (first_values, first_at) = view_values(&first);
        let (second_values, second_at) = view_values(&second);
        let shared = std::ptr::eq(first_at, second_at);
        let stats = first.compute(Labels::Classes(&gold), &options, None).unwrap();
        assert_eq!(second.compute(Labels::Classes(&gold), &options, None).unwrap(), stats);
        assert_eq!(stats, in_memory(&old));
        assert_eq!((first_values, second_values), (old.clone(), old.clone()));
        drop((first, second));

        // rewritten in place the way np.save does it (truncated, then written): same inode
        std::fs::write(&path, npy([e, n, l], &new)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);
        let third = DynamicsFile::open(&path).unwrap();
        let (third_values, third_at) = view_values(&third);
        let reused_after_truncation = std::ptr::eq(third_at, first_at);
        assert_eq!(third_values, new, "the mapping shows the old bytes");
        assert_eq!(third.compute(Labels::Classes(&gold), &options, None).unwrap(), in_memory(&new));
        drop(third);

        // overwritten in place without truncation (the same bytes' pages written over)
        let mut writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        writer.seek(SeekFrom::Start(0)).unwrap();
        writer.write_all(&npy([e, n, l], &newer)).unwrap();
        drop(writer);
        let fourth = DynamicsFile::open(&path).unwrap();
        let (fourth_values, fourth_at) = view_values(&fourth);
        let reused_after_overwrite = std::ptr::eq(fourth_at, first_at);
        assert_eq!(fourth_values, newer, "the mapping shows the old bytes");
        assert_eq!(fourth.compute(Labels::Classes(&gold), &options, None).unwrap(), in_memory(&newer));
        drop(fourth);
        let elapsed = start.elapsed();
        if elapsed < KEEP {
            // the checks above went through the kept mapping, not a fresh one
            assert!(shared, "two opens of the same file within {KEEP:?} mapped it twice");
            assert!(reused_after_truncation && reused_after_overwrite, "the rewritten file was mapped anew");
        }
        mapcache::release();
        elapsed
    });
}
