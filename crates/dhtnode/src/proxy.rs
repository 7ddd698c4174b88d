//! The proxy side of `dhtnode`, as OpenDHT's options set it up: `--proxyserver` and
//! `--proxyserverssl` serve the node over HTTP and HTTPS (with `--pushserver` and `--bundleid`
//! for pushes), and `--proxyclient` (with `--devicekey`) makes a client of a proxy instead of
//! a node.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use dht_proxy::{
    ClientConfig, ClientTls, Config, Gateway, GatewayConfig, ProxyClient, ProxyServer, ServerTls,
};

use crate::{CliError, Options};

/// The proxy servers a node runs.
#[derive(Debug, Default)]
pub struct Servers {
    servers: Vec<ProxyServer>,
}

impl Servers {
    /// The bound addresses, HTTP first.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(ProxyServer::local_addr).collect()
    }

    /// Stops them all (the permanent puts they hold are cancelled).
    pub async fn shutdown(self) {
        for s in self.servers {
            s.shutdown().await;
        }
    }
}

fn proxy_err(e: impl std::fmt::Display) -> CliError {
    CliError::Proxy(e.to_string())
}

/// Binds `port` on `--proxy-addr`, or on every address: IPv6 and IPv4 together when the
/// system allows it, else IPv4.
fn bind(
    opts: &Options,
    port: u16,
    bind: &dyn Fn(SocketAddr) -> std::io::Result<ProxyServer>,
) -> Result<ProxyServer, CliError> {
    match opts.proxy_addr {
        Some(ip) => bind(SocketAddr::new(ip, port)).map_err(|e| proxy_err(format!("{ip} port {port}: {e}"))),
        None => bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port))
            .or_else(|_| bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)))
            .map_err(|e| proxy_err(format!("port {port}: {e}"))),
    }
}

/// Starts the servers the options ask for over `dht` and prints their addresses
/// (`proxy server listening on ADDR`, `proxy server (TLS) listening on ADDR`).
pub fn start_servers(opts: &Options, dht: &dht_mio::Handle) -> Result<Servers, CliError> {
    let mut servers = Servers::default();
    if opts.proxyserver.is_none() && opts.proxyserverssl.is_none() {
        return Ok(servers);
    }
    if opts.proxy_privkey_password.is_some() {
        return Err(proxy_err(
            "--proxy-privkey-password: encrypted private keys are not supported; decrypt the key (openssl pkey)",
        ));
    }
    let mut config = Config {
        bundle_id: opts.bundleid.clone().unwrap_or_default(),
        ..Config::default()
    };
    if let Some(gw) = &opts.pushserver {
        config.push = Some(Arc::new(Gateway::start(GatewayConfig {
            gateway: Some(gw.clone()),
            ..GatewayConfig::default()
        })));
    }
    let node: Arc<dyn dht_proxy::Dht> = Arc::new(dht.clone());
    if let Some(port) = opts.proxyserver {
        let s = bind(opts, port, &|a| {
            smol::block_on(ProxyServer::bind(a, node.clone(), config.clone()))
        })?;
        println!("proxy server listening on {}", s.local_addr());
        tracing::info!(addr = %s.local_addr(), "proxy server running");
        servers.servers.push(s);
    }
    if let Some(port) = opts.proxyserverssl {
        let (Some(cert), Some(key)) = (&opts.proxy_certificate, &opts.proxy_privkey) else {
            return Err(proxy_err(
                "--proxyserverssl needs --proxy-certificate and --proxy-privkey",
            ));
        };
        let tls = ServerTls::from_pem_files(cert, key).map_err(proxy_err)?;
        let s = bind(opts, port, &|a| {
            smol::block_on(ProxyServer::bind_tls(
                a,
                node.clone(),
                config.clone(),
                tls.clone(),
            ))
        })?;
        println!("proxy server (TLS) listening on {}", s.local_addr());
        tracing::info!(addr = %s.local_addr(), "TLS proxy server running");
        servers.servers.push(s);
    }
    Ok(servers)
}

/// The client of `--proxyclient`, in push mode with `--devicekey`; `dhtnode` is its push
/// client id, as in OpenDHT.
pub fn client(opts: &Options, server: &str) -> Result<ProxyClient, CliError> {
    let mut config = ClientConfig {
        push_token: opts.devicekey.clone(),
        client_id: "dhtnode".into(),
        ..ClientConfig::default()
    };
    if let Some(ca) = &opts.proxy_ca {
        config.tls = Some(ClientTls::with_roots_file(ca).map_err(proxy_err)?);
    }
    smol::block_on(async { ProxyClient::new(server, config) }).map_err(proxy_err)
}
