//! The whole vectors corpus through the core itself.

#[test]
fn core_reproduces_every_vector() {
    mxfed_conformance::run_all(&mxfed_conformance::CoreHost).assert_ok("core", 1000);
}
