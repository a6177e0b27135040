//! Generates the C header from the `ffi` module into OUT_DIR. The checked-in copy in
//! `include/sora_shim.h` is compared against it by `tests/header.rs`; refresh it with
//! `SORA_SHIM_UPDATE_HEADER=1 cargo build`.
//!
//! On Linux it also makes the link use the static libvpx (see `link_statically`); libaom
//! and dav1d are built from source by their -sys crates, always static.
use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let out = out_dir.join("sora_shim.h");
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
    link_statically(&out_dir, "vpx");
}

/// env-libvpx-sys finds libvpx with pkg-config and asks for `-lvpx`, which the linker
/// resolves to the shared library (pkg-config never links statically from /usr). So that
/// the wheel does not need the system library, this puts a
/// directory holding only `lib<name>.a` (a symlink) first in the library search path: `-l`
/// then finds the archive before the system `.so`. Their own needs (`-lm`, `-lpthread`)
/// are linked by Rust's std anyway.
///
/// Skipped when `SORA_SHIM_<NAME>_DYNAMIC` is set (libvpx also when `VPX_LIB_DIR` is set:
/// env-libvpx-sys then decides, with `VPX_STATIC`), off Linux, and (with a warning) when no
/// archive exists: the shim then needs the system library at run time.
fn link_statically(out_dir: &Path, name: &str) {
    let upper = name.to_ascii_uppercase();
    println!("cargo:rerun-if-env-changed=SORA_SHIM_{upper}_DYNAMIC");
    println!("cargo:rerun-if-env-changed=VPX_LIB_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    if env::var_os(format!("SORA_SHIM_{upper}_DYNAMIC")).is_some()
        || (name == "vpx" && env::var_os("VPX_LIB_DIR").is_some())
        || env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux")
    {
        return;
    }
    let Some(archive) = find_static_archive(name) else {
        println!(
            "cargo:warning=lib{name}.a not found: the shim links the shared lib{name} \
             (install lib{name}-dev, or set SORA_SHIM_{upper}_DYNAMIC to silence this)"
        );
        return;
    };
    let archive = archive.canonicalize().unwrap_or(archive);
    println!("cargo:rerun-if-changed={}", archive.display()); // relink when the library is upgraded
    let dir = out_dir.join(format!("static-{name}"));
    std::fs::create_dir_all(&dir).expect("create the static library directory");
    let link = dir.join(format!("lib{name}.a"));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&archive, &link).expect("symlink the static library");
    println!("cargo:rustc-link-search=native={}", dir.display());
}

/// `lib<name>.a` in pkg-config's libdir (a custom prefix), else wherever the C compiler
/// finds it (Debian's .pc files may say /usr/lib; archives are in /usr/lib/<multiarch>).
fn find_static_archive(name: &str) -> Option<PathBuf> {
    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into());
    let file = format!("lib{name}.a");
    let from_pkg_config =
        run(Command::new(pkg_config).args(["--variable=libdir", name])).map(|libdir| PathBuf::from(libdir).join(&file));
    let from_cc = run(Command::new(c_compiler()).arg(format!("-print-file-name={file}"))).map(PathBuf::from);
    // -print-file-name echoes the bare name when the file is not on its search path.
    [from_pkg_config, from_cc].into_iter().flatten().find(|p| p.is_absolute() && p.is_file())
}

/// The target's C compiler, named as the `cc` crate does (CC_<target>, TARGET_CC, CC).
fn c_compiler() -> String {
    let target = env::var("TARGET").unwrap_or_default();
    let names =
        [format!("CC_{target}"), format!("CC_{}", target.replace('-', "_")), "TARGET_CC".into(), "CC".into()];
    for name in &names {
        println!("cargo:rerun-if-env-changed={name}");
    }
    names.iter().find_map(|name| env::var(name).ok()).unwrap_or_else(|| "cc".into())
}

fn run(command: &mut Command) -> Option<String> {
    let output = command.output().ok().filter(|o| o.status.success())?;
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}
