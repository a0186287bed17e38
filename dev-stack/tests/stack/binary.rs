//! The `todo-stack` binary as a user runs it: a fresh working directory (so `./data` is new),
//! any free ports, the banner read for the addresses, Ctrl-C to stop.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
};

/// A running `todo-stack` process and the addresses its banner printed.
pub struct Launched {
    pub child: Child,
    pub dir: PathBuf,
    pub banner: String,
    pub auth_addr: SocketAddr,
    pub task_addr: SocketAddr,
}

/// The binary, to run in `dir`, on any free ports, with the default (SQLite) databases
/// whatever the caller's shell says.
pub fn command_in(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_todo-stack"));
    command
        .current_dir(dir)
        .env("AUTH_LISTEN_ADDR", "127.0.0.1:0")
        .env("TASK_LISTEN_ADDR", "127.0.0.1:0")
        .env_remove("AUTH_DATABASE_URL")
        .env_remove("TASK_DATABASE_URL");
    command
}

/// Starts the binary in a new directory under the temporary one, with `env` on top of the
/// user's defaults (any database URL of the caller's shell removed), and waits for its banner.
pub fn launch(env: &[(&str, String)]) -> Launched {
    let dir = std::env::temp_dir()
        .join("todo-grpc-tests")
        .join(format!("stack-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    launch_in(dir, env)
}

/// Starts the binary in `dir` (whose `./data` may hold an earlier run's databases), as
/// [`launch`] does.
pub fn launch_in(dir: PathBuf, env: &[(&str, String)]) -> Launched {
    let mut command = command_in(&dir);
    command
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut banner = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if line.contains("Ctrl-C stops both") {
            break;
        }
    }
    let addr = |service: &str| -> SocketAddr {
        banner
            .lines()
            .find_map(|line| line.trim().strip_prefix(service))
            .map(str::trim)
            .and_then(|rest| {
                rest.strip_prefix("http://")
                    .or_else(|| rest.strip_prefix("https://"))
            })
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no {service} address in the banner:\n{banner}"))
    };
    let (auth_addr, task_addr) = (addr("auth-service"), addr("task-service"));
    Launched {
        child,
        dir,
        banner,
        auth_addr,
        task_addr,
    }
}

impl Launched {
    /// Ctrl-C, as a person would press it; the exit status must be success.
    pub fn interrupt_and_wait(mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exit status {status:?}");
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

impl Launched {
    /// SIGKILL, as a crash or an OOM kill would end the process (not a power cut: the OS
    /// keeps what the process wrote); the directory stays for the next [`launch_in`].
    pub fn kill(mut self) -> PathBuf {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::mem::take(&mut self.dir)
    }
}

impl Drop for Launched {
    /// A test that fails half-way must not leave the process running (it would also hold the
    /// test runner's output pipes open).
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}
