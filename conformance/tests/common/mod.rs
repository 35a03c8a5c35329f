//! What the conformance integration tests share: the Python that runs the Python clients.

/// The test virtualenv's Python (M365EMU_TEST_PYTHON, set by scripts/test.sh); `None` only
/// when M365EMU_SKIP_CLIENT_TESTS=1 says to skip the Python clients.
pub fn python() -> Option<String> {
    match std::env::var("M365EMU_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ if std::env::var("M365EMU_SKIP_CLIENT_TESTS").as_deref() == Ok("1") => None,
        _ => panic!("M365EMU_TEST_PYTHON is not set: run the tests with scripts/test.sh"),
    }
}
