//! `dhtnode`: runs a node and reads commands from the terminal or a script (see the crate docs).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use dht_mio::{Config, Runner};
use dhtnode::{Backend, CliError, Console, Options, Out, PipedLines, ProxyBackend, Terminal, run_lines};

fn main() -> ExitCode {
    let opts = Options::parse();
    if let Err(e) = dhtnode::log::init(&opts) {
        eprintln!("dhtnode: {e}");
        return ExitCode::FAILURE;
    }
    match run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("dhtnode: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: Options) -> Result<(), CliError> {
    tracing::debug!(?opts, "starting");
    // The identity signs and decrypts: from the file, or fresh for this run. The node's own
    // randomness (its id, token secrets) derives from it but is not the key itself.
    let secret = match opts.identity.as_deref() {
        Some(path) => dhtnode::load_or_create_identity(path)?,
        None => {
            let mut s = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut s);
            s
        }
    };
    let identity = dht_proto::crypto::Identity::from_seed(&secret);
    if let Some(server) = &opts.proxyclient {
        return run_proxy_client(&opts, server, identity);
    }
    let mut seed_input = b"rdht node seed".to_vec();
    seed_input.extend_from_slice(&secret);
    let seed = Some(dht_proto::crypto::sha256(&seed_input));
    let (nodes, values) = match &opts.persist {
        Some(p) => dhtnode::load_state(p)?,
        None => (Vec::new(), Vec::new()),
    };
    let mut node = dht_proto::Config::default();
    node.network = opts.network;
    node.identity = Some(identity);
    node.uplink_bytes_per_sec = opts.uplink_rate;
    let config = Config {
        port: opts.port,
        bind4: (!opts.ipv6_only).then_some(opts.bind4),
        bind6: (!opts.ipv4_only).then_some(opts.bind6),
        node,
        seed,
        bootstrap: opts.bootstrap.clone(),
        discovery: opts.peer_discovery.then(dht_mio::DiscoveryConfig::default),
    };
    let runner = Runner::run(config)?;
    if opts.peer_discovery {
        match runner.discovery_stats() {
            Some(_) => tracing::info!("peer discovery on (UDP port 8888)"),
            None => tracing::warn!("peer discovery could not start (see the log above)"),
        }
    }
    tracing::info!(id = %runner.node_id(), addrs = ?runner.local_addrs(), network = opts.network, "node running");
    if !nodes.is_empty() || !values.is_empty() {
        tracing::info!(nodes = nodes.len(), values = values.len(), "state restored");
        runner.import_nodes(nodes)?;
        runner.import_values(values)?;
    }
    let servers = match dhtnode::proxy::start_servers(&opts, &runner.handle()) {
        Ok(s) => s,
        Err(e) => {
            let _ = runner.shutdown(Duration::from_secs(5));
            return Err(e);
        }
    };
    if opts.service {
        wait_for_signal()?;
    } else {
        console(Box::new(runner.handle()), &opts, || {
            println!(
                "node {} on {:?}; h for help",
                runner.node_id(),
                runner.local_addrs()
            )
        });
    }
    smol::block_on(servers.shutdown());
    if let Some(p) = &opts.persist {
        dhtnode::save_state(&runner, p)?;
        tracing::info!(path = %p.display(), "state saved");
    }
    runner.shutdown(Duration::from_secs(5))?;
    Ok(())
}

/// `--proxyclient`: no UDP socket; the console's commands go through the proxy.
fn run_proxy_client(
    opts: &Options,
    server: &str,
    identity: dht_proto::crypto::Identity,
) -> Result<(), CliError> {
    let client = dhtnode::proxy::client(opts, server)?;
    tracing::info!(server, push = opts.devicekey.is_some(), "proxy client running");
    let backend = ProxyBackend::new(client, server, identity);
    if opts.service {
        wait_for_signal()?;
    } else {
        console(Box::new(backend), opts, || {
            println!("proxy client of {server}; h for help")
        });
    }
    Ok(())
}

fn wait_for_signal() -> Result<(), CliError> {
    let mut signals =
        signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
            .map_err(|e| CliError::Run(dht_mio::Error::Io(e)))?;
    if let Some(sig) = signals.forever().next() {
        tracing::info!(signal = sig, "stopping");
    }
    Ok(())
}

fn console(node: Box<dyn Backend>, opts: &Options, banner: impl FnOnce()) {
    let timeout = Duration::from_secs(opts.timeout);
    if std::io::stdin().is_terminal() {
        match Terminal::new() {
            Ok((mut input, out)) => {
                let mut console = Console::new(node, out, timeout);
                banner();
                return run_lines(&mut console, &mut input, &mut std::io::stderr());
            }
            Err(e) => tracing::warn!("no line editing: {e}"),
        }
    }
    let out: Out = Arc::new(Mutex::new(Box::new(std::io::stdout())));
    let mut console = Console::new(node, out, timeout);
    let mut input = PipedLines::new(std::io::stdin().lock());
    run_lines(&mut console, &mut input, &mut std::io::stderr());
}
