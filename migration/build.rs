//! Registers every migration file (`src/mYYYYMMDD_NNNNNN_*.rs`) in name order, so that adding
//! a migration is adding its file.

use std::fmt::Write as _;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(&std::env::var("CARGO_MANIFEST_DIR")?).join("src");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&dir)?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".rs")?;
            let b = stem.as_bytes();
            let dated = b.len() > 17
                && b[0] == b'm'
                && b[1..9].iter().all(u8::is_ascii_digit)
                && b[9] == b'_'
                && b[10..16].iter().all(u8::is_ascii_digit)
                && b[16] == b'_';
            dated.then(|| stem.to_owned())
        })
        .collect();
    names.sort();
    let mut out = String::new();
    for name in &names {
        let path = dir.join(format!("{name}.rs"));
        let _ = writeln!(
            out,
            "#[path = {:?}]\nmod {name};",
            path.display().to_string()
        );
    }
    out.push_str("\n/// Every migration, oldest first.\nfn all() -> Vec<Box<dyn MigrationTrait>> {\n    vec![\n");
    for name in &names {
        let _ = writeln!(out, "        Box::new({name}::Migration),");
    }
    out.push_str("    ]\n}\n");
    let target = Path::new(&std::env::var("OUT_DIR")?).join("migrations.rs");
    std::fs::write(target, out)?;
    Ok(())
}
