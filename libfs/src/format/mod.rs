//! On-disk codecs. Nothing here does IO: every decoder takes bytes and returns a typed value
//! or an error, never panics, whatever the input.
