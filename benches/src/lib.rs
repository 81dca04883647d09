//! Benchmarks live in `benches/`. Issue #4 adds the end-to-end harness here.
