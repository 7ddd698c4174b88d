//! The log: `dhtnode` installs the `tracing` subscriber (the libraries install none), at a level
//! from `-v` and to standard error or the file of `-l`.

use std::io::IsTerminal;
use std::sync::Mutex;

use tracing::Level;

use crate::Options;

/// The most detailed level logged, from the number of `-v`.
pub fn default_level(verbosity: u8) -> Level {
    match verbosity {
        0 => Level::INFO,
        1 => Level::DEBUG,
        _ => Level::TRACE,
    }
}

/// Installs the subscriber; the error names the log file that could not be opened.
pub fn init(opts: &Options) -> Result<(), String> {
    let level = default_level(opts.verbose);
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
