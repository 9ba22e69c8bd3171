//! Config loading and validation tests.
