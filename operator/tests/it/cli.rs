//! The operator binary answers --help and --version.

use std::process::Command;

fn run(arg: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lagless-operator"))
        .arg(arg)
        .output()
        .expect("the operator binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn help_and_version() {
    let (ok, text) = run("--version");
    assert!(ok);
    assert_eq!(
        text.trim(),
        format!("lagless-operator {}", env!("CARGO_PKG_VERSION"))
    );
    let (ok, text) = run("--help");
    assert!(ok);
    assert!(text.contains("Usage: lagless-operator"), "{text}");
    let (ok, _) = run("--no-such-flag");
    assert!(!ok);
}
