//! Small utilities shared by every layer (filled in by the primitives issue).
