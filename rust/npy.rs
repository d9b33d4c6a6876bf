//! `.npy` header parsing and validation (NumPy format 1.0, 2.0 and 3.0).
//!
//! Only the header is parsed here; the data are reached through [`crate::dynamics`]. The header
//! dictionary is a Python literal such as
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (10, 1000, 28), }`; a tiny tokenizer reads
//! exactly that grammar and rejects anything else, so random bytes can never panic or hang it.

use crate::error::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// The element types a dynamics file may hold (all little-endian IEEE floats).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F16,
    F32,
    F64,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F16 => 2,
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F16 => "float16",
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }
}

/// What a `.npy` header says, before any dynamics-specific validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawHeader {
    pub version: (u8, u8),
    pub descr: String,
    pub fortran_order: bool,
    pub shape: Vec<u64>,
    /// byte offset of the first data element
    pub data_offset: usize,
}

/// A validated dynamics header: `[epochs, examples, labels]` of a supported float type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamicsHeader {
    pub version: (u8, u8),
    pub dtype: DType,
    pub n_epochs: usize,
    pub n_examples: usize,
    pub n_labels: usize,
    pub data_offset: usize,
}

impl DynamicsHeader {
    /// Bytes of data the header promises.
    pub fn data_len(&self) -> usize {
        // cannot overflow: checked in `validate_dynamics`
        self.n_epochs * self.n_examples * self.n_labels * self.dtype.size()
    }
}

/// Parse the header at the start of `bytes` (the whole file or at least its header).
pub fn parse_header(bytes: &[u8], origin: &str) -> Result<RawHeader> {
    let bad = |message: String| Error::invalid(origin, "header", message);
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(bad("expected a .npy file starting with the magic string \\x93NUMPY; this is not a .npy file".into()));
    }
    if bytes.len() < 8 {
        return Err(bad(format!("truncated: the file holds {} bytes, a .npy preamble needs at least 10", bytes.len())));
    }
    let version = (bytes[6], bytes[7]);
    let (len_size, utf8) = match version {
        (1, 0) => (2usize, false),
        (2, 0) => (4, false),
        (3, 0) => (4, true),
        (major, minor) => return Err(bad(format!("expected .npy format version 1.0, 2.0 or 3.0, found {major}.{minor}"))),
    };
    let preamble = 8 + len_size;
    if bytes.len() < preamble {
        return Err(bad(format!("truncated: the file holds {} bytes, the preamble needs {}", bytes.len(), preamble)));
    }
    let header_len = if len_size == 2 {
        u16::from_le_bytes([bytes[8], bytes[9]]) as usize
    } else {
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
    };
    let data_offset = preamble
        .checked_add(header_len)
        .ok_or_else(|| bad("header length overflows".into()))?;
    if bytes.len() < data_offset {
        return Err(bad(format!(
            "truncated: the header declares {} bytes but the file holds only {} after the preamble",
            header_len,
            bytes.len() - preamble
        )));
    }
    let raw = &bytes[preamble..data_offset];
    let text: String = if utf8 {
        std::str::from_utf8(raw).map_err(|_| bad("expected UTF-8 header text (format 3.0)".into()))?.to_owned()
    } else {
        // latin-1: every byte is one char
        raw.iter().map(|&b| b as char).collect()
    };
    let dict = parse_dict(&text).map_err(|m| bad(format!("expected a Python dict literal with 'descr', 'fortran_order' and 'shape': {m}")))?;
    let descr = match dict.get("descr") {
        Some(Value::Str(s)) => s.clone(),
        Some(Value::Structured) => return Err(Error::invalid(origin, "descr", "expected a float dtype such as '<f4', found a structured dtype (a list of fields); structured dtypes are not supported")),
        Some(_) => return Err(Error::invalid(origin, "descr", "expected a dtype string such as '<f4'")),
        None => return Err(Error::invalid(origin, "descr", "missing from the header")),
    };
    let fortran_order = match dict.get("fortran_order") {
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(Error::invalid(origin, "fortran_order", "expected True or False")),
        None => return Err(Error::invalid(origin, "fortran_order", "missing from the header")),
    };
    let shape = match dict.get("shape") {
        Some(Value::Tuple(t)) => t.clone(),
        Some(_) => return Err(Error::invalid(origin, "shape", "expected a tuple of non-negative integers")),
        None => return Err(Error::invalid(origin, "shape", "missing from the header")),
    };
    Ok(RawHeader { version, descr, fortran_order, shape, data_offset })
}

/// Check that `header` describes a usable `[E, N, L]` dynamics block in a file of `file_len` bytes.
///
/// Bytes after the promised data are allowed: a writer killed mid-epoch leaves a partial epoch
/// behind the last committed one, and the header only counts committed epochs.
pub fn validate_dynamics(header: &RawHeader, file_len: u64, origin: &str) -> Result<DynamicsHeader> {
    let dtype = match header.descr.as_str() {
        "<f4" | "f4" => DType::F32,
        "<f8" | "f8" => DType::F64,
        "<f2" | "f2" => DType::F16,
        ">f2" | ">f4" | ">f8" => {
            return Err(Error::invalid(origin, "descr", format!("expected little-endian '<f4', '<f8' or '<f2', found big-endian '{}'", header.descr)))
        }
        other => return Err(Error::invalid(origin, "descr", format!("expected dtype '<f4' (float32), '<f8' (float64) or '<f2' (float16), found '{other}'"))),
    };
    if header.fortran_order {
        return Err(Error::invalid(origin, "fortran_order", "expected C order (False), found Fortran order; re-save with np.ascontiguousarray"));
    }
    if header.shape.len() != 3 {
        return Err(Error::invalid(origin, "shape", format!("expected 3 dimensions [epochs, examples, labels], found {} {:?}", header.shape.len(), header.shape)));
    }
    let names = ["epochs", "examples", "labels"];
    for (value, name) in header.shape.iter().zip(names) {
        if *value == 0 {
            return Err(Error::invalid(origin, "shape", format!("expected at least one of {name}, found shape {:?}", header.shape)));
        }
    }
    let to_usize = |v: u64| usize::try_from(v).map_err(|_| Error::invalid(origin, "shape", format!("{v} does not fit in memory addresses")));
    let (n_epochs, n_examples, n_labels) = (to_usize(header.shape[0])?, to_usize(header.shape[1])?, to_usize(header.shape[2])?);
    let data_len = n_epochs
        .checked_mul(n_examples)
        .and_then(|x| x.checked_mul(n_labels))
        .and_then(|x| x.checked_mul(dtype.size()))
        .and_then(|x| x.checked_add(header.data_offset))
        .ok_or_else(|| Error::invalid(origin, "shape", format!("{:?} is too large to address", header.shape)))?;
    if (data_len as u64) > file_len {
        return Err(Error::invalid(
            origin,
            "shape",
            format!(
                "truncated data: the header promises {:?} {} = {} bytes of data, the file holds {}",
                header.shape,
                dtype.name(),
                data_len - header.data_offset,
                file_len.saturating_sub(header.data_offset as u64)
            ),
        ));
    }
    if header.data_offset % dtype.size() != 0 {
        return Err(Error::invalid(
            origin,
            "header",
            format!("data offset {} is not aligned to the {}-byte element size; re-save the file with numpy", header.data_offset, dtype.size()),
        ));
    }
    Ok(DynamicsHeader { version: header.version, dtype, n_epochs, n_examples, n_labels, data_offset: header.data_offset })
}

// --- a tiny Python-literal reader for the header dict ------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Value {
    Str(String),
    Bool(bool),
    Int(u64),
    Tuple(Vec<u64>),
    /// a list literal (numpy writes structured dtypes' descr as a list of fields); not kept
    Structured,
}

struct Cursor<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
}

impl Cursor<'_> {
    fn skip_ws(&mut self) {
        while matches!(self.chars.peek(), Some(c) if c.is_whitespace()) {
            self.chars.next();
        }
    }

    fn expect(&mut self, want: char) -> std::result::Result<(), String> {
        self.skip_ws();
        match self.chars.next() {
            Some(c) if c == want => Ok(()),
            Some(c) => Err(format!("expected '{want}', found '{c}'")),
            None => Err(format!("expected '{want}', found the end")),
        }
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        self.skip_ws();
        let quote = match self.chars.next() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err("expected a quoted string".into()),
        };
        let mut out = String::new();
        for c in self.chars.by_ref() {
            if c == quote {
                return Ok(out);
            }
            out.push(c);
        }
        Err("unterminated string".into())
    }

    fn int(&mut self) -> std::result::Result<u64, String> {
        self.skip_ws();
        let mut digits = String::new();
        while let Some(&c) = self.chars.peek() {
            if c.is_ascii_digit() {
                digits.push(c);
                self.chars.next();
            } else {
                break;
            }
        }
        // Python 2 era writers put an `L` suffix on longs
        if self.chars.peek() == Some(&'L') {
            self.chars.next();
        }
        digits.parse::<u64>().map_err(|_| format!("expected a non-negative integer, found '{digits}'"))
    }

    fn value(&mut self) -> std::result::Result<Value, String> {
        self.skip_ws();
        match self.chars.peek() {
            Some('\'' | '"') => Ok(Value::Str(self.string()?)),
            Some('(') => {
                self.chars.next();
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    if self.chars.peek() == Some(&')') {
                        self.chars.next();
                        return Ok(Value::Tuple(items));
                    }
                    items.push(self.int()?);
                    self.skip_ws();
                    match self.chars.next() {
                        Some(',') => {}
                        Some(')') => return Ok(Value::Tuple(items)),
                        other => return Err(format!("expected ',' or ')' in the shape tuple, found {other:?}")),
                    }
                }
            }
            Some('T' | 'F') => {
                let word: String = std::iter::from_fn(|| self.chars.next_if(|c| c.is_ascii_alphabetic())).collect();
                match word.as_str() {
                    "True" => Ok(Value::Bool(true)),
                    "False" => Ok(Value::Bool(false)),
                    _ => Err(format!("expected True or False, found '{word}'")),
                }
            }
            Some('[') => {
                // skip a (possibly nested) list, honouring quoted strings
                let mut depth = 0usize;
                while let Some(c) = self.chars.next() {
                    match c {
                        '[' => depth += 1,
                        ']' => {
                            depth -= 1;
                            if depth == 0 {
                                return Ok(Value::Structured);
                            }
                        }
                        '\'' | '"' => {
                            self.chars.by_ref().find(|&q| q == c).ok_or("unterminated string")?;
                        }
                        _ => {}
                    }
                }
                Err("unterminated list".into())
            }
            Some(c) if c.is_ascii_digit() => Ok(Value::Int(self.int()?)),
            Some(c) => Err(format!("unexpected '{c}'")),
            None => Err("unexpected end".into()),
        }
    }
}

fn parse_dict(text: &str) -> std::result::Result<std::collections::HashMap<String, Value>, String> {
    let mut cursor = Cursor { chars: text.chars().peekable() };
    let mut dict = std::collections::HashMap::new();
    cursor.expect('{')?;
    loop {
        cursor.skip_ws();
        if cursor.chars.peek() == Some(&'}') {
            cursor.chars.next();
            break;
        }
        let key = cursor.string()?;
        cursor.expect(':')?;
        let value = cursor.value()?;
        if dict.insert(key.clone(), value).is_some() {
            return Err(format!("duplicate key '{key}'"));
        }
        cursor.skip_ws();
        match cursor.chars.next() {
            Some(',') => {}
            Some('}') => break,
            other => return Err(format!("expected ',' or '}}', found {other:?}")),
        }
    }
    // Only padding may follow the dict.
    cursor.skip_ws();
    match cursor.chars.next() {
        None => Ok(dict),
        Some(c) => Err(format!("unexpected '{c}' after the dict")),
    }
}

#[cfg(test)]
pub(crate) use tests::npy_bytes;

#[cfg(test)]
mod tests {
    use super::*;

    /// Build a .npy byte string the way numpy does (format 1.0, header padded to 64 bytes).
    pub(crate) fn npy_bytes(descr: &str, fortran: bool, shape: &[u64], data: &[u8], version: u8) -> Vec<u8> {
        let shape_text = match shape.len() {
            1 => format!("({},)", shape[0]),
            _ => format!("({})", shape.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")),
        };
        let mut dict = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape_text}, }}",
            if fortran { "True" } else { "False" }
        );
        let len_size = if version == 1 { 2 } else { 4 };
        let total = 8 + len_size + dict.len() + 1;
        dict.push_str(&" ".repeat((64 - total % 64) % 64));
        dict.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend([version, 0]);
        if version == 1 {
            out.extend((dict.len() as u16).to_le_bytes());
        } else {
            out.extend((dict.len() as u32).to_le_bytes());
        }
        out.extend(dict.as_bytes());
        out.extend(data);
        out
    }

    fn check(bytes: &[u8]) -> Result<DynamicsHeader> {
        let raw = parse_header(bytes, "f.npy")?;
        validate_dynamics(&raw, bytes.len() as u64, "f.npy")
    }

    #[test]
    fn parses_numpy_headers_of_every_version() {
        for version in [1u8, 2, 3] {
            let bytes = npy_bytes("<f4", false, &[2, 3, 4], &[0u8; 96], version);
            let header = check(&bytes).unwrap();
            assert_eq!((header.n_epochs, header.n_examples, header.n_labels), (2, 3, 4));
            assert_eq!(header.dtype, DType::F32);
            assert_eq!(header.data_offset % 64, 0);
            assert_eq!(header.data_len(), 96);
        }
    }

    #[test]
    fn reads_each_float_dtype() {
        for (descr, dtype) in [("<f2", DType::F16), ("<f4", DType::F32), ("<f8", DType::F64)] {
            let bytes = npy_bytes(descr, false, &[1, 1, 2], &vec![0u8; 2 * dtype.size()], 1);
            assert_eq!(check(&bytes).unwrap().dtype, dtype);
        }
    }

    fn message(bytes: &[u8]) -> String {
        check(bytes).unwrap_err().to_string()
    }

    #[test]
    fn rejects_bad_files_with_clear_messages() {
        assert!(message(b"PK\x03\x04 a zip file").contains("not a .npy file"));
        assert!(message(b"").contains("not a .npy"));
        assert!(message(&npy_bytes(">f4", false, &[1, 1, 1], &[0; 4], 1)).contains("big-endian"));
        assert!(message(&npy_bytes("<i8", false, &[1, 1, 1], &[0; 8], 1)).contains("found '<i8'"));
        assert!(message(&npy_bytes("<f4", true, &[1, 1, 1], &[0; 4], 1)).contains("Fortran"));
        assert!(message(&npy_bytes("<f4", false, &[4, 4], &[0; 64], 1)).contains("expected 3 dimensions"));
        assert!(message(&npy_bytes("<f4", false, &[0, 4, 4], &[], 1)).contains("epochs"));
        assert!(message(&npy_bytes("<f4", false, &[1, 0, 4], &[], 1)).contains("examples"));
        let truncated = message(&npy_bytes("<f4", false, &[2, 3, 4], &[0; 95], 1));
        assert!(truncated.contains("truncated data") && truncated.contains("96 bytes"), "{truncated}");
        let huge = message(&npy_bytes("<f4", false, &[u64::MAX / 2, 3, 4], &[0; 4], 1));
        assert!(huge.contains("too large") || huge.contains("does not fit"), "{huge}");
        let mut cut_header = npy_bytes("<f4", false, &[1, 1, 1], &[0; 4], 1);
        cut_header.truncate(30);
        assert!(message(&cut_header).contains("truncated"));
        assert!(message(b"\x93NUMPY\x09\x00").contains("version"));
        assert!(message(b"\x93NUMPY\x01\x01\x00\x00").contains("found 1.1"));
        let dict = b"{'descr': [('a', '<f4'), ('b', [('c', '<i2')])], 'fortran_order': False, 'shape': (1, 1, 1), }\n";
        let mut structured = MAGIC.to_vec();
        structured.extend([1, 0]);
        structured.extend((dict.len() as u16).to_le_bytes());
        structured.extend(dict);
        let text = message(&structured);
        assert!(text.contains("structured dtype"), "{text}");
    }

    #[test]
    fn accepts_trailing_bytes_of_an_uncommitted_epoch() {
        let bytes = npy_bytes("<f4", false, &[1, 2, 2], &[0; 16 + 10], 1);
        assert_eq!(check(&bytes).unwrap().n_epochs, 1);
    }

    #[test]
    fn dict_reader_handles_spacing_quotes_and_key_order() {
        let dict = parse_dict("{ \"shape\" : (3 ,4,5), 'fortran_order':False,'descr':'<f8'}   \n").unwrap();
        assert_eq!(dict["shape"], Value::Tuple(vec![3, 4, 5]));
        assert_eq!(dict["fortran_order"], Value::Bool(false));
        assert!(parse_dict("{'a': 1} trailing").is_err());
        assert!(parse_dict("{'a': (1, 2").is_err());
        assert!(parse_dict("{'a': (-1,)}").is_err());
        assert!(parse_dict("{'a': 1, 'a': 2}").is_err());
    }

    #[test]
    fn never_panics_on_mutated_headers() {
        // Deterministic mutation sweep: flip every byte of a valid header to a few values.
        let good = npy_bytes("<f4", false, &[2, 3, 4], &[0; 96], 1);
        for position in 0..good.len().min(128) {
            for value in [0u8, b'(', b')', b'\'', b'9', 0xff, b'{', b'}'] {
                let mut bytes = good.clone();
                bytes[position] = value;
                let _ = check(&bytes);
                let _ = check(&bytes[..position]);
            }
        }
    }
}

