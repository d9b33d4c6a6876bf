//! Access to a `[epochs, examples, labels]` probability block: a memory-mapped `.npy` file or a
//! borrowed slice, viewed as typed elements without copying.

use std::fs::File;
use std::path::Path;

use half::f16;
use memmap2::Mmap;

use crate::error::{Error, Result};
use crate::npy::{parse_header, validate_dynamics, DType, DynamicsHeader};

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

/// A memory-mapped dynamics `.npy` file. Only the bytes the header promises are ever read.
pub struct DynamicsFile {
    origin: String,
    header: DynamicsHeader,
    file_len: u64,
    mmap: Mmap,
}

impl DynamicsFile {
    /// Open and validate `path`; the data are mapped, not read.
    pub fn open(path: &Path) -> Result<Self> {
        let origin = path.display().to_string();
        let file = File::open(path).map_err(|e| Error::io(&origin, e))?;
        let file_len = file.metadata().map_err(|e| Error::io(&origin, e))?.len();
        if file_len == 0 {
            return Err(Error::invalid(&origin, "header", "the file is empty; expected a .npy file"));
        }
        if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(Error::invalid(&origin, "header", "is a directory; expected a .npy file"));
        }
        // SAFETY: the map is read-only. Another process truncating the file while it is mapped
        // would fault; datacarto's writer only ever appends and rewrites the header in place.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&origin, e))?;
        let raw = parse_header(&mmap, &origin)?;
        let header = validate_dynamics(&raw, file_len, &origin)?;
        Ok(DynamicsFile { origin, header, file_len, mmap })
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
    pub fn view(&self) -> DynamicsView<'_> {
        let start = self.header.data_offset;
        let bytes = &self.mmap[start..start + self.header.data_len()];
        let probs = match self.header.dtype {
            DType::F16 => Probs::F16(bytemuck::cast_slice(bytes)),
            DType::F32 => Probs::F32(bytemuck::cast_slice(bytes)),
            DType::F64 => Probs::F64(bytemuck::cast_slice(bytes)),
        };
        DynamicsView { probs, dims: self.dims(), origin: &self.origin }
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

    #[test]
    fn view_checks_the_element_count() {
        let data = [0.5f32; 6];
        assert!(DynamicsView::new(Probs::F32(&data), Dims { n_epochs: 1, n_examples: 3, n_labels: 2 }, "probs").is_ok());
        assert!(DynamicsView::new(Probs::F32(&data), Dims { n_epochs: 1, n_examples: 4, n_labels: 2 }, "probs").is_err());
        assert!(DynamicsView::new(Probs::F32(&[]), Dims { n_epochs: 0, n_examples: 4, n_labels: 2 }, "probs").is_err());
    }
}
