//! datacarto's core: training-dynamics statistics over memory-mapped `[epochs, examples, labels]`
//! probability files.
//!
//! The pure modules ([`npy`], [`dynamics`], [`stats`]) never touch Python and are tested with
//! `cargo test`; the `python` feature adds the thin PyO3 binding layer that maturin builds.

#[cfg(target_endian = "big")]
compile_error!("datacarto reads little-endian .npy data in place and supports little-endian targets only");

pub mod dynamics;
pub mod error;
pub mod mapcache;
pub mod mapguard;
pub mod npy;
pub mod pools;
pub mod recycle;
pub mod stats;
pub mod stream;

#[cfg(feature = "python")]
mod python;

pub use dynamics::{Dims, DynamicsFile, DynamicsView, Probs};
pub use error::{Error, Result};
pub use stats::{compute, partial, Correctness, Labels, Offsets, Options, State, Statistics, Task};
