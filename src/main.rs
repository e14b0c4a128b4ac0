//! Command line: argument parsing and nothing else.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tokengate::config::Config;
use tokengate::jwt::mint::{self, MintRequest};
use tokio_util::sync::CancellationToken;

const DEFAULT_CONFIG: &str = "config/tokengate.yaml";

/// JWT verification with revocation for Envoy ext_authz (gRPC and HTTP), nginx
/// auth_request and Traefik forwardAuth.
///
/// With no subcommand, `serve` runs with the default config file.
#[derive(Parser)]
#[command(name = "tokengate", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the three listeners (gRPC Check, HTTP logout, admin) until SIGTERM/SIGINT.
    Serve(ServeArgs),
    /// Validate a configuration file (syntax, fields, keys) without starting.
    CheckConfig {
        /// The YAML file to check.
        file: PathBuf,
    },
    /// Token helpers for development, tests and benchmarks.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Args)]
struct ServeArgs {
    /// Configuration file (YAML; every field is documented in config/tokengate.yaml).
    #[arg(long, short = 'c', default_value = DEFAULT_CONFIG, env = "TOKENGATE_CONFIG")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Sign a token with a provider's private or HMAC key and print it (only the token)
    /// on stdout. Adds a fresh `jti`, `iat` and `exp`, the provider's issuer and first
    /// audience. Refuses providers that have only public keys.
    Mint(MintArgs),
}

#[derive(Args)]
struct MintArgs {
    /// Configuration file naming the provider's keys.
    #[arg(long, short = 'c', default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Provider name (default: the first provider).
    #[arg(long)]
    provider: Option<String>,
    /// Subject: the user id (`sub`).
    #[arg(long)]
    sub: String,
    /// Tenant id, written to the configured tenant claim (default `tid`).
    #[arg(long)]
    tenant: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    /// Extra claim KEY=VALUE; VALUE is read as JSON when it parses (numbers, arrays,
    /// booleans), else as a string. Repeatable; applied last, so it can override
    /// standard claims (e.g. `--claim ver=3`, `--claim 'scope=read write'`).
    #[arg(long = "claim", value_name = "KEY=VALUE", value_parser = mint::parse_claim)]
    claims: Vec<(String, serde_json::Value)>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::CheckConfig { file }) => check_config(&file),
        Some(Command::Token(TokenCommand::Mint(args))) => mint_token(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokengate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    tokengate::init_logging(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let server = tokengate::Server::bind(&config).await?;
        let shutdown = CancellationToken::new();
        tokengate::shutdown::on_signal(shutdown.clone());
        server.run(shutdown).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(file)?;
    tokengate::jwt::Verifier::from_config(&config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    println!("{}: OK", file.display());
    Ok(())
}

fn mint_token(args: MintArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let request = MintRequest {
        provider: args.provider,
        sub: args.sub,
        tenant: args.tenant,
        ttl_seconds: args.ttl,
        claims: args.claims,
    };
    let token = mint::mint(&config, &request)?;
    println!("{token}");
    Ok(())
}
