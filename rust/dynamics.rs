//! Access to a `[epochs, examples, labels]` probability block: a memory-mapped `.npy` file or a
//! borrowed slice, viewed as typed elements without copying.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use half::f16;
use memmap2::MmapOptions;

use crate::error::{Error, Result};
use crate::mapcache::{self, Region};
use crate::mapguard;
use crate::npy::{parse_header, validate_dynamics, DType, DynamicsHeader};
use crate::stats::{self, Labels, Options, Progress, Statistics};

/// The three axes of a dynamics block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub n_epochs: usize,
    pub n_examples: usize,
    pub n_labels: usize,
}

impl Dims {
    pub fn len(&self) -> usize {
        self.n_epochs * self.n_examples * self.n_labels
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Typed, C-ordered probabilities `[E, N, L]` flattened.
#[derive(Clone, Copy, Debug)]
pub enum Probs<'a> {
    F16(&'a [f16]),
    F32(&'a [f32]),
    F64(&'a [f64]),
}

impl Probs<'_> {
    pub fn len(&self) -> usize {
        match self {
            Probs::F16(s) => s.len(),
            Probs::F32(s) => s.len(),
            Probs::F64(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A borrowed dynamics block plus its shape and a name for error messages.
#[derive(Clone, Copy, Debug)]
pub struct DynamicsView<'a> {
    pub probs: Probs<'a>,
    pub dims: Dims,
    pub origin: &'a str,
}

impl<'a> DynamicsView<'a> {
    /// Wrap a flat slice, checking that it holds exactly `dims` elements.
    pub fn new(probs: Probs<'a>, dims: Dims, origin: &'a str) -> Result<Self> {
        if dims.n_epochs == 0 || dims.n_examples == 0 || dims.n_labels == 0 {
            return Err(Error::invalid(origin, "shape", format!("expected at least one epoch, example and label, found [{}, {}, {}]", dims.n_epochs, dims.n_examples, dims.n_labels)));
        }
        if probs.len() != dims.len() {
            return Err(Error::invalid(origin, "shape", format!("expected {} elements for [{}, {}, {}], found {}", dims.len(), dims.n_epochs, dims.n_examples, dims.n_labels, probs.len())));
        }
        Ok(DynamicsView { probs, dims, origin })
    }
}

/// A memory-mapped dynamics `.npy` file. Only the bytes the header promises are mapped.
///
/// The mapping is registered with the SIGBUS guard ([`crate::mapguard`]): if another program
/// truncates the file while it is read, the reads see zeros instead of killing the process,
/// and [`DynamicsFile::check_unchanged`] (called by [`DynamicsFile::compute`] when the pass
/// ends) reports the change. Epochs that datacarto's writer commits meanwhile (data appended,
/// then the header rewritten) are not a change: the header and the bytes it promised stay.
pub struct DynamicsFile {
    origin: String,
    header: DynamicsHeader,
    file_len: u64,
    /// the guarded mapping, possibly shared with other reads of the same file ([`mapcache`])
    region: Arc<Region>,
    file: File,
    identity: (u64, u64),
}

/// Bytes read first: the longest .npy preamble (magic, version, a 4-byte header length).
const PREAMBLE: usize = 12;

impl DynamicsFile {
    /// Open and validate `path`; the data are mapped, not read.
    ///
    /// The file is opened non-blocking and checked through the open descriptor, so a FIFO,
    /// socket or device is refused at once (no hang, no stat-then-open race). The header is
    /// read before the length is taken: a writer appends an epoch's data before it rewrites
    /// the header, so a header read first never promises more than the length read after it.
    pub fn open(path: &Path) -> Result<Self> {
        let origin = path.display().to_string();
        let file = open_regular(path, &origin)?;
        let raw = parse_header(&read_header_bytes(&file, &origin)?, &origin)?;
        let metadata = file.metadata().map_err(|e| Error::io(&origin, e))?;
        let header = validate_dynamics(&raw, metadata.len(), &origin)?;
        let mapped_len = header.data_offset + header.data_len();
        let (device, inode) = identity(&metadata);
        let region = mapcache::region((device, inode, mapped_len), || {
            // SAFETY: a read-only map of bytes the file holds; the guard below turns a
            // truncation by another program into zeros plus an error instead of a SIGBUS.
            let mmap = unsafe { MmapOptions::new().len(mapped_len).map(&file) }.map_err(|e| Error::io(&origin, e))?;
            // SAFETY: `mmap` is ours and read-only; the region drops the guard before it, and
            // a changed mapping is never reported as a result (`check_unchanged`) nor reused.
            let guard = unsafe { mapguard::register(mmap.as_ptr(), mmap.len()) }.map_err(|e| Error::invalid(&origin, "file", e))?;
            Ok(Region::new(guard, mmap))
        }, |e| Error::invalid(&origin, "file", e))?;
        Ok(DynamicsFile { origin, header, file_len: metadata.len(), region, file, identity: (device, inode) })
    }

    pub fn header(&self) -> &DynamicsHeader {
        &self.header
    }

    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn dims(&self) -> Dims {
        Dims { n_epochs: self.header.n_epochs, n_examples: self.header.n_examples, n_labels: self.header.n_labels }
    }

    /// Typed view of the promised data (alignment was checked when the header was validated).
    /// Reads through it are only meaningful if [`DynamicsFile::check_unchanged`] passes after.
    pub fn view(&self) -> DynamicsView<'_> {
        let start = self.header.data_offset;
        let bytes = &self.region.bytes()[start..start + self.header.data_len()];
        let probs = match self.header.dtype {
            DType::F16 => Probs::F16(bytemuck::cast_slice(bytes)),
            DType::F32 => Probs::F32(bytemuck::cast_slice(bytes)),
            DType::F64 => Probs::F64(bytemuck::cast_slice(bytes)),
        };
        DynamicsView { probs, dims: self.dims(), origin: &self.origin }
    }

    /// True as soon as a read faulted on a page the file no longer holds.
    pub fn shrank(&self) -> bool {
        self.region.changed()
    }

    /// An error if the file changed since it was opened: it shrank below the mapped bytes
    /// (whether or not a read faulted), or another file (another inode) is now at its path.
    /// A program that rewrites the same bytes in place at the same size is not detected.
    pub fn check_unchanged(&self) -> Result<()> {
        let changed = |what: &str| Err(Error::invalid(&self.origin, "file", format!("the file changed while being read ({what}); its statistics would mix old and new contents, so none are returned. Read it again once the writer is done")));
        if self.region.changed() {
            return changed("it was truncated under the reader");
        }
        match self.file.metadata() {
            Ok(metadata) if metadata.len() < self.region.bytes().len() as u64 => return changed("it is now shorter than the data its header promised"),
            Ok(_) => {}
            Err(e) => return Err(Error::io(&self.origin, e)),
        }
        match std::fs::metadata(&self.origin) {
            Ok(metadata) if identity(&metadata) == self.identity => Ok(()),
            Ok(_) => changed("another file was put at its path"),
            Err(_) => changed("it was removed from its path"),
        }
    }

    /// Compute the statistics over the whole file, then check that it did not change while
    /// it was read; a change wins over any other outcome (the values read may be garbage).
    /// A computation cut short by a truncation stops at the next block.
    pub fn compute(&self, labels: Labels<'_>, options: &Options, progress: Option<Progress<'_>>) -> Result<Statistics> {
        let report = |done: usize, total: usize| !self.shrank() && progress.is_none_or(|report| report(done, total));
        let result = stats::compute(self.view(), labels, options, Some(&report));
        self.check_unchanged()?;
        result
    }
}

/// Open `path` for reading without blocking and refuse anything but a regular file.
fn open_regular(path: &Path, origin: &str) -> Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // a FIFO would block in open() until a writer appears
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| {
        #[cfg(unix)]
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Error::invalid(origin, "file", "is a socket; expected a regular .npy file");
        }
        Error::io(origin, e)
    })?;
    let file_type = file.metadata().map_err(|e| Error::io(origin, e))?.file_type();
    if file_type.is_dir() {
        return Err(Error::invalid(origin, "header", "is a directory; expected a .npy file"));
    }
    if !file_type.is_file() {
        return Err(Error::invalid(origin, "file", format!("is a {}; expected a regular .npy file", special_kind(&file_type))));
    }
    Ok(file)
}

fn special_kind(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "FIFO (named pipe)";
        }
        if file_type.is_socket() {
            return "socket";
        }
        if file_type.is_char_device() {
            return "character device";
        }
        if file_type.is_block_device() {
            return "block device";
        }
    }
    let _ = file_type;
    "special file"
}

