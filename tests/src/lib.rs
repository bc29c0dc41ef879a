//! End-to-end tests of Strongroom through its real interfaces.
//!
//! The library itself is empty. The tests live in `tests/e2e/` (one integration test binary,
//! one module per area) and drive the system from outside: HTTPS with a verified certificate,
//! dev tokens, and the real `strongroom` process (built here as `strongroom-e2e`) for crash,
//! shutdown and log tests. Run them with `cargo test -p tests`.
