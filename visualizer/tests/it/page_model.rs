//! The page's model (web/model.js) is tested in JavaScript, under Node's own test runner
//! (web/test); this runs `node --test web/test` so that `cargo test` (and so CI) runs those
//! tests too. Without Node.js the test says so loudly and passes, except under CI (`CI=true`),
//! where a missing `node` fails it: `.ci/run` installs Debian's `nodejs`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::browser::did_not_run;

/// `node`, from `NODE` or the `PATH`.
fn find_node() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NODE") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| ["node", "nodejs"].map(|n| dir.join(n)))
        .find(|p| p.is_file())
}

#[test]
fn the_page_model_passes_its_node_tests() {
    let Some(node) = find_node() else {
        did_not_run(
            "a missing node",
            "NO NODE.JS FOUND: the page's model tests (web/test) did NOT run. Install it \
             (apt-get install nodejs) or set NODE=/path.",
        );
        return;
    };
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    let output = Command::new(&node)
        .arg("--test")
        .arg("test/")
        .current_dir(&web)
        .output()
        .expect("run node --test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "node --test web/test failed");
    assert!(
        stdout.contains("# pass") && !stdout.contains("# pass 0"),
        "node ran no test"
    );
}
