//! The whole vectors corpus through the Python bindings (`import mxfed`), via the JSON-lines
//! adapter `bindings-python/tests/host_adapter.py` ([`mxfed_conformance::ProcessHost`]).
//!
//! Python is `$MXFED_PYTHON`, else `<repo>/.venv/bin/python`; the bindings must be installed in
//! it (`scripts/test.d/20-python.sh` builds and installs them). Without Python or without the
//! module the test is skipped with a note on stderr, except under CI (`$CI` set), where it fails.
//!
//! Ignored in the workspace-wide `cargo test`: that stage runs before `scripts/test.d/20-python.sh`
//! has built and installed the bindings, so on a fresh machine there is nothing to test yet. The
//! Python stage runs it with `--ignored` right after installing them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the repository root")
        .to_path_buf()
}

fn find_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MXFED_PYTHON").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        // Tests run in the crate directory: a relative path means one from the repo root.
        return Some(if p.components().count() > 1 && p.is_relative() {
            repo_root().join(p)
        } else {
            p
        });
    }
    let venv = repo_root().join(".venv").join("bin").join("python");
    venv.exists().then_some(venv)
}

/// Skips with a loud note, or fails under CI.
fn unavailable(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("python host unavailable under CI: {why}");
    }
    eprintln!(
        "\n*** SKIPPED python conformance host: {why}\n*** build and install the bindings with \
         scripts/test.d/20-python.sh (or set MXFED_PYTHON)\n"
    );
}

#[test]
#[ignore = "needs the Python bindings installed; scripts/test.d/20-python.sh runs it"]
fn python_bindings_reproduce_every_vector() {
    let Some(python) = find_python() else {
        unavailable("no Python: set MXFED_PYTHON or create .venv");
        return;
    };
    let probe = Command::new(&python)
        .args(["-c", "import mxfed, sys; sys.stdout.write(mxfed.__file__)"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {
            eprintln!(
                "python host: mxfed from {}",
                String::from_utf8_lossy(&o.stdout)
            );
        }
        Ok(o) => {
            unavailable(&format!(
                "{} cannot import mxfed: {}",
                python.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            ));
            return;
        }
        Err(e) => {
            unavailable(&format!("cannot run {}: {e}", python.display()));
            return;
        }
    }
    let adapter = repo_root().join("bindings-python/tests/host_adapter.py");
    let host = mxfed_conformance::ProcessHost::spawn(
        "python",
        python.to_str().unwrap(),
        &[adapter.to_str().unwrap()],
    )
    .unwrap();
    mxfed_conformance::run_all(&host).assert_ok("python", 1000);
}
