//! The command line: every flag documented, bad flags exit 2 naming them.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_oda-sim");

#[test]
fn help_documents_every_flag() {
    let output = Command::new(BIN).arg("--help").output().expect("run");
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).expect("utf8");
    for flag in [
        "--port",
        "--seed",
        "--scale",
        "--page-size",
        "--mutation-rate",
        "--latency",
        "--jitter",
        "--error-rate",
        "--fault-kinds",
        "--clock-start",
        "--clock-speed",
        "--ignore-unknown-filter-fields",
        "--sqlserver-datetime",
        "--restamp-share",
        "--burst-share",
        "--late-commit-lag",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    for (args, named) in [
        (vec!["--no-such-flag"], "--no-such-flag"),
        (vec!["--scale", "lots"], "--scale"),
        (vec!["--clock-speed=-1"], "--clock-speed"),
        (vec!["--clock-start", "yesterday"], "--clock-start"),
        (vec!["--fault-kinds", "500,boom"], "--fault-kinds"),
        (vec!["--error-rate", "2"], "--error-rate"),
        (vec!["--latency", "soon"], "--latency"),
    ] {
        let output = Command::new(BIN).args(&args).output().expect("run");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
}
