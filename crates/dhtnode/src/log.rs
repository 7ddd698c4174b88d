//! The log: `dhtnode` installs the `tracing` subscriber (the libraries install none), at a level
//! from `-v` and to standard error or the file of `-l`.

use std::io::IsTerminal;
use std::sync::Mutex;

use tracing::Level;

use crate::Options;

/// The most detailed level logged, from the number of `-v` and whether the log would share
/// the terminal with the prompt (`stdin_is_terminal`: commands are typed at a terminal, and the
/// log goes to standard error). There, as OpenDHT's `dhtnode` is quiet unless asked, only
/// warnings; elsewhere (scripts, service mode, a log file) information too. `-v` is debug and
/// `-vv` trace everywhere.
pub fn default_level(stdin_is_terminal: bool, verbosity: u8) -> Level {
    match (verbosity, stdin_is_terminal) {
        (0, true) => Level::WARN,
        (0, false) => Level::INFO,
        (1, _) => Level::DEBUG,
        _ => Level::TRACE,
    }
}

/// Installs the subscriber; the error names the log file that could not be opened.
pub fn init(opts: &Options) -> Result<(), String> {
    let prompting = !opts.service && opts.logfile.is_none() && std::io::stdin().is_terminal();
    let level = default_level(prompting, opts.verbose);
    let builder = tracing_subscriber::fmt().with_max_level(level).with_target(false);
    match &opts.logfile {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("log file {}: {e}", path.display()))?;
            builder.with_ansi(false).with_writer(Mutex::new(file)).init();
        }
        None => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_on_a_terminal_gets_warnings_only_unless_asked_for_more() {
        assert_eq!(default_level(true, 0), Level::WARN);
        assert_eq!(default_level(false, 0), Level::INFO);
        for terminal in [true, false] {
            assert_eq!(default_level(terminal, 1), Level::DEBUG);
            assert_eq!(default_level(terminal, 2), Level::TRACE);
            assert_eq!(default_level(terminal, 9), Level::TRACE);
        }
    }
}
