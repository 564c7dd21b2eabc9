//! Finding the compiled example binaries, for the tests that run them as child processes
//! (`tests/examples.rs`, `tests/fleet_processes.rs`).
//!
//! Cargo builds an integration test into `target/<profile>/deps/` and the example binaries
//! into `target/<profile>/examples/`. `cargo test` without target selection builds both, with
//! the same features; with `--all-targets` or `--examples` it builds the examples only as test
//! harnesses (`examples/<name>-<hash>`), and the binaries come from `cargo build --examples`.
//! A binary older than one of the sources it was built from (cargo's dep-info file next to it
//! lists them) is treated as missing: it would test other code than what is on disk.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Whether the tests run under CI (`CI=true`), where what they need must be there.
pub(crate) fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The source files `binary` was built from, as cargo lists them in the dep-info file it
/// writes next to the binary (`examples/<name>.d`, Makefile syntax: `target: dep dep ...`,
/// a space in a path escaped as `\ `): the example's own files and those of the workspace
/// crates it links.
fn dep_info_sources(binary: &Path) -> Option<Vec<PathBuf>> {
    let text = std::fs::read_to_string(binary.with_extension("d")).ok()?;
    let line = text.lines().find(|line| line.contains(": "))?;
    let (_, deps) = line.split_once(": ")?;
    let mut sources = Vec::new();
    let mut current = String::new();
    let mut chars = deps.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => current.push(chars.next().unwrap_or(' ')),
            c if c.is_whitespace() => {
                if !current.is_empty() {
                    sources.push(PathBuf::from(std::mem::take(&mut current)));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        sources.push(PathBuf::from(current));
    }
    Some(sources)
}

/// The example's own source when cargo's dep-info file is missing: `examples/<name>.rs`, or
/// every `.rs` file of `examples/<name>/` (an example in a directory, such as `proxy`).
fn example_sources(name: &str) -> Vec<PathBuf> {
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let single = examples.join(format!("{name}.rs"));
    if single.is_file() {
        return vec![single];
    }
    std::fs::read_dir(examples.join(name))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
                .collect()
        })
        .unwrap_or_default()
}

/// The example's binary, or why there is no usable one.
fn find(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("no current executable: {e}"))?;
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/examples/<name>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("{} has no grandparent directory", exe.display()))?
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let Some(built) = modified(&path) else {
        return Err(format!(
            "{} is not built (run `cargo test` without target selection, or \
             `cargo build --examples`)",
            path.display()
        ));
    };
    // Older than a source it was built from (the example's or a workspace crate's): it is
    // not what the sources on disk say, and cargo would build it again.
    let sources = dep_info_sources(&path).unwrap_or_else(|| example_sources(name));
    if let Some(newer) = sources
        .iter()
        .find(|source| modified(source).is_none_or(|time| time > built))
    {
        return Err(format!(
            "{} is older than {}, one of its sources (build it again: `cargo build \
             --all-features --examples`)",
            path.display(),
            newer.display()
        ));
    }
    Ok(path)
}

/// The compiled example, if it is built and newer than every source it was built from;
/// otherwise `None` (the test is skipped) with a message. Under `CI=true` a missing or
/// outdated binary is a failure: there the examples must have been built (with every
/// feature) before the tests run.
pub(crate) fn example_binary(name: &str) -> Option<PathBuf> {
    match find(name) {
        Ok(path) => Some(path),
        Err(why) if under_ci() => panic!(
            "under CI: {why}; the examples must be built before the tests run (plain \
             `cargo test` builds them, `cargo test --all-targets` does not)"
        ),
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}
