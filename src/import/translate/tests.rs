//! Whole configs through the translation.
