//! The read loop of the interactive node: numbered lines from standard input, each parsed and
//! run by the [`Console`]. On a terminal, lines come through rustyline (line editing, history,
//! output printed above the prompt); from a pipe, as plain lines. A line that is not UTF-8 is
//! reported on the error stream and skipped.

use std::io::{self, BufRead, Write};
use std::sync::{Arc, Mutex};

use rustyline::error::ReadlineError;
use rustyline::{DefaultEditor, ExternalPrinter};

use crate::{Console, Out};

/// What one read of the input gave.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Read {
    /// A line, without its end of line.
    Line(String),
    /// Line number `n` (from 1) was not UTF-8; it is skipped.
    NotUtf8(usize),
    /// The input is over (end of file, or an error reading it).
    End,
}

/// Where commands come from.
pub trait Input {
    /// The next line.
    fn read(&mut self) -> Read;
}

/// Lines from a pipe or a file, as scripts send them.
#[derive(Debug)]
pub struct PipedLines<R> {
    reader: R,
    number: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> PipedLines<R> {
    /// Lines of `reader`.
    pub fn new(reader: R) -> Self {
        PipedLines {
            reader,
            number: 0,
            buf: Vec::new(),
        }
    }
}

impl<R: BufRead> Input for PipedLines<R> {
    fn read(&mut self) -> Read {
        self.buf.clear();
        match self.reader.read_until(b'\n', &mut self.buf) {
            Ok(0) => Read::End,
            Ok(_) => {
                self.number += 1;
                let line = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                match std::str::from_utf8(line) {
                    Ok(text) => Read::Line(text.to_string()),
                    Err(_) => Read::NotUtf8(self.number),
                }
            }
            Err(e) => {
                eprintln!("dhtnode: standard input: {e}");
                Read::End
            }
        }
    }
}

/// Lines typed at a terminal, with rustyline's line editing and history.
pub struct Terminal {
    editor: DefaultEditor,
    number: usize,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal").field("number", &self.number).finish()
    }
}

/// The prompt on a terminal.
pub const PROMPT: &str = "> ";

impl Terminal {
    /// An editor on the terminal, and the output to give the [`Console`]: lines written to it
    /// while a line is being typed are printed above the prompt, not through it.
    pub fn new() -> Result<(Terminal, Out), ReadlineError> {
        let mut editor = DefaultEditor::new()?;
        let printer = editor.create_external_printer()?;
        let out: Out = Arc::new(Mutex::new(Box::new(PrinterOut::new(printer))));
        Ok((Terminal { editor, number: 0 }, out))
    }
}

impl Input for Terminal {
    fn read(&mut self) -> Read {
        self.number += 1;
        match self.editor.readline(PROMPT) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = self.editor.add_history_entry(line.as_str());
                }
                Read::Line(line)
            }
            Err(e) => after_error(e, self.number),
        }
    }
}

/// What a failed read of line `n` at the terminal means: rustyline reports bytes that are not
/// UTF-8 as invalid data (the line is lost, the next one can be read); Ctrl-D and Ctrl-C end
/// the input, as `x` does.
fn after_error(e: ReadlineError, n: usize) -> Read {
    match e {
        ReadlineError::Io(e) if e.kind() == io::ErrorKind::InvalidData => Read::NotUtf8(n),
        ReadlineError::Eof | ReadlineError::Interrupted => Read::End,
        e => {
            eprintln!("dhtnode: terminal: {e}");
            Read::End
        }
    }
}

/// Writes whole lines through rustyline's printer, which keeps them off the line being typed.
struct PrinterOut<P> {
    printer: P,
    pending: Vec<u8>,
}

impl<P: ExternalPrinter> PrinterOut<P> {
    fn new(printer: P) -> Self {
        PrinterOut {
            printer,
            pending: Vec::new(),
        }
    }
}

impl<P: ExternalPrinter> Write for PrinterOut<P> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        Ok(buf.len())
    }

    /// Prints the complete lines written so far; a partial line waits for its end.
    fn flush(&mut self) -> io::Result<()> {
        let Some(last) = self.pending.iter().rposition(|&b| b == b'\n') else {
            return Ok(());
        };
        let lines: Vec<u8> = self.pending.drain(..=last).collect();
        self.printer
            .print(String::from_utf8_lossy(&lines).into_owned())
            .map_err(io::Error::other)
    }
}

/// Runs every line of `input` until its end or `x`; complaints about the input go to `errors`.
pub fn run_lines(console: &mut Console, input: &mut dyn Input, errors: &mut dyn Write) {
    loop {
        match input.read() {
            Read::End => return,
            Read::NotUtf8(n) => {
                let _ = writeln!(errors, "dhtnode: line {n} is not UTF-8, ignored");
            }
            Read::Line(line) => {
                if !console.run_line(&line) {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piped_lines_are_numbered_and_bad_ones_reported_not_fatal() {
        let mut input = PipedLines::new(&b"ll\r\n\xff\xfe bad\n\nx"[..]);
        assert_eq!(input.read(), Read::Line("ll".into()));
        assert_eq!(input.read(), Read::NotUtf8(2));
        assert_eq!(input.read(), Read::Line(String::new()));
        assert_eq!(input.read(), Read::Line("x".into()));
        assert_eq!(input.read(), Read::End);
    }

    #[test]
    fn bad_bytes_at_the_terminal_skip_a_line_and_ctrl_d_or_ctrl_c_end() {
        let bad = ReadlineError::Io(io::Error::from(io::ErrorKind::InvalidData));
        assert_eq!(after_error(bad, 3), Read::NotUtf8(3));
        assert_eq!(after_error(ReadlineError::Eof, 4), Read::End);
        assert_eq!(after_error(ReadlineError::Interrupted, 4), Read::End);
    }

    #[derive(Default, Clone)]
    struct Printed(Arc<Mutex<Vec<String>>>);

    impl ExternalPrinter for Printed {
        fn print(&mut self, msg: String) -> rustyline::Result<()> {
            self.0.lock().map_err(|_| io::Error::other("poisoned"))?.push(msg);
            Ok(())
        }
    }

    #[test]
    fn the_terminal_output_prints_whole_lines_at_each_flush() {
        let printed = Printed::default();
        let mut out = PrinterOut::new(printed.clone());
        write!(out, "one\ntw").ok();
        out.flush().ok();
        out.write_all(b"o\n").ok();
        out.flush().ok();
        out.flush().ok();
        let got = printed.0.lock().map(|v| v.clone()).unwrap_or_default();
        assert_eq!(got, ["one\n", "two\n"]);
    }
}
