//! Examples, integration tests and benchmarks of the workspace live in `examples/`, `tests/` and `benches/`.
