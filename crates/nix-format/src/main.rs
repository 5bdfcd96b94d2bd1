//! `nix-format [--check] [PATH…]`: formats every `.nix` file under the paths (default: the current
//! directory) in alejandra's style, with the alejandra version Cargo.lock pins. CI runs it with
//! `--check`; the flake's `formatter` is this same program, so `nix fmt` and CI never disagree.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use alejandra::format::{in_memory, Status};

fn main() -> ExitCode {
    let mut check = false;
    let mut roots = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" | "-c" => check = true,
            "--help" | "-h" => {
                println!("usage: nix-format [--check] [PATH...]");
                return ExitCode::SUCCESS;
            }
            _ => roots.push(PathBuf::from(arg)),
        }
    }
    if roots.is_empty() {
        roots.push(PathBuf::from("."));
    }
    let mut files = Vec::new();
    for root in &roots {
        collect(root, &mut files);
    }
    files.sort();
    let mut unformatted = 0;
    let mut errors = 0;
    for file in &files {
        let before = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(error) => {
                eprintln!("nix-format: failed to read {}: {error}", file.display());
                errors += 1;
                continue;
            }
        };
        match in_memory(file.display().to_string(), before) {
            (Status::Error(error), _) => {
                eprintln!("nix-format: failed to parse {}: {error}", file.display());
                errors += 1;
            }
            (Status::Changed(false), _) => {}
            (Status::Changed(true), after) if check => {
                eprintln!("nix-format: {} is not formatted", file.display());
                unformatted += 1;
                let _ = after;
            }
            (Status::Changed(true), after) => {
                if let Err(error) = std::fs::write(file, after) {
                    eprintln!("nix-format: failed to write {}: {error}", file.display());
                    errors += 1;
                } else {
                    println!("formatted {}", file.display());
                }
            }
        }
    }
    if errors > 0 || unformatted > 0 {
        eprintln!(
            "nix-format: {} file(s) checked, {unformatted} not formatted, {errors} error(s){}",
            files.len(),
            if unformatted > 0 {
                " (run nix-format without --check, or nix fmt)"
            } else {
                ""
            }
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// `.nix` files under `path`, skipping build output and VCS directories.
fn collect(path: &Path, files: &mut Vec<PathBuf>) {
    if path.is_file() {
        if path.extension().is_some_and(|e| e == "nix") {
            files.push(path.to_owned());
        }
        return;
    }
    let skip = ["target", ".git", "result", "node_modules"];
    if path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| skip.contains(&n))
    {
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        collect(&entry.path(), files);
    }
}
