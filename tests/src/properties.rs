//! The runner of the property tests (model and core): a few hundred to a
//! thousand cases per property in the normal test run, `PROPTEST_CASES=<n>`
//! (see `scripts/proptest-long`) for all of them, and each property says
//! how many cases passed.

use std::sync::atomic::{AtomicU32, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// The configuration of one property: `default_cases` unless
/// `PROPTEST_CASES` says otherwise; no regression files.
pub fn config(default_cases: u32) -> Config {
    // `Config::default()` reads the PROPTEST_* variables.
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    config.failure_persistence = None;
    config.max_global_rejects = config.max_global_rejects.max(config.cases);
    config.max_local_rejects = config.max_local_rejects.max(config.cases.saturating_mul(4));
    config
}

/// Runs one property and reports how many cases passed.
pub fn property<S>(
    name: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let passed = AtomicU32::new(0);
    let mut runner = TestRunner::new(config(default_cases));
    let result = runner.run(&strategy, |value| {
        let outcome = test(value);
        if outcome.is_ok() {
            passed.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    });
    if let Err(error) = result {
        panic!("property `{name}` failed: {error}");
    }
    println!(
        "property {name}: {} cases passed",
        passed.load(Ordering::Relaxed)
    );
}

/// Any Unicode text, control characters and newlines included.
pub fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}