/// The preamble and header text: as many bytes as the header says it takes (or the whole
/// file, if shorter), read with positioned reads (no mapping, so nothing can fault).
fn read_header_bytes(file: &File, origin: &str) -> Result<Vec<u8>> {
    let mut bytes = read_prefix(file, PREAMBLE, origin)?;
    if bytes.is_empty() {
        return Err(Error::invalid(origin, "header", "the file is empty; expected a .npy file"));
    }
    // a v1 preamble is 10 bytes with a 2-byte length, v2/v3 12 bytes with a 4-byte length;
    // anything else is left to `parse_header`, which reports it from these bytes
    let wanted = match (bytes.get(6), bytes.get(7)) {
        (Some(1), Some(0)) if bytes.len() >= 10 => 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize,
        (Some(2 | 3), Some(0)) if bytes.len() >= 12 => 12usize.saturating_add(u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize),
        _ => return Ok(bytes),
    };
    if wanted > bytes.len() {
        bytes = read_prefix(file, wanted, origin)?;
    }
    Ok(bytes)
}

/// Up to `len` bytes from the start of `file` (fewer at the end of the file).
fn read_prefix(file: &File, len: usize, origin: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut reader = file;
    reader.seek(SeekFrom::Start(0)).map_err(|e| Error::io(origin, e))?;
    reader.take(len as u64).read_to_end(&mut bytes).map_err(|e| Error::io(origin, e))?;
    Ok(bytes)
}

