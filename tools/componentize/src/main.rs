//! `componentize --wit DIR --world NAME --out FILE.wasm SOURCE.c…`
//!
//! Generates the world's C bindings next to the output, compiles them with the sources using
//! `clang --target=wasm32-wasi` (Debian: `clang lld wasi-libc libclang-rt-14-dev-wasm32`), and
//! turns the module into a component with the WASI preview 1 reactor adapter.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, Result, bail};

fn main() -> Result<()> {
    let mut wit = None;
    let mut world = None;
    let mut out = None;
    let mut sources = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--wit" => wit = args.next().map(PathBuf::from),
            "--world" => world = args.next(),
            "--out" => out = args.next().map(PathBuf::from),
            _ => sources.push(PathBuf::from(arg)),
        }
    }
    let (Some(wit), Some(world), Some(out)) = (wit, world, out) else {
        bail!("usage: componentize --wit DIR --world NAME --out FILE.wasm SOURCE.c…");
    };
    let generated = out.with_extension("bindings");
    std::fs::create_dir_all(&generated)?;

    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_path(&wit)
        .with_context(|| format!("reading {}", wit.display()))?;
    let world_id = resolve.select_world(&[package], Some(&world))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world_id, &mut files)?;
    let mut compiled_parts = Vec::new();
    for (name, contents) in files.iter() {
        let path = generated.join(name);
        std::fs::write(&path, contents)?;
        if name.ends_with(".c") || name.ends_with(".o") {
            compiled_parts.push(path);
        }
    }

    let core = out.with_extension("core.wasm");
    let status = Command::new("clang")
        .args([
            "--target=wasm32-wasi",
            "-mexec-model=reactor",
            "-O2",
            "-Wall",
            "-Werror",
        ])
        .arg("-I")
        .arg(&generated)
        .arg("-o")
        .arg(&core)
        .args(&sources)
        .args(&compiled_parts)
        .status()
        .context(
            "running clang (Debian: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32)",
        )?;
    if !status.success() {
        bail!("clang failed");
    }

    let module = std::fs::read(&core)?;
    let component = wit_component::ComponentEncoder::default()
        .module(&module)?
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .validate(true)
        .encode()?;
    std::fs::write(&out, component)?;
    println!("{}", out.display());
    Ok(())
}
