//! Unit tests of the core pipeline.
