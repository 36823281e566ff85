//! PyPI `moq-rs` (moq-net, the draft author's implementation) in a virtualenv, for the
//! interop tests of several crates: installed on first use into `$MOQ_RS_VENV`, by default
//! `target/moq-rs-venv` under the workspace root. If it cannot be installed the calling test
//! fails and says why; none passes by skipping.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The pins: `moq-rs`, and the library it wraps, for a reproducible peer.
pub const PACKAGES: [&str; 2] = ["moq-rs==0.5.1", "moq-ffi==0.4.18"];
/// The versions `import moq` must report.
pub const VERSIONS: &str = "0.5.1 0.4.18";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the workspace")
        .to_path_buf()
}

/// `$MOQ_RS_VENV`, else `target/moq-rs-venv` under the workspace root.
pub fn venv_dir() -> PathBuf {
    std::env::var_os("MOQ_RS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target").join("moq-rs-venv"))
}

/// Runs a command to completion within `limit`, its output appended to `log`.
pub fn run_logged(
    cmd: &mut std::process::Command,
    log: &Path,
    limit: Duration,
) -> Result<(), String> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("cannot write {}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return match status.success() {
                true => Ok(()),
                false => Err(format!("{cmd:?} failed ({status}); see {}", log.display())),
            };
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{cmd:?} took over {limit:?}; see {}",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the venv's Python imports `moq` at the pinned versions.
fn venv_ready(python: &Path, log: &Path) -> bool {
    let check = "import importlib.metadata as m, moq; \
                 v = m.version('moq-rs') + ' ' + m.version('moq-ffi'); \
                 assert v == '"
        .to_owned()
        + VERSIONS
        + "', v";
    python.exists()
        && run_logged(
            std::process::Command::new(python).args(["-c", &check]),
            log,
            Duration::from_secs(60),
        )
        .is_ok()
}

/// The venv's Python, with `moq-rs` installed: created or repaired on first call.
/// Panics, failing the test, with the reason when that is impossible.
pub fn python() -> PathBuf {
    static READY: Mutex<Option<Result<PathBuf, String>>> = Mutex::new(None);
    let mut ready = READY.lock().unwrap_or_else(|e| e.into_inner());
    let result = ready.get_or_insert_with(|| {
        let dir = venv_dir();
        let python = dir.join("bin").join("python");
        let log = dir.with_extension("log");
        if venv_ready(&python, &log) {
            return Ok(python);
        }
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        if !python.exists() {
            run_logged(
                std::process::Command::new("python3")
                    .arg("-m")
                    .arg("venv")
                    .arg(&dir),
                &log,
                Duration::from_secs(120),
            )
            .map_err(|e| {
                format!("cannot create the virtualenv (Debian: apt-get install python3-venv; scripts/peers installs it): {e}")
            })?;
        }
        run_logged(
            std::process::Command::new(dir.join("bin").join("pip"))
                .arg("install")
                .args(PACKAGES),
            &log,
            Duration::from_secs(600),
        )
        .map_err(|e| format!("cannot install {PACKAGES:?} from PyPI: {e}"))?;
        match venv_ready(&python, &log) {
            true => Ok(python),
            false => Err(format!(
                "{PACKAGES:?} installed but `import moq` fails; see {}",
                log.display()
            )),
        }
    });
    match result {
        Ok(python) => python.clone(),
        Err(reason) => panic!(
            "moq-rs is not available, so this interop test fails (run scripts/peers, which installs it): {reason}"
        ),
    }
}
