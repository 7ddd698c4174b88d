//! Shared by the binary tests: a child process driven through stdin, read line by line.

#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)] // not every test file uses every helper

use std::io::{BufRead, BufReader, Write};
use std::net::UdpSocket;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// Our binary.
pub const OURS: &str = env!("CARGO_BIN_EXE_dhtnode");
/// Every wait's bound.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct Proc {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    /// Standard output, line by line.
    pub lines: Receiver<String>,
    /// Standard error, line by line.
    pub errors: Receiver<String>,
}

/// Sends each line of `from` to the receiver it returns.
fn line_by_line(from: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(from).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    lines
}

/// Lines of `lines` up to and including the first that contains `what`, waiting at most WAIT.
pub fn expect_in(lines: &Receiver<String>, what: &str) -> Vec<String> {
    let end = Instant::now() + WAIT;
    let mut seen = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(l) => {
                let hit = l.contains(what);
                seen.push(l);
                if hit {
                    return seen;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no line with {what:?}; saw {seen:?}");
}

impl Proc {
    pub fn start(args: &[&str]) -> Proc {
        Proc::spawn(OURS, args)
    }

    pub fn spawn(bin: &str, args: &[&str]) -> Proc {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = line_by_line(child.stdout.take().unwrap());
        let errors = line_by_line(child.stderr.take().unwrap());
        let stdin = child.stdin.take();
        Proc {
            child,
            stdin,
            lines,
            errors,
        }
    }

    /// Writes raw bytes to standard input.
    pub fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    pub fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Lines up to and including the first that contains `what`.
    pub fn expect(&self, what: &str) -> Vec<String> {
        expect_in(&self.lines, what)
    }

    /// Lines of standard error up to and including the first that contains `what`.
    pub fn expect_error(&self, what: &str) -> Vec<String> {
        expect_in(&self.errors, what)
    }

    pub fn exit(mut self) {
        self.exit_here();
    }

    fn exit_here(&mut self) {
        self.say("x");
        let end = Instant::now() + WAIT;
        while Instant::now() < end {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{status}");
                return;
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
        panic!("dhtnode did not exit");
    }

    /// Exits, then returns standard error from here to its end, and standard output's rest.
    pub fn exit_with_output(mut self) -> (Vec<String>, Vec<String>) {
        self.exit_here();
        let rest = |lines: &Receiver<String>| {
            let end = Instant::now() + WAIT;
            let mut seen = Vec::new();
            while let Some(left) = end.checked_duration_since(Instant::now()) {
                match lines.recv_timeout(left) {
                    Ok(l) => seen.push(l),
                    Err(mpsc::RecvTimeoutError::Disconnected) => return seen,
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                }
            }
            panic!("the output never ended; saw {seen:?}");
        };
        (rest(&self.errors), rest(&self.lines))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    loop {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = s.local_addr().unwrap().port();
        if UdpSocket::bind(("::1", port)).is_ok() {
            return port;
        }
    }
}

pub const LOOPBACK: [&str; 4] = ["--bind4", "127.0.0.1", "--bind6", "::1"];

/// Starts `a` (with `a_extra`) and `b`, which joins `a`; returns once `b` is connected.
pub fn pair(a_extra: &[&str]) -> (Proc, Proc) {
    let port = free_port().to_string();
    let mut args = vec!["-p", &port];
    args.extend(LOOPBACK);
    args.extend(a_extra);
    let a = Proc::start(&args);
    let boot = format!("127.0.0.1:{port}");
    let mut args = vec!["-p", "0", "-b", &boot];
    args.extend(LOOPBACK);
    let mut b = Proc::start(&args);
    let end = Instant::now() + WAIT;
    loop {
        b.say("ll");
        let info = b.expect("datagrams in");
        if info.iter().any(|l| l.contains("IPv4 connected")) {
            break;
        }
        assert!(Instant::now() < end, "b never connected: {info:?}");
        std::thread::park_timeout(Duration::from_millis(100));
    }
    (a, b)
}
