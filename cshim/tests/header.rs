//! The checked-in C header must match what cbindgen generates from the sources.
//! Refresh it with `SORA_SHIM_UPDATE_HEADER=1 cargo build --release` in cshim/.
#[test]
fn checked_in_header_is_fresh() {
    let generated = std::fs::read_to_string(concat!(env!("OUT_DIR"), "/sora_shim.h")).unwrap();
    let checked_in = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/sora_shim.h")).unwrap();
    assert!(
        generated == checked_in,
        "cshim/include/sora_shim.h is stale: run `SORA_SHIM_UPDATE_HEADER=1 cargo build --release` in cshim/"
    );
}
