//! Replays every saved input in `fuzz/regressions/<target>/` through the function its fuzz
//! target calls, so a crash found by fuzzing stays fixed on stable `cargo test`.

use std::fs;
use std::path::{Path, PathBuf};

/// The saved inputs of one target, sorted, skipping dotfiles and READMEs.
fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            path.is_file() && !name.starts_with('.') && !name.starts_with("README")
        })
        .collect();
    files.sort();
    files
}

fn replay(target: &str, check: impl Fn(&[u8])) {
    for path in inputs(target) {
        let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("replaying {} ({} bytes)", path.display(), data.len());
        check(&data);
    }
}

#[test]
fn message_decode() {
    replay("message_decode", moq_proto::fuzzing::message_decode);
}

#[test]
fn varint() {
    replay("varint", moq_proto::fuzzing::varint);
}

#[test]
fn reassembly() {
    replay("reassembly", moq_proto::fuzzing::reassembly);
}

#[test]
fn session() {
    // The harness supplies the base instant; the session itself never reads a clock.
    #[allow(clippy::disallowed_methods)]
    let start = std::time::Instant::now();
    replay("session", |data| moq_proto::fuzzing::session(data, start));
}
