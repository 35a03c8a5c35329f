//! Benchmarks of m365-emulator's token paths live in `benches/token_paths.rs`; see README.md.
