//! End-to-end tests of Tickwire live in `tests/`.
