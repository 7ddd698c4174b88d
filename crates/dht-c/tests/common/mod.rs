//! What the C tests (`tests/c_programs.rs`) and the latency bench (`benches/c_latency.rs`) share:
//! the staged install of the library (`opendht-c.pc` included), pkg-config, compiling C programs
//! against ours or Debian's OpenDHT C binding, running them bounded, and [`Node`], a running
//! `examples/dhtcnode.c` driven through its stdin.
//!
//! The bench includes this file with `#[path]`, so each includer uses only part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Every wait for output is bounded by this.
pub(crate) const LIMIT: Duration = Duration::from_secs(60);
const WARNINGS: &[&str] = &["-Wall", "-Wextra", "-Werror", "-pedantic", "-std=c11", "-g"];
const SANITIZERS: &[&str] = &[
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=undefined",
    "-fno-omit-frame-pointer",
];

pub(crate) fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo put the `staticlib` and `cdylib` it built with this test or bench: next to
/// its executable (`target/<profile>/deps`), or one level up.
pub(crate) fn built(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    for dir in [deps, deps.parent().unwrap()] {
        let p = dir.join(name);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{name} not found near {}: build with `cargo test -p dht-c`",
        deps.display()
    );
}

/// Which library a program links.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Lib {
    /// Ours, static (`pkg-config --static`).
    Ours,
    /// Ours, shared (`-lopendht-c` finds `libopendht-c.so`).
    OursShared,
    /// Debian's OpenDHT 2.4.12 C binding.
    Theirs,
}

