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
    /// Revoke a token, a user, a tenant or a refresh family directly in the configured
    /// (Redis) store. Every replica applies it at once; an audit event is logged.
    Revoke(RevokeArgs),
    /// Show what the configured store holds about one identifier.
    Status(StatusArgs),
    /// Upgrade the Redis store to issuer-scoped revocations: copy every revocation of the
    /// previous layout into every configured provider's namespace (a legacy entry cannot
    /// know its issuer, so it stays enforced for all), then delete it. Idempotent; prints
    /// counts. See docs/operations.md, "Upgrading to issuer-scoped revocations".
    Migrate(MigrateArgs),
}

#[derive(Args)]
struct MigrateArgs {
    /// Configuration file naming the store and the providers.
    #[arg(long, short = 'c', default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Only count what would be copied; write and delete nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args)]
#[group(id = "target", required = true, multiple = false)]
struct TargetArgs {
    /// A token id (`jti`); `revoke` needs --expires-at with it.
    #[arg(long, group = "target")]
    jti: Option<String>,
    /// A user (`sub`): every token issued so far.
    #[arg(long, group = "target")]
    user: Option<String>,
    /// A tenant: every token of every user of it issued so far.
    #[arg(long, group = "target")]
    tenant: Option<String>,
    /// A refresh-token family.
    #[arg(long, group = "target")]
    family: Option<String>,
    /// A session at the identity provider (the tokens' `sid`): every token of it.
    #[arg(long, group = "target")]
    session: Option<String>,
}

#[derive(Args)]
struct RevokeArgs {
    /// Configuration file naming the store.
    #[arg(long, short = 'c', default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    #[command(flatten)]
    target: TargetArgs,
    /// Whose user, tenant, token or family: the provider (by name) whose namespace is
    /// meant. Required when providers have different subject namespaces.
    #[arg(long)]
    provider: Option<String>,
    /// With --jti: the token's `exp` (unix seconds, at most 10 years ahead); the entry is
    /// kept until then.
    #[arg(long, value_name = "UNIX")]
    expires_at: Option<i64>,
    /// Why (recorded with the revocation and in the audit log).
    #[arg(long, default_value = "cli")]
    reason: String,
}

#[derive(Args)]
struct StatusArgs {
    /// Configuration file naming the store.
    #[arg(long, short = 'c', default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    #[command(flatten)]
    target: TargetArgs,
    /// Whose identifier: the provider (by name) whose namespace is meant. Required when
    /// providers have different subject namespaces.
    #[arg(long)]
    provider: Option<String>,
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
        Some(Command::Revoke(args)) => revoke(args),
        Some(Command::Status(args)) => status(args),
        Some(Command::Migrate(args)) => migrate(args),
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // The OTLP exporter lives on the runtime (its gRPC connection does).
        let telemetry = match config.tracing.enabled {
            true => Some(tokengate::telemetry::Telemetry::start(&config.tracing)?),
            false => None,
        };
        tokengate::init_logging(&config.log, false, telemetry.as_ref());
        let server = tokengate::Server::bind(&config).await?;
        let shutdown = CancellationToken::new();
        tokengate::shutdown::on_signal(shutdown.clone());
        let result = server.run(shutdown).await;
        tracing::info!("stopped");
        if let Some(t) = telemetry {
            // Blocking: the batch thread exports what is queued, within its timeout.
            tokio::task::spawn_blocking(move || t.shutdown()).await.ok();
        }
        result?;
        Ok(())
    })
}

fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(file)?;
    tokengate::jwt::Verifier::from_config(&config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    tokengate::ssf::Receiver::from_config(&config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    tokengate::tls::ListenerTls::check(&config.tls)
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

/// Runs an operator command on a small runtime with logging from the config.
fn operate<F, Fut>(config: &std::path::Path, f: F) -> anyhow::Result<()>
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = Result<serde_json::Value, tokengate::ops::OpsError>>,
{
    let config = Config::load(config)?;
    tokengate::init_logging(&config.log, true, None);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = runtime.block_on(f(config))?;
    println!("{out}");
    Ok(())
}

/// The kind and id the target group names (clap requires exactly one).
fn target(t: &TargetArgs) -> (tokengate::revocation::Kind, &str) {
    use tokengate::revocation::Kind;
    let named = [
        (Kind::Jti, &t.jti),
        (Kind::User, &t.user),
        (Kind::Tenant, &t.tenant),
        (Kind::Family, &t.family),
        (Kind::Session, &t.session),
    ];
    named
        .into_iter()
        .find_map(|(kind, id)| id.as_deref().map(|id| (kind, id)))
        // clap's required group guarantees one of them.
        .unwrap_or((Kind::User, ""))
}

fn revoke(args: RevokeArgs) -> anyhow::Result<()> {
    if args.target.jti.is_some() && args.expires_at.is_none() {
        anyhow::bail!("--jti needs --expires-at (the token's exp, unix seconds)");
    }
    let actor = std::env::var("USER").unwrap_or_else(|_| "cli".into());
    operate(&args.config, |config| async move {
        let (kind, id) = target(&args.target);
        let request = tokengate::ops::Request {
            kind,
            id,
            expires_at: args.expires_at,
            provider: args.provider.as_deref(),
        };
        tokengate::ops::revoke(&config, request, &args.reason, &actor).await
    })
}

fn status(args: StatusArgs) -> anyhow::Result<()> {
    operate(&args.config, |config| async move {
        let (kind, id) = target(&args.target);
        tokengate::ops::status(&config, kind, id, args.provider.as_deref()).await
    })
}

fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    operate(&args.config, |config| async move {
        tokengate::ops::migrate(&config, args.dry_run).await
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_subcommand_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
