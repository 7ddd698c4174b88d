//! The files `dhtnode` keeps: the identity (`-i`) and the state (`--persist`), and their errors.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use dht_mio::{Error, Handle};

use crate::show::hex;

/// Errors of the files and commands of `dhtnode`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The identity file could not be read or written.
    #[error("identity file {path}: {source}")]
    IdentityIo {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The identity file does not hold a seed.
    #[error("identity file {0}: expected 64 hex digits (a 32-byte seed)")]
    IdentityFormat(PathBuf),
    /// The state file could not be read or written.
    #[error("state file {path}: {source}")]
    StateIo {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The state file is corrupt.
    #[error("state file {path}: {reason} (delete it to start afresh)")]
    StateFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The runner failed.
    #[error(transparent)]
    Run(#[from] Error),
    /// A proxy server or client could not start.
    #[error("proxy: {0}")]
    Proxy(String),
}

/// Reads the seed in `path`, or creates the file (mode 0600) with a fresh seed from the OS.
pub fn load_or_create_identity(path: &Path) -> Result<[u8; 32], CliError> {
    let io_err = |source| CliError::IdentityIo {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => parse_seed(text.trim()).ok_or_else(|| CliError::IdentityFormat(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(path).map_err(io_err)?;
            writeln!(f, "{}", hex(&seed)).map_err(io_err)?;
            Ok(seed)
        }
        Err(e) => Err(io_err(e)),
    }
}

fn parse_seed(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(seed)
}

/// Loads a state file written by [`save_state`]; a missing file is an empty state.
pub fn load_state(
    path: &Path,
) -> Result<(Vec<dht_proto::wire::NodeInfo>, Vec<dht_proto::ExportedValue>), CliError> {
    match std::fs::read(path) {
        Ok(bytes) => dht_proto::state::decode(&bytes).map_err(|e| CliError::StateFormat {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((Vec::new(), Vec::new())),
        Err(source) => Err(CliError::StateIo {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes the runner's nodes and values to `path` (through a temporary file and a rename, so a
/// crash never leaves half a file).
pub fn save_state(handle: &Handle, path: &Path) -> Result<(), CliError> {
    let nodes = handle.export_nodes()?;
    let values = handle.export_values()?;
    let bytes = dht_proto::state::encode(&nodes, &values);
    let tmp = path.with_extension("tmp");
    let io_err = |source| CliError::StateIo {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(io_err)?;
    std::fs::rename(&tmp, path).map_err(io_err)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn identity_files_are_created_private_and_bad_ones_refused() {
        let dir = std::env::temp_dir().join(format!("dhtnode-id-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("id");
        let seed = load_or_create_identity(&path).unwrap();
        assert_eq!(load_or_create_identity(&path).unwrap(), seed);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not hex").unwrap();
        assert!(matches!(
            load_or_create_identity(&path),
            Err(CliError::IdentityFormat(_))
        ));
        // A directory cannot be read as a file.
        assert!(matches!(
            load_or_create_identity(&dir),
            Err(CliError::IdentityIo { .. })
        ));
        std::fs::write(dir.join("state"), b"junk").unwrap();
        assert!(matches!(
            load_state(&dir.join("state")),
            Err(CliError::StateFormat { .. })
        ));
        assert!(load_state(&dir.join("missing")).unwrap().0.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
