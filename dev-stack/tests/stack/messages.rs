//! What the `todo-stack` binary tells a person: a start-up error once, naming the setting;
//! shutdown lines that say which service stopped.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

fn todo_stack() -> Command {
    let dir = std::env::temp_dir()
        .join("todo-grpc-tests")
        .join(format!("messages-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = crate::binary::command_in(&dir);
    command
        .env_remove("LOG_FORMAT")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    command
}

#[test]
fn a_start_up_error_is_printed_once_and_names_the_setting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = todo_stack()
        .env("AUTH_LISTEN_ADDR", addr.to_string())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mentions: Vec<&str> = all
        .lines()
        .filter(|line| line.contains(&addr.to_string()))
        .collect();
    assert_eq!(mentions.len(), 1, "the error, once:\n{all}");
    let error = mentions[0];
    assert!(error.starts_with("todo-stack: auth-service: "), "{all}");
    for part in ["AUTH_LISTEN_ADDR", "Address already in use", "127.0.0.1:0"] {
        assert!(error.contains(part), "{part} missing in: {error}");
    }
}

#[test]
fn ctrl_c_logs_say_which_service_is_shutting_down_and_stopped() {
    let mut child = todo_stack()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, seen) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut log = Vec::new();
    loop {
        let line = seen
            .recv_timeout(Duration::from_secs(60))
            .expect("the banner within a minute");
        let done = line.contains("Ctrl-C stops both");
        log.push(line);
        if done {
            break;
        }
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
    log.extend(seen.try_iter());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let log = log.join("\n");
    for service in ["auth-service", "task-service"] {
        for event in ["shutting down", "stopped"] {
            assert!(
                log.lines()
                    .any(|line| line.contains(service) && line.contains(event)),
                "no `{event}` line labelled {service}:\n{log}\n{stderr}"
            );
        }
    }
}
