//! The C side: C programs (`tests/c/*.c`) and the example (`examples/dhtcnode.c`) built with the
//! system `cc -Wall -Wextra -Werror -pedantic` against `include/opendht_c.h` and the library
//! this crate builds, through `opendht-c.pc` as a C project would use it; each run also under
//! AddressSanitizer and UndefinedBehaviorSanitizer (leaks included). Then the same example built
//! against Debian's OpenDHT 2.4.12 C binding exchanges values with ours on loopback, both ways.
//!
//! The interop tests print why they skip when `libopendht-c-dev` is absent, and fail instead
//! when `DHT_REQUIRE_OPENDHT=1`.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Every wait for output is bounded by this.
const LIMIT: Duration = Duration::from_secs(60);
const WARNINGS: &[&str] = &["-Wall", "-Wextra", "-Werror", "-pedantic", "-std=c11", "-g"];
const SANITIZERS: &[&str] = &[
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=undefined",
    "-fno-omit-frame-pointer",
];

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo put the `staticlib` and `cdylib` it built with this test: next to this test's
/// executable (`target/<profile>/deps`), or one level up.
fn built(name: &str) -> PathBuf {
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
enum Lib {
    /// Ours, static (`pkg-config --static`).
    Ours,
    /// Ours, shared (`-lopendht-c` finds `libopendht-c.so`).
    OursShared,
    /// Debian's OpenDHT 2.4.12 C binding.
    Theirs,
}

/// This process's directory for staged installs and binaries: `target/tmp/dht-c/<pid>`. Those of
/// processes that are gone are removed (the static test binaries are tens of MB each).
fn scratch() -> &'static Path {
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
fn prefix(shared: bool) -> &'static Path {
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

fn pkg_config(args: &[&str], path: Option<&Path>) -> Vec<String> {
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

/// Whether Debian's OpenDHT C binding is installed; prints why not.
fn theirs_available(test: &str) -> bool {
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
            "{test}: DHT_REQUIRE_OPENDHT=1 but {why}"
        );
        println!("{test}: skipped: {why}");
    }
    ok
}

