#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mxfed_fuzz_harness::pdu(data));
