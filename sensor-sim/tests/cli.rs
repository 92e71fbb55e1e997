//! The `sensor-sim` binary's errors a person can act on, and the headless hub's status lines
//! and JSON summary on SIGINT.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn sensor_sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sensor-sim"))
}

fn temp_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("sensor-sim-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    let _ = std::fs::remove_file(&path);
    path
}

fn run(args: &[&str]) -> Output {
    sensor_sim()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run sensor-sim")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_data_dir_that_cannot_be_written_is_named_with_what_to_do() {
    let file = temp_path("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let dir = file.join("data");
    let dir_arg = dir.to_str().unwrap();
    let output = run(&[
        "hub",
        "--headless",
        "--bind",
        "127.0.0.1:0",
        "--data-dir",
        dir_arg,
    ]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("cannot write to the data directory"),
        "{text}"
    );
    assert!(text.contains("--data-dir"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    let _ = std::fs::remove_file(&file);
}

#[test]
fn a_database_from_a_newer_version_is_refused() {
    let dir = temp_path("newer");
    sensor_sim::Store::open(&dir).unwrap();
    let conn = rusqlite::Connection::open(dir.join(sensor_sim::store::DB_FILE)).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    for args in [
        vec!["query", "--data-dir"],
        vec!["hub", "--headless", "--bind", "127.0.0.1:0", "--data-dir"],
    ] {
        let mut args = args.clone();
        args.push(dir.to_str().unwrap());
        let output = run(&args);
        assert!(!output.status.success());
        let text = stderr(&output);
        assert!(text.contains("schema version 99"), "{text}");
        assert!(text.contains("use a newer sensor-sim"), "{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unreachable_hub_is_reported_with_how_to_start_one() {
    // A port nothing listens on: bound, then released.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hub = format!("127.0.0.1:{port}");
    let output = run(&[
        "sensors",
        "--hub",
        &hub,
        "--count",
        "1",
        "--duration-s",
        "1",
    ]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains("cannot reach the hub"), "{text}");
    assert!(text.contains("sensor-sim hub --bind"), "{text}");
}

#[test]
fn the_dashboard_asks_for_headless_without_a_terminal() {
    let dir = temp_path("no-tty");
    let output = run(&[
        "hub",
        "--bind",
        "127.0.0.1:0",
        "--data-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--headless"),
        "{}",
        stderr(&output)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn commands_need_an_existing_database_and_a_sensor() {
    let dir = temp_path("commands");
    let dir_arg = dir.to_str().unwrap();
    let output = run(&[
        "command",
        "--data-dir",
        dir_arg,
        "--sensor",
        "1",
        "set-rate",
        "2",
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no database"),
        "{}",
        stderr(&output)
    );
    sensor_sim::Store::open(&dir).unwrap();
    let output = run(&["command", "--data-dir", dir_arg, "set-rate", "2"]);
    assert!(
        stderr(&output).contains("--sensor ID"),
        "{}",
        stderr(&output)
    );
    let output = run(&[
        "command",
        "--data-dir",
        dir_arg,
        "--sensor",
        "1",
        "set-rate",
        "2",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let output = run(&[
        "command",
        "--data-dir",
        dir_arg,
        "--sensor",
        "1",
        "--wait-s",
        "0.2",
        "set-rate",
        "3",
    ]);
    assert_eq!(
        output.status.code(),
        Some(3),
        "not acknowledged: no hub runs"
    );
    let output = run(&["command", "--data-dir", dir_arg, "list"]);
    let list = String::from_utf8_lossy(&output.stdout);
    assert_eq!(list.lines().count(), 3, "{list}");
    assert!(
        list.contains("set-rate 2 Hz") && list.contains("pending"),
        "{list}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_headless_hub_prints_status_lines_and_a_json_summary_on_sigint() {
    let dir = temp_path("headless");
    let mut child = sensor_sim()
        .args(["hub", "--headless", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the hub");
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    // Bounded: the listening line, then the first status line (one a second).
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.contains("sensors 0 (awake 0"))
    {
        match lines.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no status line within 10 s: {seen:?}");
            }
        }
    }
    assert!(seen[0].contains("hub listening on 127.0.0.1:"), "{seen:?}");
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("JSON summary");
    assert_eq!(summary["totals"]["sensors"], 0, "{summary}");
    assert!(summary["ingest_per_s"].is_array(), "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
}