/// This process's directory for staged installs and binaries: `target/tmp/dht-c/<pid>`. Those of
/// processes that are gone are removed (the static test binaries are tens of MB each).
pub(crate) fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dht-c");
        if let Ok(entries) = std::fs::read_dir(&base) {
            for e in entries.flatten() {
                let gone = e
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
                if gone {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = base.join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

/// An install of ours as a C project sees it: `PREFIX/include/opendht/opendht_c.h`,
/// `PREFIX/lib/libopendht-c.{a,so}` (separate prefixes, so `-l` picks the one asked for) and
/// `PREFIX/lib/pkgconfig/opendht-c.pc` made from `opendht-c.pc.in`.
pub(crate) fn prefix(shared: bool) -> &'static Path {
    static STATIC: OnceLock<PathBuf> = OnceLock::new();
    static SHARED: OnceLock<PathBuf> = OnceLock::new();
    let cell = if shared { &SHARED } else { &STATIC };
    cell.get_or_init(|| {
        let root = scratch().join(if shared { "shared" } else { "static" });
        let _ = std::fs::remove_dir_all(&root);
        let (inc, lib) = (root.join("include/opendht"), root.join("lib"));
        std::fs::create_dir_all(&inc).unwrap();
        std::fs::create_dir_all(lib.join("pkgconfig")).unwrap();
        std::fs::copy(manifest().join("include/opendht_c.h"), inc.join("opendht_c.h")).unwrap();
        let (from, to) = if shared {
            ("libopendht_c.so", "libopendht-c.so")
        } else {
            ("libopendht_c.a", "libopendht-c.a")
        };
        std::os::unix::fs::symlink(built(from), lib.join(to)).unwrap();
        let pc = std::fs::read_to_string(manifest().join("opendht-c.pc.in"))
            .unwrap()
            .replace("@prefix@", root.to_str().unwrap())
            .replace("@libdir@", lib.to_str().unwrap())
            .replace("@version@", env!("CARGO_PKG_VERSION"));
        std::fs::write(lib.join("pkgconfig/opendht-c.pc"), pc).unwrap();
        root
    })
}

pub(crate) fn pkg_config(args: &[&str], path: Option<&Path>) -> Vec<String> {
    let mut cmd = Command::new("pkg-config");
    cmd.args(args).arg("opendht-c");
    if let Some(p) = path {
        cmd.env("PKG_CONFIG_PATH", p).env("PKG_CONFIG_LIBDIR", p);
    }
    let out = cmd.output().expect("pkg-config runs");
    assert!(
        out.status.success(),
        "pkg-config {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Whether Debian's OpenDHT C binding is installed; prints why not (and panics then when
/// `DHT_REQUIRE_OPENDHT=1`).
pub(crate) fn theirs_available(what: &str) -> bool {
    let ok = Command::new("pkg-config")
        .args(["--exists", "opendht-c"])
        .env_remove("PKG_CONFIG_PATH")
        .status()
        .is_ok_and(|s| s.success())
        && Path::new("/usr/include/opendht/opendht_c.h").exists();
    if !ok {
        let why = "libopendht-c-dev (OpenDHT 2.4.12's C binding) is not installed: apt-get install -y libopendht-c-dev";
        assert!(
            std::env::var("DHT_REQUIRE_OPENDHT").as_deref() != Ok("1"),
            "{what}: DHT_REQUIRE_OPENDHT=1 but {why}"
        );
        println!("{what}: skipped: {why}");
    }
    ok
}

/// Compiles `sources` into an executable named `name`, once per process (tests share it).
pub(crate) fn compile(name: &str, sources: &[PathBuf], lib: Lib, sanitize: bool) -> PathBuf {
    type Built = std::collections::BTreeMap<String, PathBuf>;
    static BUILT: std::sync::Mutex<Built> = std::sync::Mutex::new(Built::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let key = format!("{name}-{lib:?}-{sanitize}");
    if let Some(p) = built.get(&key) {
        return p.clone();
    }
    let p = compile_now(name, sources, lib, sanitize);
    built.insert(key, p.clone());
    p
}

fn compile_now(name: &str, sources: &[PathBuf], lib: Lib, sanitize: bool) -> PathBuf {
    let dir = scratch().join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("{name}-{lib:?}{}", if sanitize { "-asan" } else { "" }));
    let mut cmd = Command::new("cc");
    cmd.args(WARNINGS);
    if sanitize {
        cmd.args(SANITIZERS);
    }
    cmd.arg("-I")
        .arg(manifest().join("tests/c"))
        .args(sources)
        .arg("-o")
        .arg(&out);
    match lib {
        Lib::Ours => {
            let pc = prefix(false).join("lib/pkgconfig");
            cmd.args(pkg_config(&["--cflags", "--libs", "--static"], Some(&pc)));
        }
        Lib::OursShared => {
            let root = prefix(true);
            cmd.args(pkg_config(
                &["--cflags", "--libs"],
                Some(&root.join("lib/pkgconfig")),
            ));
            cmd.arg(format!("-Wl,-rpath,{}", root.join("lib").display()));
        }
        Lib::Theirs => {
            // OpenDHT's .pc omits the include/opendht directory its own example needs.
            cmd.env_remove("PKG_CONFIG_PATH").arg("-I/usr/include/opendht");
            cmd.args(pkg_config(&["--cflags", "--libs"], None));
        }
    }
    cmd.arg("-lpthread");
    let res = cmd.output().expect("cc runs");
    assert!(
        res.status.success(),
        "cc failed for {name} ({lib:?}):\n{cmd:?}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    out
}

pub(crate) fn sanitizer_env(cmd: &mut Command) {
    cmd.env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=23")
        .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1:exitcode=24");
}

/// Sanitizer reports in a program's stderr.
pub(crate) fn sanitizer_reports(stderr: &str) -> bool {
    [
        "AddressSanitizer",
        "LeakSanitizer",
        "runtime error:",
        "UndefinedBehaviorSanitizer",
    ]
    .iter()
    .any(|m| stderr.contains(m))
}

/// Runs a test program to its end (bounded); its stdout.
pub(crate) fn run_program(bin: &Path) -> String {
    let mut cmd = Command::new(bin);
    sanitizer_env(&mut cmd);
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = wait_bounded(&mut child, Duration::from_secs(180));
    let (stdout, stderr) = (t_out.join().unwrap(), t_err.join().unwrap());
    assert!(
        status.is_some_and(|s| s.success()) && !sanitizer_reports(&stderr),
        "{} failed ({status:?}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        bin.display()
    );
    stdout
}

/// Waits for a child at most `limit` (killing it then): its status, `None` on timeout.
pub(crate) fn wait_bounded(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

/// A running `dhtcnode`, driven through its stdin, read line by line.
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) child: Child,
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) lines: Receiver<String>,
    pub(crate) stderr: Option<std::thread::JoinHandle<String>>,
    pub(crate) transcript: Vec<String>,
    pub(crate) port: u16,
}

impl Node {
    pub(crate) fn start(name: &str, bin: &Path, args: &[String]) -> Node {
        let mut cmd = Command::new(bin);
        sanitizer_env(&mut cmd);
        let mut child = cmd
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let mut n = Node {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            lines,
            stderr: Some(stderr),
            transcript: Vec::new(),
            port: 0,
        };
        let l = n.expect(|l| l.starts_with("node "), "the node line");
        n.port = l.rsplit(' ').next().unwrap().parse().unwrap();
        n
    }

    pub(crate) fn send(&mut self, line: &str) {
        self.transcript.push(format!("> {line}"));
        let w = self.stdin.as_mut().unwrap();
        writeln!(w, "{line}").unwrap();
        w.flush().unwrap();
    }

    /// The next line matching `pred`, within [`LIMIT`].
    pub(crate) fn expect(&mut self, pred: impl Fn(&str) -> bool, what: &str) -> String {
        let end = Instant::now() + LIMIT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.transcript.push(l.clone());
                    if pred(&l) {
                        return l;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    let err = self.stderr.take().map(|t| t.join().unwrap_or_default());
                    panic!(
                        "{}: no {what} within {LIMIT:?}; transcript:\n{}\nstderr: {err:?}",
                        self.name,
                        self.transcript.join("\n")
                    );
                }
            }
        }
    }

    /// Pings a node on 127.0.0.1 until it answers.
    pub(crate) fn ping_ok(&mut self, port: u16) {
        for _ in 0..5 {
            self.send(&format!("P 127.0.0.1 {port}"));
            if self.expect(|l| l.starts_with("ping done: "), "ping done") == "ping done: ok" {
                return;
            }
        }
        panic!("{}: no ping answered:\n{}", self.name, self.transcript.join("\n"));
    }

    /// Puts until a put reports ok (the first may run before the two nodes know each other).
    pub(crate) fn put_ok(&mut self, key: &str, text: &str) {
        for _ in 0..10 {
            self.send(&format!("p {key} {text}"));
            let l = self.expect(|l| l.starts_with("put ") && l.contains(" done: "), "put done");
            if l.contains("done: ok") {
                return;
            }
        }
        panic!("{}: no put succeeded:\n{}", self.name, self.transcript.join("\n"));
    }

    /// Gets `key` until `text` is among the values; the get then reports ok.
    pub(crate) fn get_has(&mut self, key: &str, text: &str) {
        for _ in 0..10 {
            self.send(&format!("g {key}"));
            let mut found = false;
            loop {
                let l = self.expect(|l| l.starts_with("get "), "get output");
                if l.ends_with(&format!("value: {text}")) {
                    found = true;
                }
                if l.contains(" done: ") {
                    if found && l.contains("done: ok") {
                        return;
                    }
                    break;
                }
            }
        }
        panic!(
            "{}: no get found {text}:\n{}",
            self.name,
            self.transcript.join("\n")
        );
    }

    /// Quits: the node shuts down, deletes its runner (ending its listens) and exits 0, with no
    /// sanitizer report.
    pub(crate) fn quit(mut self) {
        self.send("q");
        self.expect(|l| l == "stopped", "stopped");
        self.send_nothing_more_and_quit();
    }

    /// After a `q` was sent: the rest of [`Node::quit`].
    pub(crate) fn send_nothing_more_and_quit(mut self) {
        self.expect(|l| l == "deleted", "deleted");
        drop(self.stdin.take());
        let status = wait_bounded(&mut self.child, LIMIT);
        let err = self
            .stderr
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        assert!(
            status.is_some_and(|s| s.success()) && !sanitizer_reports(&err),
            "{}: exit {status:?}\n{}\nstderr:\n{err}",
            self.name,
            self.transcript.join("\n")
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn example(lib: Lib, sanitize: bool) -> PathBuf {
    compile(
        "dhtcnode",
        &[manifest().join("examples/dhtcnode.c")],
        lib,
        sanitize,
    )
}

/// A network id of this process's own, so that no other loopback test's nodes join.
pub(crate) fn network() -> String {
    format!(
        "{}",
        0x1000_0000u32 + std::process::id() % 0x1000_0000 + fastrand_u16()
    )
}

fn fastrand_u16() -> u32 {
    u32::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u16,
    )
}
