//! Concurrency primitives (filled in by the primitives issue).
