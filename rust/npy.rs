//! `.npy` header parsing and validation (NumPy format 1.0, 2.0 and 3.0).
//!
//! Only the header is parsed here; the data are reached through [`crate::dynamics`]. The header
//! dictionary is a Python literal such as
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (10, 1000, 28), }`; a tiny tokenizer reads
//! exactly that grammar and rejects anything else, so random bytes can never panic or hang it.

use crate::error::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// The longest header text read (numpy's writer pads to 64 bytes; only huge structured dtypes
/// come near 64 KiB): the reader holds the text as chars, so this bounds its memory.
const MAX_HEADER_LEN: usize = 64 << 20;

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
    /// dimensions as written: NumPy's reader takes any int, so sizes < 1 are refused later
    pub shape: Vec<i128>,
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
///
/// The header dict is read as NumPy reads it: `ast.literal_eval` on the header text (see
/// `literal`), with NumPy's repair of Python 2 `L` suffixes on integers in formats 1.0 and 2.0.
/// So every spelling NumPy accepts (comments, line breaks, key order, quote styles, escapes,
/// `0x10`, `1_000`, `+3`, trailing commas, repeated keys where the last wins) reads the same here.
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
    if header_len > MAX_HEADER_LEN {
        // NumPy refuses headers over 10 000 characters unless told to trust the file
        return Err(bad(format!("expected at most {MAX_HEADER_LEN} bytes of header text, found {header_len}")));
    }
    let raw = &bytes[preamble..data_offset];
    let text: String = if utf8 {
        std::str::from_utf8(raw)
            .map_err(|error| {
                let at = error.valid_up_to();
                bad(format!("expected UTF-8 header text (format 3.0), found byte 0x{:02x} at header byte {at}", raw[at]))
            })?
            .to_owned()
    } else {
        // latin-1: every byte is one char
        raw.iter().map(|&b| b as char).collect()
    };
    const EXPECTED: &str = "expected a Python dict literal with 'descr', 'fortran_order' and 'shape'";
    // NumPy repairs `2L` only in the formats a Python 2 writer could produce
    let python2_longs = version.0 <= 2;
    let entries = match literal::parse(&text, python2_longs).map_err(|m| bad(format!("{EXPECTED}: {m}")))? {
        Literal::Dict(entries) => entries,
        other => return Err(bad(format!("{EXPECTED}, found {}", other.repr()))),
    };
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    for (key, value) in entries {
        // a repeated key keeps its last value, as in Python
        match &key {
            Literal::Str(name) if name == "descr" => descr = Some(value),
            Literal::Str(name) if name == "fortran_order" => fortran_order = Some(value),
            Literal::Str(name) if name == "shape" => shape = Some(value),
            _ => return Err(bad(format!("{EXPECTED} and no other key, found the key {}", key.repr()))),
        }
    }
    let descr = match descr {
        Some(Literal::Str(s)) => s,
        Some(Literal::List(_)) => return Err(Error::invalid(origin, "descr", "expected a float dtype such as '<f4', found a structured dtype (a list of fields); structured dtypes are not supported")),
        Some(other) => return Err(Error::invalid(origin, "descr", format!("expected a dtype string such as '<f4', found {}", other.repr()))),
        None => return Err(Error::invalid(origin, "descr", "missing from the header")),
    };
    let fortran_order = match fortran_order {
        Some(Literal::Bool(b)) => b,
        Some(other) => return Err(Error::invalid(origin, "fortran_order", format!("expected True or False, found {}", other.repr()))),
        None => return Err(Error::invalid(origin, "fortran_order", "missing from the header")),
    };
    let shape = match shape {
        Some(Literal::Tuple(items)) => {
            let dims: Option<Vec<Option<i128>>> = items
                .iter()
                .map(|item| match item {
                    Literal::Int(value, _) => Some(*value),
                    Literal::Bool(b) => Some(Some(i128::from(*b))), // bool is an int in Python, and to NumPy
                    _ => None,
                })
                .collect();
            let whole = Literal::Tuple(items.clone()).repr();
            match dims {
                None => return Err(Error::invalid(origin, "shape", format!("expected a tuple of integers, found {whole}"))),
                Some(dims) => match dims.iter().position(Option::is_none) {
                    Some(at) => return Err(Error::invalid(origin, "shape", format!("{} in {whole} is too large to address", items[at].repr()))),
                    None => dims.into_iter().flatten().collect(),
                },
            }
        }
        Some(other) => return Err(Error::invalid(origin, "shape", format!("expected a tuple of integers such as (10, 1000, 3), found {}", other.repr()))),
        None => return Err(Error::invalid(origin, "shape", "missing from the header")),
    };
    Ok(RawHeader { version, descr, fortran_order, shape, data_offset })
}

/// `(2, 3, 4)`, `(5,)` or `()`: a shape as Python prints it.
fn python_tuple(shape: &[i128]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    }
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
        _ => {
            let found = Literal::Str(header.descr.clone()).repr();
            return Err(Error::invalid(origin, "descr", format!("expected dtype '<f4' (float32), '<f8' (float64) or '<f2' (float16), found {found}")));
        }
    };
    if header.fortran_order {
        return Err(Error::invalid(origin, "fortran_order", "expected C order (False), found Fortran order; re-save with np.ascontiguousarray"));
    }
    let shape = python_tuple(&header.shape);
    if header.shape.len() != 3 {
        return Err(Error::invalid(origin, "shape", format!("expected 3 dimensions [epochs, examples, labels], found shape {shape}")));
    }
    let names = ["epochs", "examples", "labels"];
    for (value, name) in header.shape.iter().zip(names) {
        if *value < 1 {
            return Err(Error::invalid(origin, "shape", format!("expected at least one of {name}, found {value} in shape {shape}")));
        }
    }
    let to_usize = |v: i128| usize::try_from(v).map_err(|_| Error::invalid(origin, "shape", format!("{v} in shape {shape} does not fit in memory addresses")));
    let (n_epochs, n_examples, n_labels) = (to_usize(header.shape[0])?, to_usize(header.shape[1])?, to_usize(header.shape[2])?);
    let data_len = n_epochs
        .checked_mul(n_examples)
        .and_then(|x| x.checked_mul(n_labels))
        .and_then(|x| x.checked_mul(dtype.size()))
        .and_then(|x| x.checked_add(header.data_offset))
        .ok_or_else(|| Error::invalid(origin, "shape", format!("{shape} is too large to address")))?;
    if (data_len as u64) > file_len {
        return Err(Error::invalid(
            origin,
            "shape",
            format!(
                "truncated data: the header promises {shape} {} = {} bytes of data, the file holds {}",
                dtype.name(),
                data_len - header.data_offset,
                file_len.saturating_sub(header.data_offset as u64)
            ),
        ));
    }
    if !header.data_offset.is_multiple_of(dtype.size()) {
        return Err(Error::invalid(
            origin,
            "header",
            format!("data offset {} is not aligned to the {}-byte element size; re-save the file with numpy", header.data_offset, dtype.size()),
        ));
    }
    Ok(DynamicsHeader { version: header.version, dtype, n_epochs, n_examples, n_labels, data_offset: header.data_offset })
}

use literal::Literal;

/// A reader for the Python literals `ast.literal_eval` accepts, as CPython tokenizes them.
///
/// It follows CPython 3 rule for rule where a header can differ: comments, blank lines and line
/// continuations, indentation of the first and the trailing lines, string prefixes, quotes and
/// escapes, implicit string concatenation, every integer spelling, unary signs on numbers, a real
/// plus an imaginary number, tuples, lists, sets (`set()` too) and dicts. Anything else is refused
/// with the line and column. Nesting is capped at CPython's 200 brackets, so no input can
/// exhaust the stack, and every loop consumes input, so none can hang.
mod literal {
    /// A value as `ast.literal_eval` builds it, with what error messages need.
    #[derive(Clone, Debug, PartialEq)]
    pub enum Literal {
        Str(String),
        Bytes(Vec<u8>),
        /// the value when it fits an `i128`, and the source text
        Int(Option<i128>, String),
        /// the source text
        Float(String),
        /// the source text
        Complex(String),
        Bool(bool),
        None,
        Ellipsis,
        Tuple(Vec<Literal>),
        List(Vec<Literal>),
        Set(Vec<Literal>),
        Dict(Vec<(Literal, Literal)>),
    }

    impl Literal {
        /// Roughly Python's `repr`, for error messages.
        pub fn repr(&self) -> String {
            let join = |items: &[Literal]| items.iter().map(Literal::repr).collect::<Vec<_>>().join(", ");
            match self {
                Literal::Str(s) => quoted(s.chars()),
                Literal::Bytes(b) => format!("b{}", quoted(b.iter().map(|&c| c as char))),
                Literal::Int(Some(value), _) => value.to_string(),
                Literal::Int(None, text) | Literal::Float(text) | Literal::Complex(text) => text.clone(),
                Literal::Bool(true) => "True".into(),
                Literal::Bool(false) => "False".into(),
                Literal::None => "None".into(),
                Literal::Ellipsis => "Ellipsis".into(),
                Literal::Tuple(items) if items.len() == 1 => format!("({},)", items[0].repr()),
                Literal::Tuple(items) => format!("({})", join(items)),
                Literal::List(items) => format!("[{}]", join(items)),
                Literal::Set(items) if items.is_empty() => "set()".into(),
                Literal::Set(items) => format!("{{{}}}", join(items)),
                Literal::Dict(entries) => {
                    format!("{{{}}}", entries.iter().map(|(k, v)| format!("{}: {}", k.repr(), v.repr())).collect::<Vec<_>>().join(", "))
                }
            }
        }

        /// Python refuses lists, sets and dicts (and tuples holding one) as dict keys and set items.
        fn is_hashable(&self) -> bool {
            match self {
                Literal::List(_) | Literal::Set(_) | Literal::Dict(_) => false,
                Literal::Tuple(items) => items.iter().all(Literal::is_hashable),
                _ => true,
            }
        }
    }

    fn quoted(chars: impl Iterator<Item = char>) -> String {
        let mut out = String::from("'");
        for c in chars {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('\'');
        out
    }

    /// CPython's limit on nested brackets ("too many nested parentheses").
    const MAX_DEPTH: usize = 200;

    /// Parse `text` as `ast.literal_eval` would; `python2_longs` also drops an `L` after a number
    /// (NumPy's repair of headers written by Python 2, formats 1.0 and 2.0 only).
    pub fn parse(text: &str, python2_longs: bool) -> Result<Literal, String> {
        if text.contains('\0') {
            return Err("found a null byte, which Python source cannot hold".into());
        }
        // CPython reads "\r\n" and a lone "\r" as "\n"; literal_eval strips leading spaces and tabs
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        let text = text.trim_start_matches([' ', '\t']);
        let mut parser = Parser { chars: text.chars().collect(), pos: 0, depth: 0, python2_longs };
        parser.source()
    }

    /// One expression as the grammar sees it, before `literal_eval` judges it: parentheses only
    /// group, so `-(1)` is a signed number but `-(1, 2)` is not.
    enum Node {
        Number(Literal),
        Signed(bool, Box<Node>),
        Value(Literal),
    }

    fn number(node: Node) -> Result<Literal, String> {
        match node {
            Node::Number(n) => Ok(n),
            _ => Err("malformed literal: a sign or '+'/'-' applies to a number only".into()),
        }
    }

    /// `ast.literal_eval`'s `_convert_signed_num`.
    fn signed(node: Node) -> Result<Literal, String> {
        match node {
            Node::Signed(negative, inner) => Ok(match (negative, number(*inner)?) {
                (false, n) => n,
                (true, Literal::Int(value, text)) => Literal::Int(value.and_then(i128::checked_neg), format!("-{text}")),
                (true, Literal::Float(text)) => Literal::Float(format!("-{text}")),
                (true, Literal::Complex(text)) => Literal::Complex(format!("-{text}")),
                (true, other) => other,
            }),
            other => number(other),
        }
    }

    fn convert(node: Node) -> Result<Literal, String> {
        match node {
            Node::Value(value) | Node::Number(value) => Ok(value),
            signed_number => signed(signed_number),
        }
    }

    fn is_identifier_char(c: char) -> bool {
        c.is_alphanumeric() || c == '_'
    }

    struct Parser {
        chars: Vec<char>,
        pos: usize,
        /// open brackets: inside them line breaks are spacing
        depth: usize,
        python2_longs: bool,
    }

    impl Parser {
        fn peek(&self) -> Option<char> {
            self.chars.get(self.pos).copied()
        }

        fn peek_at(&self, ahead: usize) -> Option<char> {
            self.chars.get(self.pos + ahead).copied()
        }

        fn error(&self, message: impl std::fmt::Display) -> String {
            let before = &self.chars[..self.pos.min(self.chars.len())];
            let line = before.iter().filter(|&&c| c == '\n').count() + 1;
            let column = before.iter().rev().take_while(|&&c| c != '\n').count() + 1;
            format!("{message} at line {line}, column {column}")
        }

        fn found(&self) -> String {
            match self.peek() {
                None => "the end of the header".into(),
                Some('\n') => "a line break".into(),
                Some(c) if c.is_control() || c.is_whitespace() => match c as u32 {
                    code @ 0..=0xff => format!("'\\x{code:02x}'"),
                    code => format!("'\\u{code:04x}'"),
                },
                Some(c) => format!("'{c}'"),
            }
        }

        fn expected(&self, what: &str) -> String {
            self.error(format!("expected {what}, found {}", self.found()))
        }

        /// The whole source: blank or comment lines, the value, then blank or comment lines.
        fn source(&mut self) -> Result<Literal, String> {
            loop {
                let column = self.indentation()?;
                match self.peek() {
                    Some('#') => self.skip_comment(),
                    Some('\n') => self.pos += 1,
                    None => return Err(self.expected("a dict")),
                    Some(_) if column > 0 => return Err(self.error("unexpected indentation before the dict")),
                    Some(_) => break,
                }
            }
            let value = convert(self.expression()?)?;
            self.skip_spacing()?;
            match self.peek() {
                None => return Ok(value),
                Some('\n') => self.pos += 1,
                Some(_) => return Err(self.expected("only spacing or a comment after the dict")),
            }
            loop {
                let column = self.indentation()?;
                match self.peek() {
                    Some('#') => self.skip_comment(),
                    Some('\n') => self.pos += 1,
                    // CPython takes a last line of only spaces (no line break) for an indented line
                    None if column > 0 => return Err(self.error("unexpected indentation at the end of the header")),
                    None => return Ok(value),
                    Some(_) => return Err(self.expected("only spacing or a comment after the dict")),
                }
            }
        }

        /// Skip a line's indentation and return its column, as CPython measures it.
        fn indentation(&mut self) -> Result<usize, String> {
            let mut column = 0;
            loop {
                match self.peek() {
                    Some(' ') => column += 1,
                    Some('\t') => column = (column / 8 + 1) * 8,
                    Some('\x0c') => column = 0, // a form feed resets the column
                    Some('\\') => {
                        self.continuation()?;
                        continue;
                    }
                    _ => return Ok(column),
                }
                self.pos += 1;
            }
        }

        /// At a backslash outside a string: it must end the line, and the line goes on.
        fn continuation(&mut self) -> Result<(), String> {
            if self.peek_at(1) != Some('\n') {
                return Err(self.error("expected a line break after the line continuation '\\'"));
            }
            self.pos += 2;
            if self.pos == self.chars.len() {
                return Err(self.error("unexpected end of the header after a line continuation '\\'"));
            }
            Ok(())
        }

        fn skip_comment(&mut self) {
            while !matches!(self.peek(), None | Some('\n')) {
                self.pos += 1;
            }
        }

        /// Spaces, comments and line continuations; line breaks too inside brackets.
        fn skip_spacing(&mut self) -> Result<(), String> {
            loop {
                match self.peek() {
                    Some(' ' | '\t' | '\x0c') => self.pos += 1,
                    Some('#') => self.skip_comment(),
                    Some('\\') => self.continuation()?,
                    Some('\n') if self.depth > 0 => self.pos += 1,
                    _ => return Ok(()),
                }
            }
        }

        fn open(&mut self) -> Result<(), String> {
            if self.depth >= MAX_DEPTH {
                return Err(self.error("too many nested parentheses"));
            }
            self.depth += 1;
            self.pos += 1;
            Ok(())
        }

        fn close(&mut self) {
            self.depth -= 1;
            self.pos += 1;
        }

        /// `a`, `a + b` or `a - b` (only a real plus an imaginary number survives literal_eval).
        fn expression(&mut self) -> Result<Node, String> {
            let left = self.unary()?;
            self.skip_spacing()?;
            let subtract = match self.peek() {
                Some('+') => false,
                Some('-') => true,
                _ => return Ok(left),
            };
            self.pos += 1;
            let right = self.unary()?;
            let sum = match (signed(left)?, number(right)?) {
                (Literal::Int(_, real) | Literal::Float(real), Literal::Complex(imaginary)) => {
                    Literal::Complex(format!("{real}{}{imaginary}", if subtract { '-' } else { '+' }))
                }
                _ => return Err(self.error("malformed literal: only a real number plus or minus an imaginary one (such as 1+2j) is a literal")),
            };
            self.skip_spacing()?;
            if matches!(self.peek(), Some('+' | '-')) {
                return Err(self.error("malformed literal: only one '+' or '-' between two numbers"));
            }
            Ok(Node::Value(sum))
        }

        fn unary(&mut self) -> Result<Node, String> {
            self.skip_spacing()?;
            let negative = match self.peek() {
                Some('+') => false,
                Some('-') => true,
                _ => return self.atom(),
            };
            self.pos += 1;
            self.skip_spacing()?;
            if matches!(self.peek(), Some('+' | '-')) {
                return Err(self.error("malformed literal: one sign per number"));
            }
            Ok(Node::Signed(negative, Box::new(self.atom()?)))
        }

        fn atom(&mut self) -> Result<Node, String> {
            self.skip_spacing()?;
            match self.peek() {
                Some('(') => self.parenthesized(),
                Some('[') => {
                    self.open()?;
                    Ok(Node::Value(Literal::List(self.items(']')?)))
                }
                Some('{') => self.braces(),
                Some('.') if matches!(self.peek_at(1), Some('0'..='9')) => self.number(),
                Some('.') if self.peek_at(1) == Some('.') && self.peek_at(2) == Some('.') => {
                    self.pos += 3;
                    Ok(Node::Value(Literal::Ellipsis))
                }
                Some('0'..='9') => self.number(),
                Some('\'' | '"') => self.strings(),
                Some(c) if is_identifier_char(c) => {
                    if self.string_prefix().is_some() {
                        return self.strings();
                    }
                    let start = self.pos;
                    while matches!(self.peek(), Some(c) if is_identifier_char(c)) {
                        self.pos += 1;
                    }
                    let name: String = self.chars[start..self.pos].iter().collect();
                    match name.as_str() {
                        "True" => Ok(Node::Value(Literal::Bool(true))),
                        "False" => Ok(Node::Value(Literal::Bool(false))),
                        "None" => Ok(Node::Value(Literal::None)),
                        "set" => {
                            // `set()` is the one call literal_eval takes
                            self.skip_spacing()?;
                            if self.peek() != Some('(') {
                                return Err(self.expected("'(' after 'set' (only set() is a literal)"));
                            }
                            self.open()?;
                            self.skip_spacing()?;
                            if self.peek() != Some(')') {
                                return Err(self.expected("')' (only an empty set() is a literal)"));
                            }
                            self.close();
                            Ok(Node::Value(Literal::Set(Vec::new())))
                        }
                        _ => {
                            self.pos = start;
                            Err(self.error(format!("expected a literal, found the name '{name}'")))
                        }
                    }
                }
                _ => Err(self.expected("a literal")),
            }
        }

        /// `(a)` only groups; `()`, `(a,)` and `(a, b)` are tuples.
        fn parenthesized(&mut self) -> Result<Node, String> {
            self.open()?;
            self.skip_spacing()?;
            if self.peek() == Some(')') {
                self.close();
                return Ok(Node::Value(Literal::Tuple(Vec::new())));
            }
            let first = self.expression()?;
            self.skip_spacing()?;
            match self.peek() {
                Some(')') => {
                    self.close();
                    Ok(first)
                }
                Some(',') => {
                    self.pos += 1;
                    let mut items = vec![convert(first)?];
                    items.extend(self.items(')')?);
                    Ok(Node::Value(Literal::Tuple(items)))
                }
                _ => Err(self.expected("',' or ')'")),
            }
        }

        /// Comma-separated items up to `closing` (a trailing comma allowed), after the opening.
        fn items(&mut self, closing: char) -> Result<Vec<Literal>, String> {
            let mut items = Vec::new();
            loop {
                self.skip_spacing()?;
                if self.peek() == Some(closing) {
                    self.close();
                    return Ok(items);
                }
                items.push(convert(self.expression()?)?);
                self.skip_spacing()?;
                match self.peek() {
                    Some(',') => self.pos += 1,
                    Some(c) if c == closing => {
                        self.close();
                        return Ok(items);
                    }
                    _ => return Err(self.expected(&format!("',' or '{closing}'"))),
                }
            }
        }

        /// A dict `{k: v, ...}` or a set `{a, ...}`.
        fn braces(&mut self) -> Result<Node, String> {
            self.open()?;
            self.skip_spacing()?;
            if self.peek() == Some('}') {
                self.close();
                return Ok(Node::Value(Literal::Dict(Vec::new())));
            }
            let first = convert(self.expression()?)?;
            self.skip_spacing()?;
            if self.peek() != Some(':') {
                let mut items = vec![first];
                match self.peek() {
                    Some('}') => self.close(),
                    Some(',') => {
                        self.pos += 1;
                        items.extend(self.items('}')?);
                    }
                    _ => return Err(self.expected("',', ':' or '}'")),
                }
                if let Some(item) = items.iter().find(|item| !item.is_hashable()) {
                    return Err(format!("a set cannot hold the unhashable {}", item.repr()));
                }
                return Ok(Node::Value(Literal::Set(items)));
            }
            let mut entries = Vec::new();
            let mut key = first;
            loop {
                self.pos += 1; // the ':'
                let value = convert(self.expression()?)?;
                if !key.is_hashable() {
                    return Err(format!("a dict key cannot be the unhashable {}", key.repr()));
                }
                entries.push((key, value));
                self.skip_spacing()?;
                match self.peek() {
                    Some('}') => break,
                    Some(',') => {
                        self.pos += 1;
                        self.skip_spacing()?;
                        if self.peek() == Some('}') {
                            break;
                        }
                        key = convert(self.expression()?)?;
                        self.skip_spacing()?;
                        if self.peek() != Some(':') {
                            return Err(self.expected("':'"));
                        }
                    }
                    _ => return Err(self.expected("',' or '}'")),
                }
            }
            self.close();
            Ok(Node::Value(Literal::Dict(entries)))
        }

        /// The length of a string prefix (`r`, `u`, `b`, `br`, `rb`, `f`, ... in any case) at
        /// the cursor when a quote follows it.
        fn string_prefix(&self) -> Option<usize> {
            (1..=2).find(|&len| {
                let prefix: String = self.chars.get(self.pos..self.pos + len).unwrap_or_default().iter().collect::<String>().to_ascii_lowercase();
                matches!(self.peek_at(len), Some('\'' | '"')) && matches!(prefix.as_str(), "r" | "u" | "b" | "br" | "rb" | "f" | "fr" | "rf")
            })
        }

        /// One string, or several side by side (Python joins them).
        fn strings(&mut self) -> Result<Node, String> {
            let mut text: Option<String> = None;
            let mut bytes: Option<Vec<u8>> = None;
            loop {
                let prefix_len = if matches!(self.peek(), Some('\'' | '"')) { 0 } else { self.string_prefix().unwrap_or(0) };
                let prefix: String = self.chars[self.pos..self.pos + prefix_len].iter().collect::<String>().to_ascii_lowercase();
                if prefix.contains('f') {
                    return Err(self.error("expected a literal, found an f-string"));
                }
                let is_bytes = prefix.contains('b');
                let start = self.pos;
                self.pos += prefix_len;
                let piece = self.string_body(prefix.contains('r'), is_bytes)?;
                if is_bytes {
                    if text.is_some() {
                        self.pos = start;
                        return Err(self.error("cannot mix bytes and str literals"));
                    }
                    bytes.get_or_insert_with(Vec::new).extend(piece.chars().map(|c| c as u32 as u8));
                } else {
                    if bytes.is_some() {
                        self.pos = start;
                        return Err(self.error("cannot mix bytes and str literals"));
                    }
                    text.get_or_insert_with(String::new).push_str(&piece);
                }
                self.skip_spacing()?;
                let another = matches!(self.peek(), Some('\'' | '"')) || (matches!(self.peek(), Some(c) if c.is_ascii_alphabetic()) && self.string_prefix().is_some());
                if !another {
                    return Ok(Node::Value(match (text, bytes) {
                        (Some(text), _) => Literal::Str(text),
                        (None, bytes) => Literal::Bytes(bytes.unwrap_or_default()),
                    }));
                }
            }
        }

        /// The quoted part of one string; bytes come back as chars U+0000..U+00FF.
        fn string_body(&mut self, raw: bool, is_bytes: bool) -> Result<String, String> {
            let start = self.pos;
            let quote = self.peek().unwrap_or('\'');
            let triple = self.peek_at(1) == Some(quote) && self.peek_at(2) == Some(quote);
            self.pos += if triple { 3 } else { 1 };
            let unterminated = |parser: &mut Parser| {
                parser.pos = start;
                Err(parser.error("unterminated string"))
            };
            let mut out = String::new();
            loop {
                let Some(c) = self.peek() else { return unterminated(self) };
                if c == quote && (!triple || (self.peek_at(1) == Some(quote) && self.peek_at(2) == Some(quote))) {
                    self.pos += if triple { 3 } else { 1 };
                    return Ok(out);
                }
                if c == '\n' && !triple {
                    return unterminated(self);
                }
                if is_bytes && !c.is_ascii() {
                    return Err(self.error("bytes can only hold ASCII characters"));
                }
                if c != '\\' {
                    out.push(c);
                    self.pos += 1;
                    continue;
                }
                let Some(next) = self.peek_at(1) else { return unterminated(self) };
                if raw {
                    // a raw string keeps the backslash, which still escapes a quote
                    out.push('\\');
                    out.push(next);
                    self.pos += 2;
                    continue;
                }
                let escape_at = self.pos;
                self.pos += 2;
                match next {
                    '\n' => {} // a line continuation inside the string
                    '\\' | '\'' | '"' => out.push(next),
                    'a' => out.push('\x07'),
                    'b' => out.push('\x08'),
                    'f' => out.push('\x0c'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'v' => out.push('\x0b'),
                    '0'..='7' => {
                        let mut value = next.to_digit(8).unwrap_or(0);
                        for _ in 0..2 {
                            match self.peek().and_then(|c| c.to_digit(8)) {
                                Some(digit) => {
                                    value = value * 8 + digit;
                                    self.pos += 1;
                                }
                                None => break,
                            }
                        }
                        if is_bytes {
                            value &= 0xff;
                        }
                        out.push(char::from_u32(value).unwrap_or('\u{fffd}'));
                    }
                    'x' => out.push(self.hex_escape(2, escape_at)?),
                    'u' if !is_bytes => out.push(self.hex_escape(4, escape_at)?),
                    'U' if !is_bytes => out.push(self.hex_escape(8, escape_at)?),
                    'N' if !is_bytes => out.push(self.named_escape(escape_at)?),
                    other => {
                        // an unknown escape keeps its backslash (Python warns, then accepts it)
                        out.push('\\');
                        out.push(other);
                    }
                }
            }
        }

        fn hex_escape(&mut self, digits: usize, escape_at: usize) -> Result<char, String> {
            let hex: String = self.chars.get(self.pos..self.pos + digits).unwrap_or_default().iter().collect();
            match u32::from_str_radix(&hex, 16) {
                Ok(value) if hex.len() == digits && hex.chars().all(|c| c.is_ascii_hexdigit()) && value <= 0x10ffff => {
                    self.pos += digits;
                    // a lone surrogate is a valid Python str but no Rust char; it matches no key anyway
                    Ok(char::from_u32(value).unwrap_or('\u{fffd}'))
                }
                _ => {
                    self.pos = escape_at;
                    Err(self.error(format!("expected a \\x, \\u or \\U escape with {digits} hex digits of a code point")))
                }
            }
        }

        /// `\N{NAME}`: the names of ASCII letters, digits and the dtype signs are known; any
        /// other well-formed name stands for some non-ASCII character, which no header key or
        /// dtype holds.
        fn named_escape(&mut self, escape_at: usize) -> Result<char, String> {
            let fail = |parser: &mut Parser| {
                parser.pos = escape_at;
                Err(parser.error("expected a character name in braces after \\N"))
            };
            if self.peek() != Some('{') {
                return fail(self);
            }
            let Some(length) = self.chars[self.pos + 1..].iter().position(|&c| c == '}' || c == '\n') else { return fail(self) };
            let name: String = self.chars[self.pos + 1..self.pos + 1 + length].iter().collect::<String>().to_ascii_uppercase();
            if length == 0 || self.chars[self.pos + 1 + length] != '}' {
                return fail(self);
            }
            self.pos += length + 2;
            let named = |prefix: &str, first: char| {
                let rest = name.strip_prefix(prefix)?;
                let mut letters = rest.chars();
                match (letters.next(), letters.next()) {
                    (Some(letter), None) if letter.is_ascii_uppercase() => Some((letter as u8 - b'A' + first as u8) as char),
                    _ => None,
                }
            };
            const DIGITS: [&str; 10] = ["ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"];
            const SIGNS: [(&str, char); 8] = [
                ("LESS-THAN SIGN", '<'),
                ("GREATER-THAN SIGN", '>'),
                ("EQUALS SIGN", '='),
                ("VERTICAL LINE", '|'),
                ("LOW LINE", '_'),
                ("SPACE", ' '),
                ("APOSTROPHE", '\''),
                ("QUOTATION MARK", '"'),
            ];
            let digit = name.strip_prefix("DIGIT ").and_then(|rest| DIGITS.iter().position(|&d| d == rest)).map(|d| (b'0' + d as u8) as char);
            let sign = SIGNS.iter().find(|(sign, _)| *sign == name).map(|&(_, c)| c);
            Ok(named("LATIN SMALL LETTER ", 'a').or_else(|| named("LATIN CAPITAL LETTER ", 'A')).or(digit).or(sign).unwrap_or('\u{fffd}'))
        }

        /// Digits of `radix` with single underscores between them (and, after `0x`, before them).
        fn digits(&mut self, radix: u32, leading_underscore: bool) -> Result<String, String> {
            let mut digits = String::new();
            loop {
                let underscore = self.peek() == Some('_') && (leading_underscore || !digits.is_empty());
                let at = self.pos + usize::from(underscore);
                match self.chars.get(at) {
                    Some(&c) if c.is_digit(radix) => {
                        digits.push(c);
                        self.pos = at + 1;
                    }
                    _ if underscore => return Err(self.error("invalid number: '_' must sit between digits")),
                    _ => break,
                }
            }
            if digits.is_empty() {
                return Err(self.expected(&format!("a base-{radix} digit")));
            }
            Ok(digits)
        }

        /// Any Python number: `12`, `1_000`, `0x1F`, `0o17`, `0b101`, `1.5`, `.5e-3`, `2j`.
        fn number(&mut self) -> Result<Node, String> {
            let start = self.pos;
            let radix = match (self.peek(), self.peek_at(1)) {
                (Some('0'), Some('x' | 'X')) => 16,
                (Some('0'), Some('o' | 'O')) => 8,
                (Some('0'), Some('b' | 'B')) => 2,
                _ => 10,
            };
            let text = |parser: &Parser| parser.chars[start..parser.pos].iter().collect::<String>();
            let value = if radix != 10 {
                self.pos += 2;
                let digits = self.digits(radix, true)?;
                Literal::Int(i128::from_str_radix(&digits, radix).ok(), text(self))
            } else {
                let integer = if self.peek() == Some('.') { String::new() } else { self.digits(10, false)? };
                let mut float = false;
                if self.peek() == Some('.') {
                    float = true;
                    self.pos += 1;
                    if matches!(self.peek(), Some('0'..='9')) {
                        self.digits(10, false)?;
                    }
                }
                if matches!(self.peek(), Some('e' | 'E')) {
                    float = true;
                    self.pos += 1;
                    if matches!(self.peek(), Some('+' | '-')) {
                        self.pos += 1;
                    }
                    self.digits(10, false)?;
                }
                if matches!(self.peek(), Some('j' | 'J')) {
                    self.pos += 1;
                    Literal::Complex(text(self))
                } else if float {
                    Literal::Float(text(self))
                } else {
                    if integer.starts_with('0') && integer.chars().any(|c| c != '0') {
                        self.pos = start;
                        return Err(self.error("leading zeros in a decimal integer are not allowed (use 0o for octal)"));
                    }
                    Literal::Int(integer.parse::<i128>().ok(), text(self))
                }
            };
            if self.python2_longs {
                self.skip_python2_long_suffixes();
            }
            if matches!(self.peek(), Some(c) if is_identifier_char(c)) {
                return Err(self.expected("a number to end"));
            }
            Ok(Node::Number(value))
        }

        /// NumPy re-tokenizes a header it cannot parse and drops every name `L` that follows a
        /// number (`2L`, `2 L`); a comment or line break in between is a token and stops that.
        fn skip_python2_long_suffixes(&mut self) {
            loop {
                let mut at = self.pos;
                loop {
                    match self.chars.get(at) {
                        Some(' ' | '\t' | '\x0c') => at += 1,
                        Some('\\') if self.chars.get(at + 1) == Some(&'\n') => at += 2,
                        _ => break,
                    }
                }
                let is_long = self.chars.get(at) == Some(&'L') && !matches!(self.chars.get(at + 1), Some(&c) if is_identifier_char(c));
                if !is_long {
                    return;
                }
                self.pos = at + 1;
            }
        }
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

    /// A file whose header is `dict` padded with spaces and a line break like numpy's, then
    /// `data_len` zero bytes.
    fn file_with_header(dict: &str, version: u8, data_len: usize) -> Vec<u8> {
        let len_size = if version == 1 { 2 } else { 4 };
        let total = 8 + len_size + dict.chars().count() + 1;
        file_with_text(&format!("{dict}{}\n", " ".repeat((64 - total % 64) % 64)), version, data_len)
    }

    /// A file whose header text is exactly `text`, then `data_len` zero bytes.
    fn file_with_text(text: &str, version: u8, data_len: usize) -> Vec<u8> {
        let encoded: Vec<u8> = if version == 3 { text.as_bytes().to_vec() } else { text.chars().map(|c| c as u32 as u8).collect() };
        let mut out = MAGIC.to_vec();
        out.extend([version, 0]);
        if version == 1 {
            out.extend((encoded.len() as u16).to_le_bytes());
        } else {
            out.extend((encoded.len() as u32).to_le_bytes());
        }
        out.extend(encoded);
        out.extend(vec![0u8; data_len]);
        out
    }

    /// Every spelling of a valid header that NumPy's reader (ast.literal_eval) accepts; the same
    /// forms are checked against NumPy itself in tests/test_fuzz_header.py.
    const ACCEPTED_FORMS: &[(&str, [usize; 3], DType)] = &[
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }", [2, 3, 4], DType::F32),
        // comments: after the dict with or without a line break, inside it, on lines of their own
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }#", [2, 3, 4], DType::F32),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), } # note\n#more", [2, 3, 4], DType::F32),
        ("{'descr': '<f4', # the dtype\n 'fortran_order': False, 'shape': (2, 3, 4 # labels\n)}", [2, 3, 4], DType::F32),
        ("# written by hand\n\n  # indented comment\n{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)}", [2, 3, 4], DType::F32),
        // spacing: line breaks, tabs, form feeds, CRLF, no spaces at all, blank lines after
        ("{\n  'descr': '<f4',\n  'fortran_order': False,\n  'shape': (\n    2,\n    3,\n    4,\n  ),\n}", [2, 3, 4], DType::F32),
        ("{'descr':'<f4','fortran_order':False,'shape':(2,3,4)}", [2, 3, 4], DType::F32),
        ("\t {\t'descr'\t:\x0c'<f4' , 'fortran_order' : False , 'shape' : ( 2 , 3 , 4 ) }", [2, 3, 4], DType::F32),
        ("{'descr': '<f4',\r\n 'fortran_order': False,\r 'shape': (2, 3, 4)}\r\n\r\n", [2, 3, 4], DType::F32),
        ("\n\x0c{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)}\n\n   \n\t\n\x0c", [2, 3, 4], DType::F32),
        ("{'descr': '<f4', 'fortran_order': False, \\\n'shape': (2, 3, 4)} \\\n  ", [2, 3, 4], DType::F32),
        // key order and repeated keys (the last one wins, as in a Python dict display)
        ("{'shape': (2, 3, 4), 'fortran_order': False, 'descr': '<f8'}", [2, 3, 4], DType::F64),
        ("{'descr': '<f2', 'shape': (9, 9, 9), 'fortran_order': True, 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)}", [2, 3, 4], DType::F32),
        // tuple forms: trailing comma, nested and redundant parentheses, the dict in parentheses
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4,)}", [2, 3, 4], DType::F32),
        ("{'descr': '<f4', 'fortran_order': (False), 'shape': (((2), (3), ((4)),))}", [2, 3, 4], DType::F32),
        ("({'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)})", [2, 3, 4], DType::F32),
        // strings: quotes, prefixes, triple quotes, escapes, implicit concatenation
        ("{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2, 3, 4)}", [2, 3, 4], DType::F32),
        ("{u'descr': U'<f4', r'fortran_order': False, R'shape': (2, 3, 4)}", [2, 3, 4], DType::F32),
        ("{'''descr''': \"\"\"<f4\"\"\", 'fortran_order': False, 'shape': (2, 3, 4)}", [2, 3, 4], DType::F32),
        ("{'de' \"scr\": '<' 'f4', 'fortran_' # split\n 'order': False, 'shape': (2, 3, 4)}", [2, 3, 4], DType::F32),
        ("{'\\x64escr': '\\x3cf\\64', 'fortran\\u005forder': False, 's\\U00000068ape': (2, 3, 4)}", [2, 3, 4], DType::F32),
        ("{'descr': '\\N{LESS-THAN SIGN}\\N{latin small letter f}\\N{DIGIT FOUR}', 'fortran_order': False, 'shape': (2, 3, 4)}", [2, 3, 4], DType::F32),
        ("{'descr': '<f\\\n4', 'fortran_order': False, 'shape': (2, 3, 4)}", [2, 3, 4], DType::F32),
        // integers: every base, underscores, a plus sign, True as 1 (bool is an int in Python)
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (0x2, 0o3, 0b100)}", [2, 3, 4], DType::F32),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (0X_2, 1_0, +4)}", [2, 10, 4], DType::F32),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (True, 3, + 0x4)}", [1, 3, 4], DType::F32),
        // other literals under a repeated key (only the last value counts)
        ("{'descr': [('a', 1.5e3, -2j, 1+2j, ..., None, b'x', {1, (2,)}, set(), {}), []], 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)}", [2, 3, 4], DType::F32),
        // Python 2 longs (NumPy repairs them in formats 1.0 and 2.0)
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3 L, 0x4L)}", [2, 3, 4], DType::F32),
    ];

    #[test]
    fn accepts_every_form_numpy_accepts() {
        for &(dict, [e, n, l], dtype) in ACCEPTED_FORMS {
            let versions: &[u8] = if dict.contains("L)") || dict.contains("L,") { &[1, 2] } else { &[1, 2, 3] };
            for &version in versions {
                let bytes = file_with_header(dict, version, e * n * l * dtype.size());
                let header = check(&bytes).unwrap_or_else(|error| panic!("{dict:?} (format {version}.0): {error}"));
                assert_eq!((header.n_epochs, header.n_examples, header.n_labels, header.dtype), (e, n, l, dtype), "{dict:?}");
                assert_eq!(header.data_offset, bytes.len() - header.data_len(), "{dict:?}");
            }
        }
    }

    #[test]
    fn format_3_headers_must_be_utf8() {
        let mut bytes = file_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 2), }", 3, 8);
        bytes[14] = 0xff; // inside 'descr'
        let text = check(&bytes).unwrap_err().to_string();
        assert_eq!(text, "f.npy: header: expected UTF-8 header text (format 3.0), found byte 0xff at header byte 2");
        // the same byte in format 1.0 is latin-1 'ÿ': a valid header text, an unknown key
        bytes[6] = 1;
        let bytes = [&bytes[..8], &bytes[8..10], &bytes[12..]].concat();
        assert!(check(&bytes).unwrap_err().to_string().contains("found the key '\u{ff}escr'"));
    }

    #[test]
    fn python2_longs_only_in_formats_1_and_2() {
        let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 2L)}";
        assert!(check(&file_with_header(dict, 2, 8)).is_ok());
        let text = check(&file_with_header(dict, 3, 8)).unwrap_err().to_string();
        assert!(text.ends_with("expected a number to end, found 'L' at line 1, column 59"), "{text}");
    }

    /// What NumPy's reader refuses (a SyntaxError or a malformed literal), refused here too.
    #[test]
    fn refuses_what_numpy_refuses() {
        let cases: &[(&str, &str)] = &[
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (02, 3, 4)}", "leading zeros in a decimal integer are not allowed (use 0o for octal) at line 1, column 52"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)}\x0b", "expected only spacing or a comment after the dict, found '\\x0b' at line 1, column 61"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)};", "expected only spacing or a comment after the dict, found ';' at line 1, column 61"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)}\n  x", "expected only spacing or a comment after the dict, found 'x' at line 2, column 3"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)}\n}", "expected only spacing or a comment after the dict, found '}' at line 2, column 1"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)} \\ ", "expected a line break after the line continuation '\\' at line 1, column 62"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, --4)}", "malformed literal: one sign per number at line 1, column 59"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 1+3)}", "malformed literal: only a real number plus or minus an imaginary one (such as 1+2j) is a literal at line 1, column 61"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4l)}", "expected a number to end, found 'l' at line 1, column 59"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4_)}", "invalid number: '_' must sit between digits at line 1, column 59"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 0x)}", "expected a base-16 digit, found ')' at line 1, column 60"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4),, }", "expected a literal, found ',' at line 1, column 61"),
            ("{'descr': f'<f4', 'fortran_order': False, 'shape': (2, 3, 4)}", "expected a literal, found an f-string at line 1, column 11"),
            ("{'descr': ur'<f4', 'fortran_order': False, 'shape': (2, 3, 4)}", "expected a literal, found the name 'ur' at line 1, column 11"),
            ("{'descr': '<f' b'4', 'fortran_order': False, 'shape': (2, 3, 4)}", "cannot mix bytes and str literals at line 1, column 16"),
            ("{'descr': '<f4, 'fortran_order': False, 'shape': (2, 3, 4)}", "expected ',' or '}', found 'f' at line 1, column 18"),
            ("{'descr': '<f4\n', 'fortran_order': False, 'shape': (2, 3, 4)}", "unterminated string at line 1, column 11"),
            ("{'descr': '\\x3', 'fortran_order': False, 'shape': (2, 3, 4)}", "expected a \\x, \\u or \\U escape with 2 hex digits of a code point at line 1, column 12"),
            ("{'descr': '\\N{}', 'fortran_order': False, 'shape': (2, 3, 4)}", "expected a character name in braces after \\N at line 1, column 12"),
            ("\n  {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)}", "unexpected indentation before the dict at line 2, column 3"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), **{}}", "expected a literal, found '*' at line 1, column 62"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), [1]: 2}", "a dict key cannot be the unhashable [1]"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)}\0", "found a null byte, which Python source cannot hold"),
            ("{'descr': '<f4', 'fortran_order': Fals, 'shape': (2, 3, 4)}", "expected a literal, found the name 'Fals' at line 1, column 35"),
            ("", "expected a dict, found the end of the header at line 2, column 1"),
        ];
        let prefix = "f.npy: header: expected a Python dict literal with 'descr', 'fortran_order' and 'shape': ";
        let wrong: Vec<String> = cases
            .iter()
            .filter_map(|&(dict, detail)| {
                let text = check(&file_with_header(dict, 1, 96)).map_or_else(|error| error.to_string(), |_| "accepted".into());
                (text != format!("{prefix}{detail}")).then(|| format!("{dict:?}\n  got:      {text}\n  expected: {prefix}{detail}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        // the end of the header text is the end of the source: a last line of spaces is indented,
        // and a line continuation must be followed by something
        let exact = [
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)}\n   ", "unexpected indentation at the end of the header at line 2, column 4"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)}\n\x0c   ", "unexpected indentation at the end of the header at line 2, column 5"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)} \\\n", "unexpected end of the header after a line continuation '\\' at line 2, column 1"),
        ];
        for (text, detail) in exact {
            let message = check(&file_with_text(text, 1, 96)).unwrap_err().to_string();
            assert_eq!(message, format!("{prefix}{detail}"), "{text:?}");
        }
        for text in ["{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)}\n \x0c", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)} \\\n  "] {
            let header = parse_header(&file_with_text(text, 1, 96), "f.npy").unwrap_or_else(|error| panic!("{text:?}: {error}"));
            assert_eq!(header.shape, [2, 3, 4]);
        }
        // a header text longer than anything numpy writes is refused before it is decoded
        let mut huge = MAGIC.to_vec();
        huge.extend([2, 0]);
        huge.extend(((64u32 << 20) + 1).to_le_bytes());
        huge.resize(12 + (64 << 20) + 1, b' ');
        let text = check(&huge).unwrap_err().to_string();
        assert_eq!(text, "f.npy: header: expected at most 67108864 bytes of header text, found 67108865");
        // CPython's limit: 200 nested brackets, counting the dict's
        let nested = |depth: usize| format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {}2, 3, 4{}}}", "(".repeat(depth), ")".repeat(depth));
        assert!(check(&file_with_header(&nested(199), 1, 96)).is_ok());
        assert!(check(&file_with_header(&nested(200), 1, 96)).unwrap_err().to_string().contains("too many nested parentheses"));
        // deep nesting and long chains never overflow the stack
        assert!(check(&file_with_header(&"(".repeat(100_000), 2, 0)).is_err());
        assert!(check(&file_with_header(&format!("{{'a': 1{}}}", "+1j".repeat(100_000)), 2, 0)).is_err());
    }

    /// Each field's message says what it expected and exactly what it found.
    #[test]
    fn field_errors_name_what_was_found() {
        let cases: &[(&str, &str)] = &[
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, -1)}", "shape: expected at least one of labels, found -1 in shape (1, 1, -1)"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (-0x2, 1, 1)}", "shape: expected at least one of epochs, found -2 in shape (-2, 1, 1)"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, False, 1)}", "shape: expected at least one of examples, found 0 in shape (1, 0, 1)"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1.0)}", "shape: expected a tuple of integers, found (1, 1, 1.0)"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': [1, 1, 1]}", "shape: expected a tuple of integers such as (10, 1000, 3), found [1, 1, 1]"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (5,)}", "shape: expected 3 dimensions [epochs, examples, labels], found shape (5,)"),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 0x1000000000000000000000000000000000)}",
                "shape: 0x1000000000000000000000000000000000 in (1, 1, 0x1000000000000000000000000000000000) is too large to address",
            ),
            ("{'descr': '<f4', 'fortran_order': 0, 'shape': (1, 1, 1)}", "fortran_order: expected True or False, found 0"),
            ("{'descr': '<f4', 'fortran_order': None, 'shape': (1, 1, 1)}", "fortran_order: expected True or False, found None"),
            ("{'descr': b'<f4', 'fortran_order': False, 'shape': (1, 1, 1)}", "descr: expected a dtype string such as '<f4', found b'<f4'"),
            ("{'descr': ('<f4', (2,)), 'fortran_order': False, 'shape': (1, 1, 1)}", "descr: expected a dtype string such as '<f4', found ('<f4', (2,))"),
            ("{'descr': 'float32', 'fortran_order': False, 'shape': (1, 1, 1)}", "descr: expected dtype '<f4' (float32), '<f8' (float64) or '<f2' (float16), found 'float32'"),
            ("{'descr': '<f4', 'fortran_order': False}", "shape: missing from the header"),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1), 'extra': 1}",
                "header: expected a Python dict literal with 'descr', 'fortran_order' and 'shape' and no other key, found the key 'extra'",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1), 1: 1}",
                "header: expected a Python dict literal with 'descr', 'fortran_order' and 'shape' and no other key, found the key 1",
            ),
            ("['descr', '<f4']", "header: expected a Python dict literal with 'descr', 'fortran_order' and 'shape', found ['descr', '<f4']"),
        ];
        for &(dict, detail) in cases {
            let text = check(&file_with_header(dict, 1, 96)).unwrap_err().to_string();
            assert_eq!(text, format!("f.npy: {detail}"), "{dict:?}");
        }
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

