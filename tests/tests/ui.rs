//! Compile-time behaviour of the macros: every supported shape compiles lint-clean, every
//! mistake gets its message on the offending token.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("ui/pass/*.rs");
    cases.compile_fail("ui/fail/*.rs");
}
