//! Generates the C header from the `ffi` module into OUT_DIR. The checked-in copy in
//! `include/sora_shim.h` is compared against it by `tests/header.rs`; refresh it with
//! `SORA_SHIM_UPDATE_HEADER=1 cargo build`.
use std::{env, path::PathBuf};

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("sora_shim.h");
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=SORA_SHIM_UPDATE_HEADER");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/ffi/mod.rs")) // follows its `mod` items
        .generate()
        .expect("cbindgen failed");
    bindings.write_to_file(&out);
    if env::var_os("SORA_SHIM_UPDATE_HEADER").is_some() {
        bindings.write_to_file(crate_dir.join("include/sora_shim.h"));
    }
}
