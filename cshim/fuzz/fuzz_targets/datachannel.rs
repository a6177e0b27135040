#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sora_shim::fuzz::datachannel(data));