/// Compiles `sources` into an executable named `name`, once per process (tests share it).
fn compile(name: &str, sources: &[PathBuf], lib: Lib, sanitize: bool) -> PathBuf {
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

fn sanitizer_env(cmd: &mut Command) {
    cmd.env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=23")
        .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1:exitcode=24");
}

/// Sanitizer reports in a program's stderr.
fn sanitizer_reports(stderr: &str) -> bool {
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
fn run_program(bin: &Path) -> String {
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
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
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

fn c_test(name: &str, lib: Lib, sanitize: bool) -> String {
    let bin = compile(
        name,
        &[manifest().join(format!("tests/c/{name}.c"))],
        lib,
        sanitize,
    );
    let out = run_program(&bin);
    assert!(out.contains(&format!("{name} ok")), "{name}: {out}");
    out
}

#[test]
fn api_program() {
    c_test("api", Lib::Ours, false);
}

#[test]
fn api_program_under_sanitizers() {
    c_test("api", Lib::Ours, true);
}

#[test]
fn api_program_with_the_shared_library() {
    c_test("api", Lib::OursShared, false);
}

#[test]
fn runner_program() {
    c_test("runner", Lib::Ours, false);
}

#[test]
fn runner_program_under_sanitizers() {
    c_test("runner", Lib::Ours, true);
}

/// A running `dhtcnode`, driven through its stdin, read line by line.
struct Node {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
    transcript: Vec<String>,
    port: u16,
}

impl Node {
    fn start(name: &str, bin: &Path, args: &[String]) -> Node {
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

    fn send(&mut self, line: &str) {
        self.transcript.push(format!("> {line}"));
        let w = self.stdin.as_mut().unwrap();
        writeln!(w, "{line}").unwrap();
        w.flush().unwrap();
    }

    /// The next line matching `pred`, within [`LIMIT`].
    fn expect(&mut self, pred: impl Fn(&str) -> bool, what: &str) -> String {
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
    fn ping_ok(&mut self, port: u16) {
        for _ in 0..5 {
            self.send(&format!("P 127.0.0.1 {port}"));
            if self.expect(|l| l.starts_with("ping done: "), "ping done") == "ping done: ok" {
                return;
            }
        }
        panic!("{}: no ping answered:\n{}", self.name, self.transcript.join("\n"));
    }

    /// Puts until a put reports ok (the first may run before the two nodes know each other).
    fn put_ok(&mut self, key: &str, text: &str) {
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
    fn get_has(&mut self, key: &str, text: &str) {
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
    fn quit(mut self) {
        self.send("q");
        self.expect(|l| l == "stopped", "stopped");
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

fn example(lib: Lib, sanitize: bool) -> PathBuf {
    compile(
        "dhtcnode",
        &[manifest().join("examples/dhtcnode.c")],
        lib,
        sanitize,
    )
}

/// A network id of this test's own, so that no other loopback test's nodes join.
fn network() -> String {
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

/// `first` runs alone; `second` bootstraps from it. Each listens, the other puts, the listener
/// hears and gets; then a listen is cancelled and both quit.
fn exchange(first: (&str, &Path), second: (&str, &Path)) {
    let net = network();
    let mut a = Node::start(first.0, first.1, &["-n".into(), net.clone()]);
    let boot = format!("127.0.0.1:{}", a.port);
    let mut b = Node::start(second.0, second.1, &["-n".into(), net, "-b".into(), boot]);
    // Each knows the other once a ping is answered (the bootstrap alone may still be in flight).
    a.ping_ok(b.port);
    b.ping_ok(a.port);
    let tag = std::process::id();
    let (k1, k2) = (format!("c-test-one-{tag}"), format!("c-test-two-{tag}"));

    // first puts, second listens and gets.
    b.send(&format!("l {k1}"));
    b.expect(|l| l == "listen 0 started", "listen started");
    a.put_ok(&k1, "from-first");
    b.expect(|l| l == "listen 0 new: from-first", "the listened value");
    b.get_has(&k1, "from-first");

    // second puts, first listens and gets.
    a.send(&format!("l {k2}"));
    a.expect(|l| l == "listen 0 started", "listen started");
    b.put_ok(&k2, "from-second");
    a.expect(|l| l == "listen 0 new: from-second", "the listened value");
    a.get_has(&k2, "from-second");

    // A cancelled listen ends (its end callback frees its context and token).
    b.send("c 0");
    b.expect(|l| l == "listen 0 ended", "the listen's end");
    b.send("la");
    b.send("ll");
    b.expect(|l| l.starts_with("node "), "ll");
    // The other listen ends when its runner is deleted.
    a.send("q");
    a.expect(|l| l == "listen 0 ended", "the listen's end at delete");
    a.send_nothing_more_and_quit();
    b.quit();
}

impl Node {
    /// After a `q` was sent: the rest of [`Node::quit`].
    fn send_nothing_more_and_quit(mut self) {
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

#[test]
fn example_two_of_ours() {
    let ours = example(Lib::Ours, false);
    exchange(("ours-1", &ours), ("ours-2", &ours));
}

#[test]
fn example_two_of_ours_under_sanitizers() {
    let ours = example(Lib::Ours, true);
    exchange(("ours-1", &ours), ("ours-2", &ours));
}

#[test]
fn example_runs_alone_and_quits_on_eof() {
    let ours = example(Lib::OursShared, false);
    let mut n = Node::start("alone", &ours, &[]);
    n.send("ll");
    n.expect(|l| l.starts_with("node "), "ll");
    n.send("bogus");
    n.expect(|l| l == "Unknown command: bogus", "unknown command");
    drop(n.stdin.take());
    n.expect(|l| l == "deleted", "deleted at EOF");
}

#[test]
fn interop_opendht_puts_ours_gets() {
    if !theirs_available("interop_opendht_puts_ours_gets") {
        return;
    }
    let (theirs, ours) = (example(Lib::Theirs, false), example(Lib::Ours, true));
    exchange(("opendht", &theirs), ("ours", &ours));
}

#[test]
fn interop_ours_puts_opendht_gets() {
    if !theirs_available("interop_ours_puts_opendht_gets") {
        return;
    }
    let (theirs, ours) = (example(Lib::Theirs, false), example(Lib::Ours, true));
    exchange(("ours", &ours), ("opendht", &theirs));
}

/// The same example's put and get latency against each library, one after the other in one run:
/// `cargo test -p dht-c --release -- --ignored --nocapture bench`.
#[test]
#[ignore = "a benchmark: run with --ignored --nocapture"]
fn bench_put_get_latency_ours_and_opendht() {
    let mut libs = vec![("ours", example(Lib::Ours, false))];
    if theirs_available("bench") {
        libs.push(("opendht", example(Lib::Theirs, false)));
    }
    let rounds: usize = std::env::var("DHT_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    for (name, bin) in libs {
        let net = network();
        let mut a = Node::start(name, &bin, &["-n".into(), net.clone()]);
        let mut b = Node::start(
            name,
            &bin,
            &["-n".into(), net, "-b".into(), format!("127.0.0.1:{}", a.port)],
        );
        // Connected once a put is acknowledged.
        b.put_ok("bench-warm-up", "x");
        a.send(&format!("b {rounds} 10000"));
        let put = a.expect(
            |l| l.starts_with("bench put") || l.starts_with("bench timeout"),
            "bench put",
        );
        let get = a.expect(|l| l.starts_with("bench get"), "bench get");
        println!("{name:8} {put}\n{name:8} {get}");
        a.quit();
        b.quit();
    }
}

/// The functions a header declares (`OPENDHT_C_PUBLIC ... name(`).
fn declared(header: &str) -> Vec<String> {
    header
        .lines()
        .filter(|l| l.contains("OPENDHT_C_PUBLIC") && l.contains('(') && !l.contains("#"))
        .filter_map(|l| {
            let head = l.split('(').next()?;
            let name = head
                .split(|c: char| c.is_whitespace() || c == '*')
                .rfind(|s| !s.is_empty())?;
            Some(name.to_string())
        })
        .collect()
}

#[test]
fn every_declared_function_is_exported_and_exercised_by_a_c_test() {
    let header = std::fs::read_to_string(manifest().join("include/opendht_c.h")).unwrap();
    let names = declared(&header);
    assert!(names.len() >= 64, "{names:?}");
    let nm = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(built("libopendht_c.so"))
        .output()
        .expect("nm runs");
    let symbols: Vec<String> = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect();
    let tests: String = ["api.c", "runner.c"]
        .iter()
        .map(|f| std::fs::read_to_string(manifest().join("tests/c").join(f)).unwrap())
        .collect();
    for n in &names {
        assert!(symbols.contains(n), "{n} is declared but not exported");
        assert!(tests.contains(&format!("{n}(")), "{n} is not called by tests/c");
    }
    // Exported C functions are the header's: nothing else of the C API leaks out.
    for s in symbols.iter().filter(|s| s.starts_with("dht_")) {
        assert!(names.contains(s), "{s} is exported but not declared");
    }
    assert!(!symbols.iter().any(|s| s == "dht_runner_put_permanent"));
}

#[test]
fn every_function_of_opendht_2_4_12_is_declared() {
    if !theirs_available("every_function_of_opendht_2_4_12_is_declared") {
        return;
    }
    let theirs = declared(&std::fs::read_to_string("/usr/include/opendht/opendht_c.h").unwrap());
    let ours = declared(&std::fs::read_to_string(manifest().join("include/opendht_c.h")).unwrap());
    assert!(theirs.len() >= 63);
    for n in &theirs {
        assert!(ours.contains(n), "{n} of OpenDHT 2.4.12 is missing");
    }
}

/// The header also serves C++ (`extern "C"`), as OpenDHT's does.
#[test]
fn header_compiles_as_cpp() {
    if Command::new("c++").arg("--version").output().is_err() {
        println!("header_compiles_as_cpp: skipped: no c++ compiler");
        return;
    }
    let src = scratch().join("header.cpp");
    std::fs::write(
        &src,
        "#include <opendht_c.h>\nint main() { dht_infohash h; dht_infohash_zero(&h); return !dht_infohash_is_zero(&h); }\n",
    )
    .unwrap();
    let out = Command::new("c++")
        .args([
            "-std=c++17",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-fsyntax-only",
            "-I",
        ])
        .arg(manifest().join("include"))
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