/// What tells two files at the same path apart: device and inode.
fn identity(metadata: &std::fs::Metadata) -> (u64, u64) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (metadata.dev(), metadata.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        (0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::npy_bytes;
    use std::io::Write;

    #[test]
    fn maps_a_file_and_views_its_values() {
        let values: Vec<f32> = (0..24).map(|i| i as f32 / 24.0).collect();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&npy_bytes("<f4", false, &[2, 3, 4], bytemuck::cast_slice(&values), 1)).unwrap();
        let dynamics = DynamicsFile::open(file.path()).unwrap();
        let view = dynamics.view();
        assert_eq!(view.dims, Dims { n_epochs: 2, n_examples: 3, n_labels: 4 });
        match view.probs {
            Probs::F32(s) => assert_eq!(s, &values[..]),
            _ => panic!("expected float32"),
        }
    }

    #[test]
    fn missing_and_empty_files_are_clear_errors() {
        let missing = DynamicsFile::open(Path::new("/nonexistent/dynamics.npy")).err().unwrap();
        assert!(matches!(missing, Error::Io { .. }));
        assert!(missing.to_string().contains("/nonexistent/dynamics.npy"));
        let empty = tempfile::NamedTempFile::new().unwrap();
        assert!(DynamicsFile::open(empty.path()).err().unwrap().to_string().contains("empty"));
    }

    fn dynamics_file(dir: &Path, epochs: usize, n: usize) -> (std::path::PathBuf, Vec<i64>) {
        let values: Vec<f32> = (0..epochs * n * 2).map(|i| if i % 2 == 0 { 0.75 } else { 0.25 }).collect();
        let path = dir.join("d.npy");
        std::fs::write(&path, npy_bytes("<f4", false, &[epochs as u64, n as u64, 2], bytemuck::cast_slice(&values), 1)).unwrap();
        (path, vec![0; n])
    }

    fn options() -> Options {
        Options { threads: Some(2), ..Options::default() }
    }

    #[test]
    fn a_file_truncated_while_mapped_is_an_error_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let (path, labels) = dynamics_file(dir.path(), 4, 200_000);
        let dynamics = DynamicsFile::open(&path).unwrap();
        assert!(dynamics.compute(Labels::Classes(&labels), &options(), None).is_ok());
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(4096).unwrap();
        let error = dynamics.compute(Labels::Classes(&labels), &options(), None).err().unwrap();
        assert!(dynamics.shrank(), "the kernel read past the new end without the guard noticing");
        let message = error.to_string();
        assert!(message.contains(&*path.display().to_string()) && message.contains("changed while being read"), "{message}");
    }

    #[test]
    fn a_replaced_file_is_an_error_and_appended_epochs_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let (path, labels) = dynamics_file(dir.path(), 2, 1000);
        let dynamics = DynamicsFile::open(&path).unwrap();
        // a writer committing an epoch: data appended, then the header's shape rewritten
        let mut grown = std::fs::read(&path).unwrap();
        grown.extend(vec![0u8; 1000 * 2 * 4]);
        let old_shape = b"(2, 1000, 2)";
        let at = grown.windows(old_shape.len()).position(|w| w == old_shape).unwrap();
        grown[at..at + old_shape.len()].copy_from_slice(b"(3, 1000, 2)");
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().write_all(&grown).unwrap();
        assert!(dynamics.compute(Labels::Classes(&labels), &options(), None).is_ok());
        assert_eq!(DynamicsFile::open(&path).unwrap().dims().n_epochs, 3);
        // another file renamed over the path
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let (other, _) = dynamics_file(&elsewhere, 2, 1000);
        std::fs::rename(other, &path).unwrap();
        let message = dynamics.compute(Labels::Classes(&labels), &options(), None).err().unwrap().to_string();
        assert!(message.contains("another file was put at its path"), "{message}");
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipe.npy");
        let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        // without O_NONBLOCK this open would wait forever for a writer
        let message = DynamicsFile::open(&path).err().unwrap().to_string();
        assert!(message.contains("FIFO") && message.contains("expected a regular .npy file"), "{message}");
    }

    #[test]
    fn view_checks_the_element_count() {
        let data = [0.5f32; 6];
        assert!(DynamicsView::new(Probs::F32(&data), Dims { n_epochs: 1, n_examples: 3, n_labels: 2 }, "probs").is_ok());
        assert!(DynamicsView::new(Probs::F32(&data), Dims { n_epochs: 1, n_examples: 4, n_labels: 2 }, "probs").is_err());
        assert!(DynamicsView::new(Probs::F32(&[]), Dims { n_epochs: 0, n_examples: 4, n_labels: 2 }, "probs").is_err());
    }
}
