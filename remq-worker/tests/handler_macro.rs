//! Compile tests of `#[remq::handler]`: what it accepts, and where and how it
//! reports what it does not. Regenerate the expected errors with
//! `TRYBUILD=overwrite cargo test -p remq-worker --test handler_macro`, then read them.

#[test]
fn handler_macro() {
    let t = trybuild::TestCases::new();
    t.pass("tests/handler_macro/pass/*.rs");
    t.compile_fail("tests/handler_macro/fail/*.rs");
}
