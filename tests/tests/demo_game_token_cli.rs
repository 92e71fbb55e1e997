//! The `demo-game` command line for secure sessions, as a user runs it: `keygen` and `token`
//! write files, and each wrong input (missing key, junk token, a token for another server,
//! --token with many bots, --secure over QUIC) exits 1 with a message saying what to do and no
//! backtrace. No network traffic: every error is caught before dialling.

use std::path::Path;
use std::process::{Command, Output};

const BINARY: &str = env!("CARGO_BIN_EXE_demo-game-under-test");

fn run(args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(args)
        .output()
        .expect("run demo-game")
}

fn fails_with(args: &[&str], advice: &str) {
    let output = run(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(stderr.contains(advice), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
}

#[test]
fn key_and_token_files_and_their_errors() {
    let dir = std::env::temp_dir().join(format!("demo-game-token-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let (key, token, junk) = (path("server.key"), path("client.token"), path("junk.token"));

    assert!(run(&["keygen", "--out", &key]).status.success());
    assert!(Path::new(&key).exists());
    let minted = run(&[
        "token",
        "--key",
        &key,
        "--server",
        "127.0.0.1:7777",
        "--client-id",
        "42",
        "--out",
        &token,
    ]);
    assert!(minted.status.success(), "{minted:?}");
    std::fs::write(&junk, b"not a token").unwrap();

    let missing = path("missing.key");
    fails_with(
        &[
            "token",
            "--key",
            &missing,
            "--server",
            "127.0.0.1:7777",
            "--client-id",
            "1",
            "--out",
            &junk,
        ],
        "demo-game keygen",
    );
    fails_with(
        &[
            "server",
            "--secure",
            "--key",
            &missing,
            "--bind",
            "127.0.0.1:7777",
        ],
        "demo-game keygen",
    );
    fails_with(
        &[
            "bots",
            "--server",
            "127.0.0.1:7777",
            "--count",
            "1",
            "--token",
            &junk,
        ],
        "mint one",
    );
    fails_with(
        &[
            "bots",
            "--server",
            "127.0.0.1:7778",
            "--count",
            "1",
            "--token",
            &token,
        ],
        "--server 127.0.0.1:7778",
    );
    fails_with(
        &[
            "bots",
            "--server",
            "127.0.0.1:7777",
            "--count",
            "2",
            "--token",
            &token,
        ],
        "--key FILE",
    );
    fails_with(
        &[
            "server",
            "--secure",
            "--key",
            &key,
            "--transport",
            "quic",
            "--bind",
            "127.0.0.1:7777",
        ],
        "--transport native",
    );
    fails_with(&["server", "--secure", "--key", &key], "--public-addr");
    std::fs::remove_dir_all(&dir).unwrap();
}
