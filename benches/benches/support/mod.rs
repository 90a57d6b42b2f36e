//! Shared by the B2/B3 benches (and B6, B9, B10 for medians and `start_sim`): a
//! counting global allocator on top of [`common`]. Benches that time CPU (B1, B4) include
//! `common.rs` alone, so that their allocations cost what they cost in the `protonn` binary.
#![allow(dead_code, unreachable_pub)]

use cap::Cap;

#[path = "common.rs"]
mod common;
pub use common::*;

/// Every allocation of the process goes through this counter: `allocated()` is the exact
/// number of live heap bytes (requested sizes, without the allocator's own overhead).
#[global_allocator]
static ALLOCATOR: Cap<Allocator> = Cap::new(Allocator {}, usize::MAX);

/// Live heap bytes of the whole process now.
pub fn allocated() -> usize {
    ALLOCATOR.allocated()
}
