//! Shared helpers for the end-to-end suites live here as they are needed.
