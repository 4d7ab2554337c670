//! `skr8tr ingress --listen ADDR --route PREFIX:APP … [--name NAME]
//! [--ticket FILE]`: the HTTP reverse proxy, backends from the conductor's
//! registry. It reads the registry with a key of its own (in `--data`),
//! admitted once by a ticket from `skr8tr ticket --ingress NAME`.

use anyhow::Context;
use skr8tr_ingress::{Config, Route};
use skr8tr_net::{Auth, Client};
use skr8tr_proto::keys::{self, SecretKey};
use skr8tr_proto::wire::Role;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// Where clients connect
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// PREFIX:APP, longest prefix wins (`/api:api-server`, `/:frontend`).
    /// Apps' manifests add theirs (`route /api`, `host api.example.com`)
    /// as they are deployed; a flag wins over a manifest route with the
    /// same host and prefix
    #[arg(long = "route", value_name = "PREFIX:APP", value_parser = Route::parse)]
    routes: Vec<Route>,
    /// Largest request body forwarded
    #[arg(long, default_value = "10485760", value_name = "BYTES")]
    max_body: usize,
    /// Request bodies held at once, all connections together
    #[arg(long, default_value = "268435456", value_name = "BYTES")]
    max_buffered: usize,
    /// Largest request head (request line and headers)
    #[arg(long, default_value = "65536", value_name = "BYTES")]
    max_header: usize,
    /// Longest a backend may take to answer
    #[arg(long, default_value = "60s", value_parser = crate::duration)]
    timeout: Duration,
    /// Client connections' bounds (defaults: 10000 connections, 512 per
    /// address, 10s header, 90s idle, 60s body timeouts)
    #[command(flatten)]
    bounds: super::listen::ListenFlags,
    /// Append to `X-Forwarded-For`/`Forwarded` from peers in this block
    /// (a proxy in front of this one), instead of replacing them
    #[arg(long = "trust-proxy", value_name = "CIDR", value_parser = skr8tr_net::server::IpNet::parse)]
    trust_proxy: Vec<skr8tr_net::server::IpNet>,
    /// Terminate TLS with this certificate chain (PEM); give it with its
    /// --tls-key once per host name: the client's SNI picks the one whose
    /// certificate covers the name, else the first
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Vec<std::path::PathBuf>,
    /// With --tls-cert: offer HTTP/2 by ALPN to clients that ask for it
    /// (`--http2 false`: HTTP/1.1 only)
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    http2: bool,
    /// Also serve cleartext HTTP/2 (prior knowledge, as `h2load` and
    /// `curl --http2-prior-knowledge` send it) beside HTTP/1.1 on a plain listener
    #[arg(long, conflicts_with = "tls_cert")]
    h2c: bool,
    /// Serve Prometheus metrics (plain HTTP, GET /metrics) on this
    /// address: bind a loopback or private address
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// The certificate's private key (PEM: PKCS#8, SEC1 or PKCS#1), in
    /// the order of the --tls-cert flags
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Vec<std::path::PathBuf>,
    /// Log one line per request (method, path, status, backend, duration)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    access_log: bool,
    /// The name its key is admitted under (`skr8tr ticket --ingress NAME`)
    #[arg(long, default_value = "ingress")]
    name: String,
    /// Where its key lives [default: ~/.skr8tr/ingress-NAME]
    #[arg(long, value_name = "DIR")]
    data: Option<std::path::PathBuf>,
    /// A join ticket from `skr8tr ticket --ingress NAME`, needed the first time
    #[arg(long, value_name = "FILE")]
    ticket: Option<std::path::PathBuf>,
    /// The conductor's public key (DATA/conductor.pub): when given, every
    /// session must prove it too
    #[arg(long, value_name = "FILE")]
    conductor_key: Option<std::path::PathBuf>,
}

/// The ingress's key file in its data directory.
pub const INGRESS_SECRET_FILE: &str = "ingress.sec";
pub const INGRESS_PUBLIC_FILE: &str = "ingress.pub";

/// The ingress's key in `dir`, made on the first start.
pub fn ingress_key(dir: &std::path::Path) -> anyhow::Result<SecretKey> {
    skr8tr_proto::files::private_dir(dir)?;
    let path = dir.join(INGRESS_SECRET_FILE);
    if path.exists() {
        skr8tr_proto::files::private_file(&path)?;
        return Ok(keys::read_secret_key(&path)?);
    }
    let key = SecretKey::generate().context("cannot generate the ingress key")?;
    keys::write_key_files(dir, INGRESS_SECRET_FILE, INGRESS_PUBLIC_FILE, &key, false)?;
    Ok(key)
}

pub fn run(ctx: &crate::api::Ctx, args: Args) -> anyhow::Result<ExitCode> {
    crate::init_tracing();
    let data = match &args.data {
        Some(d) => d.clone(),
        None => crate::home_dir()?.join(format!("ingress-{}", args.name)),
    };
    let key = ingress_key(&data)?;
    let mut auth = Auth::new(std::sync::Arc::new(key), Role::Ingress(args.name.clone()))
        .with_ticket(
            args.ticket
                .as_deref()
                .map(super::ticket::read)
                .transpose()?,
        );
    if let Some(file) = &args.conductor_key {
        auth = auth.with_conductor(keys::read_public_key(file)?);
    }
    let conductor = Client::new(&ctx.conductor, ctx.pin()?)?.with_auth(auth);
    let mut config = Config::new(conductor, args.routes);
    config.limits.max_body_bytes = args.max_body;
    config.limits.max_buffered_bytes = args.max_buffered;
    config.limits.request_timeout = args.timeout;
    config.limits.clients = args.bounds.apply(config.limits.clients);
    config.limits.clients.max_header_bytes = args.max_header;
    // A proxy in front carries everyone's connections: no per-address cap.
    config.limits.clients.unlimited_sources = args.trust_proxy.clone();
    config.trusted_proxies = args.trust_proxy;
    config.access_log = args.access_log;
    config.h2c = args.h2c;
    config.metrics_listen = args.metrics_listen;
    if args.tls_cert.len() != args.tls_key.len() {
        anyhow::bail!(
            "{} --tls-cert and {} --tls-key: give each certificate its key, in the same order",
            args.tls_cert.len(),
            args.tls_key.len()
        );
    }
    if !args.tls_cert.is_empty() {
        let pairs: Vec<_> = args
            .tls_cert
            .iter()
            .cloned()
            .zip(args.tls_key.iter().cloned())
            .collect();
        let tls = skr8tr_ingress::tls::server_config_for(&pairs)?;
        config.tls = Some(if args.http2 {
            skr8tr_ingress::tls::with_http2(&tls)
        } else {
            tls
        });
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(async {
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            let scheme = if config.tls.is_some() {
                "https"
            } else {
                "http"
            };
            tracing::info!(listen = %listener.local_addr()?, scheme, "ingress ready");
            skr8tr_ingress::run(config, listener, crate::shutdown_signal()).await?;
            anyhow::Ok(())
        })?;
    Ok(ExitCode::SUCCESS)
}
