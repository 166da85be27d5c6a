//! The `paylink` command line: `serve`, `migrate`, `keys create`,
//! `accounts suspend|resume|set-processor`. Logs go to stderr so stdout carries only
//! what a script may want to capture (a new API key).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use jiff::SignedDuration;
use paylink::checkout::limits::{Budget, CheckoutLimitSettings};
use paylink::clock::SystemClock;
use paylink::connections::ConnectionSettings;
use paylink::payments::ProcessorSettings;
use paylink::payments::stripe::StripeConfig;
use paylink::secrets::SecretsKey;
use paylink::server::{self, ServerOptions};
use paylink::service::{ProcessorChoice, Service, ServiceSettings};
use paylink::store;
use paylink::web::rate_limit::RateLimitSettings;

/// mimalloc, not glibc's malloc: a request allocates and frees many small
/// objects across the runtime's threads, and glibc's malloc and free took
/// about a tenth of the server's CPU. With mimalloc a create costs about
/// 15 % less CPU, for some 10 MiB more resident memory (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "paylink", version, about = "Self-hostable payment links")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct DatabaseArgs {
    /// `sqlite://PATH` (embedded, the default) or `postgres://USER@HOST/DB`.
    #[arg(
        long,
        env = "PAYLINK_DATABASE_URL",
        default_value = "sqlite://paylink.db"
    )]
    database_url: String,
    /// PostgreSQL pool size per node.
    #[arg(long, env = "PAYLINK_DB_MAX_CONNECTIONS", default_value_t = 10)]
    db_max_connections: u32,
}

/// Processors: where Stripe is, and the key processor secrets are sealed with.
#[derive(clap::Args)]
struct ProcessorArgs {
    /// 32 random bytes in base64 (`openssl rand -base64 32`); processor
    /// secrets are stored sealed under it. The same on every node.
    #[arg(long, env = "PAYLINK_SECRETS_KEY", hide_env_values = true)]
    secrets_key: Option<String>,
    #[arg(long, env = "PAYLINK_STRIPE_API_BASE", default_value = paylink::payments::stripe::DEFAULT_API_BASE)]
    stripe_api_base: String,
    /// The Stripe.js a Stripe checkout page loads.
    #[arg(long, env = "PAYLINK_STRIPE_JS_URL", default_value = paylink::payments::stripe::DEFAULT_JS_URL)]
    stripe_js_url: String,
}

impl ProcessorArgs {
    fn settings(&self) -> anyhow::Result<ProcessorSettings> {
        let secrets_key = self
            .secrets_key
            .as_deref()
            .filter(|key| !key.trim().is_empty())
            .map(SecretsKey::parse)
            .transpose()?;
        Ok(ProcessorSettings {
            secrets_key,
            stripe_api_base: self.stripe_api_base.clone(),
            stripe_js_url: self.stripe_js_url.clone(),
        })
    }
}

/// The hosted page's limits against card testing and slug enumeration.
#[derive(clap::Args)]
struct CheckoutLimitArgs {
    /// Payment submissions per minute to one link (sustained).
    #[arg(
        long,
        env = "PAYLINK_CHECKOUT_LINK_PAYMENTS_PER_MINUTE",
        default_value_t = 2
    )]
    checkout_link_payments_per_minute: u32,
    /// Payment submissions to one link at once.
    #[arg(
        long,
        env = "PAYLINK_CHECKOUT_LINK_PAYMENTS_BURST",
        default_value_t = 5
    )]
    checkout_link_payments_burst: u32,
    /// Payment submissions per minute from one client address.
    #[arg(
        long,
        env = "PAYLINK_CHECKOUT_ADDRESS_PAYMENTS_PER_MINUTE",
        default_value_t = 10
    )]
    checkout_address_payments_per_minute: u32,
    #[arg(
        long,
        env = "PAYLINK_CHECKOUT_ADDRESS_PAYMENTS_BURST",
        default_value_t = 20
    )]
    checkout_address_payments_burst: u32,
    /// Pages for unknown slugs per minute from one client address.
    #[arg(
        long,
        env = "PAYLINK_CHECKOUT_UNKNOWN_SLUGS_PER_MINUTE",
        default_value_t = 20
    )]
    checkout_unknown_slugs_per_minute: u32,
    #[arg(
        long,
        env = "PAYLINK_CHECKOUT_UNKNOWN_SLUGS_BURST",
        default_value_t = 20
    )]
    checkout_unknown_slugs_burst: u32,
}

impl CheckoutLimitArgs {
    fn settings(&self) -> CheckoutLimitSettings {
        CheckoutLimitSettings {
            payments_per_link: Budget {
                per_minute: self.checkout_link_payments_per_minute,
                burst: self.checkout_link_payments_burst,
            },
            payments_per_address: Budget {
                per_minute: self.checkout_address_payments_per_minute,
                burst: self.checkout_address_payments_burst,
            },
            unknown_slugs_per_address: Budget {
                per_minute: self.checkout_unknown_slugs_per_minute,
                burst: self.checkout_unknown_slugs_burst,
            },
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (with the expiry sweeper and webhook dispatcher).
    Serve {
        #[arg(long, env = "PAYLINK_ADDR", default_value = "127.0.0.1:8080")]
        addr: String,
        #[command(flatten)]
        database: DatabaseArgs,
        /// Base of hosted page URLs; default `http://{addr}`.
        #[arg(long, env = "PAYLINK_PUBLIC_URL")]
        public_url: Option<String>,
        /// Seconds between expiry sweeps.
        #[arg(long, env = "PAYLINK_SWEEP_INTERVAL_SECS", default_value_t = 5)]
        sweep_interval_secs: u64,
        /// Default lifetime of a new link, in hours.
        #[arg(long, env = "PAYLINK_DEFAULT_LINK_LIFETIME_HOURS", default_value_t = 14 * 24)]
        default_link_lifetime_hours: i64,
        /// Seconds before a request is abandoned with 503.
        #[arg(long, env = "PAYLINK_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
        request_timeout_secs: u64,
        /// Sustained requests per second per API key (per node).
        #[arg(long, env = "PAYLINK_RATE_LIMIT_PER_SECOND", default_value_t = 100)]
        rate_limit_per_second: u32,
        /// Burst of requests per API key (per node).
        #[arg(long, env = "PAYLINK_RATE_LIMIT_BURST", default_value_t = 200)]
        rate_limit_burst: u32,
        /// Requests with a missing or bad key allowed per second per client address.
        #[arg(long, env = "PAYLINK_FAILED_AUTH_PER_SECOND", default_value_t = 10)]
        failed_auth_per_second: u32,
        /// Burst of requests with a missing or bad key per client address.
        #[arg(long, env = "PAYLINK_FAILED_AUTH_BURST", default_value_t = 30)]
        failed_auth_burst: u32,
        /// Let webhook endpoints be loopback or private addresses
        /// (development only: it opens the door to SSRF). `1`/`true`/`yes`.
        #[arg(long, env = "PAYLINK_WEBHOOK_ALLOW_PRIVATE", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
        webhook_allow_private: bool,
        /// Seconds a client has to send a request's head (from connecting,
        /// or from the previous answer on a kept-alive connection).
        #[arg(long, env = "PAYLINK_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
        header_read_timeout_secs: u64,
        /// Seconds a kept-alive connection may sit with no request in flight
        /// (keep it above the idle timeout of the proxy in front, often 60).
        #[arg(long, env = "PAYLINK_IDLE_TIMEOUT_SECS", default_value_t = 75)]
        idle_timeout_secs: u64,
        /// Most connections open at once; default: from the open-files limit
        /// (raised to its hard limit), at most 10,000.
        #[arg(long, env = "PAYLINK_MAX_CONNECTIONS")]
        max_connections: Option<usize>,
        /// Seconds after which a payment attempt still pending is settled by
        /// asking its processor (no link stays `processing` longer).
        #[arg(long, env = "PAYLINK_RECONCILE_AFTER_SECS", default_value_t = 60)]
        reconcile_after_secs: u64,
        /// Days a finished webhook delivery and its attempts are kept
        /// (events, the audit trail, are kept for good).
        #[arg(long, env = "PAYLINK_DELIVERY_RETENTION_DAYS", default_value_t = 30)]
        delivery_retention_days: u32,
        #[command(flatten)]
        checkout_limits: CheckoutLimitArgs,
        #[command(flatten)]
        processors: ProcessorArgs,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Copy the SQLite database to FILE (a new file), consistently, while
    /// servers keep serving; restore by stopping paylink and putting the
    /// copy in the database's place (PostgreSQL: use `pg_dump`).
    Backup {
        file: std::path::PathBuf,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Payment links of a running server (a client, like the Stripe CLI).
    Links {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: LinksCommand,
    },
    /// Events (the audit trail) of a running server.
    Events {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Webhook endpoints of a running server.
    WebhookEndpoints {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: EndpointsCommand,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage accounts.
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
}

/// Where the API is and the key to call it with.
#[derive(clap::Args)]
struct ApiArgs {
    #[arg(
        long,
        env = "PAYLINK_API_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    api_url: String,
    #[arg(long, env = "PAYLINK_API_KEY", hide_env_values = true, global = true)]
    api_key: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

impl ApiArgs {
    fn client(&self) -> anyhow::Result<paylink::client::Client> {
        let key = self
            .api_key
            .as_deref()
            .context("no API key: pass --api-key or set PAYLINK_API_KEY")?;
        paylink::client::Client::new(&self.api_url, key, self.json)
    }
}

#[derive(Subcommand)]
enum LinksCommand {
    /// Create a link.
    Create {
        /// Minor units (4995 is 49.95).
        #[arg(long)]
        amount: i64,
        #[arg(long)]
        currency: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        order_reference: Option<String>,
        /// KEY=VALUE, repeatable.
        #[arg(long = "metadata")]
        metadata: Vec<String>,
        #[arg(long)]
        success_url: Option<String>,
        #[arg(long)]
        cancel_url: Option<String>,
        /// RFC 3339.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List links, newest first.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        starting_after: Option<String>,
        #[arg(long)]
        order_reference: Option<String>,
    },
    /// Retrieve a link.
    Get { id: String },
    /// Change an active link's description, expiry or metadata.
    Update {
        id: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        expires_at: Option<String>,
        /// KEY=VALUE, repeatable; replaces the whole map.
        #[arg(long = "metadata")]
        metadata: Vec<String>,
    },
    /// Cancel a link.
    Cancel {
        id: String,
        /// Internal; never shown to the customer.
        #[arg(long)]
        reason: Option<String>,
        /// Shown on the cancelled link's page.
        #[arg(long)]
        customer_message: Option<String>,
    },
    /// A link's events, oldest first.
    Events { id: String },
    /// Refund a paid link (all that is left, or `--amount`).
    Refund {
        id: String,
        #[arg(long)]
        amount: Option<i64>,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// List events, newest first.
    List {
        #[arg(long = "type")]
        event_type: Option<String>,
        #[arg(long)]
        payment_link: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        starting_after: Option<String>,
    },
    /// Retrieve an event with its deliveries.
    Get { id: String },
    /// Send an event again (to `--endpoint`, or every endpoint that wants it).
    Resend {
        id: String,
        #[arg(long)]
        endpoint: Option<String>,
    },
}

#[derive(Subcommand)]
enum EndpointsCommand {
    /// Register an endpoint; its secret is shown once.
    Create {
        #[arg(long)]
        url: String,
        /// Event types, comma-separated (all when absent).
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    List,
    Get {
        id: String,
    },
    Update {
        id: String,
        #[arg(long)]
        url: Option<String>,
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long, value_parser = clap::builder::BoolishValueParser::new())]
        enabled: Option<bool>,
    },
    Delete {
        id: String,
    },
    /// Replace the signing secret (the new one is shown once).
    RotateSecret {
        id: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// An account's keys: id, prefix, mode, created, last used, status.
    List {
        #[arg(long)]
        account: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Refuse the key from its next request on, on every node.
    Revoke {
        key_id: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// A new key for the same account and mode (printed as the last line);
    /// the old one keeps working for `--expires-in` (default: stops now).
    Roll {
        key_id: String,
        /// How long the old key keeps working, e.g. `24h`, `30m`, `7d`.
        #[arg(long, value_parser = parse_grace)]
        expires_in: Option<SignedDuration>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Create a key (and the account, if new); prints the secret as the last line.
    Create {
        #[arg(long)]
        account: String,
        #[arg(long, value_enum)]
        mode: Mode,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Refuse every key of the account with 403 `account_suspended`.
    Suspend {
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// How the hosted pages present the business: a field given replaces
    /// the stored one (an empty value clears it); the others are kept.
    SetBranding {
        name: String,
        /// The name customers see (else the account's name).
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        support_email: Option<String>,
        /// An https image shown atop every page.
        #[arg(long)]
        logo_url: Option<String>,
        #[arg(long)]
        terms_url: Option<String>,
        #[arg(long)]
        privacy_url: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Lift a suspension.
    Resume {
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Choose the processor an account takes payments with in a mode;
    /// prints the webhook URL to register at the processor.
    SetProcessor {
        name: String,
        #[arg(long, value_enum)]
        mode: Mode,
        #[arg(long, value_enum)]
        processor: ProcessorName,
        /// Stripe's secret key (`sk_test_...`, `sk_live_...`, or a restricted `rk_...`).
        #[arg(long, required_if_eq("processor", "stripe"))]
        secret_key: Option<String>,
        /// Stripe's publishable key (`pk_...`), used by the checkout page.
        #[arg(long, required_if_eq("processor", "stripe"))]
        publishable_key: Option<String>,
        /// The signing secret (`whsec_...`) of the webhook endpoint registered at Stripe.
        #[arg(long, required_if_eq("processor", "stripe"))]
        webhook_secret: Option<String>,
        /// Base of the URLs paylink is reached at (for the webhook URL printed).
        #[arg(
            long,
            env = "PAYLINK_PUBLIC_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        public_url: String,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        processors: ProcessorArgs,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProcessorName {
    /// The built-in test processor (test mode only).
    Test,
    Stripe,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Test,
    Live,
}

async fn run_links(client: paylink::client::Client, command: LinksCommand) -> anyhow::Result<()> {
    use paylink::client::{Call, body, pairs};
    use reqwest::Method;
    use serde_json::json;
    let call = match command {
        LinksCommand::Create {
            amount,
            currency,
            description,
            order_reference,
            metadata,
            success_url,
            cancel_url,
            expires_at,
        } => Call::send(
            Method::POST,
            "/v1/payment-links",
            body(vec![
                ("amount", Some(json!(amount))),
                ("currency", Some(json!(currency))),
                ("description", description.map(|d| json!(d))),
                ("order_reference", order_reference.map(|o| json!(o))),
                ("metadata", pairs(&metadata)?),
                ("success_url", success_url.map(|u| json!(u))),
                ("cancel_url", cancel_url.map(|u| json!(u))),
                ("expires_at", expires_at.map(|e| json!(e))),
            ]),
        ),
        LinksCommand::List {
            status,
            limit,
            starting_after,
            order_reference,
        } => Call::get("/v1/payment-links")
            .query("status", status)
            .query("limit", limit)
            .query("starting_after", starting_after)
            .query("order_reference", order_reference),
        LinksCommand::Get { id } => Call::get(format!("/v1/payment-links/{id}")),
        LinksCommand::Update {
            id,
            description,
            expires_at,
            metadata,
        } => Call::send(
            Method::PATCH,
            format!("/v1/payment-links/{id}"),
            body(vec![
                ("description", description.map(|d| json!(d))),
                ("expires_at", expires_at.map(|e| json!(e))),
                ("metadata", pairs(&metadata)?),
            ]),
        ),
        LinksCommand::Cancel {
            id,
            reason,
            customer_message,
        } => Call::send(
            Method::POST,
            format!("/v1/payment-links/{id}/cancel"),
            body(vec![
                ("reason", reason.map(|r| json!(r))),
                ("customer_message", customer_message.map(|m| json!(m))),
            ]),
        ),
        LinksCommand::Events { id } => Call::get(format!("/v1/payment-links/{id}/events")),
        LinksCommand::Refund { id, amount, reason } => Call::send(
            Method::POST,
            format!("/v1/payment-links/{id}/refunds"),
            body(vec![
                ("amount", amount.map(|a| json!(a))),
                ("reason", reason.map(|r| json!(r))),
            ]),
        ),
    };
    client.run(call).await
}

async fn run_events(client: paylink::client::Client, command: EventsCommand) -> anyhow::Result<()> {
    use paylink::client::{Call, body};
    use serde_json::json;
    let call = match command {
        EventsCommand::List {
            event_type,
            payment_link,
            limit,
            starting_after,
        } => Call::get("/v1/events")
            .query("type", event_type)
            .query("payment_link", payment_link)
            .query("limit", limit)
            .query("starting_after", starting_after),
        EventsCommand::Get { id } => Call::get(format!("/v1/events/{id}")),
        EventsCommand::Resend { id, endpoint } => Call::send(
            reqwest::Method::POST,
            format!("/v1/events/{id}/redeliver"),
            body(vec![("endpoint", endpoint.map(|e| json!(e)))]),
        ),
    };
    client.run(call).await
}

async fn run_endpoints(
    client: paylink::client::Client,
    command: EndpointsCommand,
) -> anyhow::Result<()> {
    use paylink::client::{Call, body};
    use reqwest::Method;
    use serde_json::json;
    let listed = |events: Vec<String>| (!events.is_empty()).then(|| json!(events));
    let call = match command {
        EndpointsCommand::Create {
            url,
            events,
            description,
        } => Call::send(
            Method::POST,
            "/v1/webhook-endpoints",
            body(vec![
                ("url", Some(json!(url))),
                ("events", listed(events)),
                ("description", description.map(|d| json!(d))),
            ]),
        ),
        EndpointsCommand::List => Call::get("/v1/webhook-endpoints"),
        EndpointsCommand::Get { id } => Call::get(format!("/v1/webhook-endpoints/{id}")),
        EndpointsCommand::Update {
            id,
            url,
            events,
            description,
            enabled,
        } => Call::send(
            Method::PATCH,
            format!("/v1/webhook-endpoints/{id}"),
            body(vec![
                ("url", url.map(|u| json!(u))),
                ("events", listed(events)),
                ("description", description.map(|d| json!(d))),
                ("enabled", enabled.map(|e| json!(e))),
            ]),
        ),
        EndpointsCommand::Delete { id } => Call {
            method: Method::DELETE,
            path: format!("/v1/webhook-endpoints/{id}"),
            query: Vec::new(),
            body: None,
        },
        EndpointsCommand::RotateSecret { id } => Call::send(
            Method::POST,
            format!("/v1/webhook-endpoints/{id}/rotate-secret"),
            json!({}),
        ),
    };
    client.run(call).await
}

/// `24h`, `30m`, `90s`, `7d` (or any span jiff reads, e.g. `1h 30m`).
fn parse_grace(text: &str) -> Result<SignedDuration, String> {
    let span: jiff::Span = text
        .parse()
        .map_err(|error| format!("`{text}` is not a duration like 24h or 30m: {error}"))?;
    let grace = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|error| error.to_string())?;
    if grace.is_negative() {
        return Err("a grace period cannot be negative".into());
    }
    Ok(grace)
}

/// `2026-01-15 10:00:00Z`, or `-`.
fn when(at: Option<jiff::Timestamp>) -> String {
    at.map_or_else(
        || "-".to_owned(),
        |at| at.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
    )
}

async fn open_service(
    database: &DatabaseArgs,
    settings: ServiceSettings,
) -> anyhow::Result<Arc<Service>> {
    let database_url = &database.database_url;
    let options = store::StoreOptions {
        max_connections: database.db_max_connections,
    };
    let store = store::open(database_url, &options)
        .await
        .with_context(|| format!("opening {}", store::redact_url(database_url)))?;
    Ok(Arc::new(Service::new(
        store,
        Arc::new(SystemClock),
        settings,
    )))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("PAYLINK_LOG").unwrap_or_else(|_| "info".into())
    };
    // `PAYLINK_LOG_FORMAT=json`: one JSON object per line, for a log
    // pipeline; `text` (the default) for people.
    match std::env::var("PAYLINK_LOG_FORMAT").as_deref() {
        Ok("json") => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .init(),
        Ok("text") | Err(_) => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        Ok(other) => anyhow::bail!("PAYLINK_LOG_FORMAT is `{other}`: use json or text"),
    }
    match Cli::parse().command {
        Command::Serve {
            addr,
            database,
            public_url,
            sweep_interval_secs,
            default_link_lifetime_hours,
            request_timeout_secs,
            rate_limit_per_second,
            rate_limit_burst,
            failed_auth_per_second,
            failed_auth_burst,
            webhook_allow_private,
            header_read_timeout_secs,
            idle_timeout_secs,
            max_connections,
            reconcile_after_secs,
            delivery_retention_days,
            checkout_limits,
            processors,
        } => {
            if webhook_allow_private {
                tracing::warn!(
                    "webhook endpoints may be loopback or private addresses (PAYLINK_WEBHOOK_ALLOW_PRIVATE): development only"
                );
            }
            let reconcile_after = Duration::from_secs(reconcile_after_secs.max(1));
            let settings = ServiceSettings {
                default_link_lifetime: SignedDuration::from_hours(default_link_lifetime_hours),
                webhook_allow_private,
                processors: processors.settings()?,
            };
            // The port first: a server that cannot serve creates nothing
            // (no account, no key shown once for a server that never ran).
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("binding {addr}"))?;
            let service = open_service(&database, settings).await?;
            if let Some(issued) = service.bootstrap().await? {
                println!("Created account `default` with a test API key (shown only this once):");
                println!("{}", issued.secret);
            }
            let running = server::start(
                listener,
                service,
                ServerOptions {
                    public_url,
                    sweep_interval: Duration::from_secs(sweep_interval_secs.max(1)),
                    request_timeout: Duration::from_secs(request_timeout_secs.max(1)),
                    rate_limits: RateLimitSettings {
                        per_second: rate_limit_per_second,
                        burst: rate_limit_burst,
                        failed_auth_per_second,
                        failed_auth_burst,
                    },
                    connections: ConnectionSettings {
                        header_read_timeout: Duration::from_secs(header_read_timeout_secs.max(1)),
                        idle_timeout: Duration::from_secs(idle_timeout_secs.max(1)),
                        max_connections,
                    },
                    checkout_limits: checkout_limits.settings(),
                    reconcile_after,
                    delivery_retention: SignedDuration::from_hours(
                        i64::from(delivery_retention_days.max(1)) * 24,
                    ),
                    // Often enough that no attempt outlives the age by much.
                    reconcile_interval: (reconcile_after / 10)
                        .clamp(Duration::from_millis(100), Duration::from_secs(5)),
                    ..ServerOptions::default()
                },
            )
            .await?;
            tracing::info!(
                addr = %running.addr,
                public_url = %running.public_url,
                database = %store::redact_url(&database.database_url),
                "paylink listening"
            );
            running.run_until_signal().await
        }
        Command::Migrate { database } => {
            open_service(&database, ServiceSettings::default()).await?;
            eprintln!(
                "database is migrated: {}",
                store::redact_url(&database.database_url)
            );
            Ok(())
        }
        Command::Accounts {
            command:
                AccountsCommand::SetBranding {
                    name,
                    display_name,
                    support_email,
                    logo_url,
                    terms_url,
                    privacy_url,
                    database,
                },
        } => {
            let service = open_service(&database, ServiceSettings::default()).await?;
            let branding = service
                .set_branding(
                    &name,
                    paylink::domain::Branding {
                        display_name,
                        support_email,
                        logo_url,
                        terms_url,
                        privacy_url,
                    },
                )
                .await?;
            eprintln!("branding of `{name}`:");
            println!("{}", serde_json::to_string_pretty(&branding)?);
            Ok(())
        }
        Command::Links { api, command } => run_links(api.client()?, command).await,
        Command::Events { api, command } => run_events(api.client()?, command).await,
        Command::WebhookEndpoints { api, command } => run_endpoints(api.client()?, command).await,
        Command::Backup { file, database } => {
            store::backup(&database.database_url, &file)?;
            eprintln!(
                "backed up {} to {}",
                store::redact_url(&database.database_url),
                file.display()
            );
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::List { account, database },
        } => {
            let service = open_service(&database, ServiceSettings::default()).await?;
            let keys = service.list_api_keys(&account).await?;
            let now = jiff::Timestamp::now();
            println!(
                "{:<24} {:<14} {:<5} {:<21} {:<21} STATUS",
                "ID", "PREFIX", "MODE", "CREATED", "LAST USED"
            );
            for key in keys {
                let status = match key.expires_at {
                    None => "active".to_owned(),
                    Some(at) if at <= now => format!("revoked {}", when(Some(at))),
                    Some(at) => format!("expires {}", when(Some(at))),
                };
                println!(
                    "{:<24} {:<14} {:<5} {:<21} {:<21} {status}",
                    key.id,
                    format!("{}...", key.key_prefix),
                    if key.livemode { "live" } else { "test" },
                    when(Some(key.created_at)),
                    when(key.last_used_at),
                );
            }
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Revoke { key_id, database },
        } => {
            let service = open_service(&database, ServiceSettings::default()).await?;
            service.revoke_api_key(&key_id).await?;
            eprintln!("revoked {key_id}: it is refused from its next request on");
            Ok(())
        }
        Command::Keys {
            command:
                KeysCommand::Roll {
                    key_id,
                    expires_in,
                    database,
                },
        } => {
            let service = open_service(&database, ServiceSettings::default()).await?;
            let (issued, old_expires_at) = service
                .roll_api_key(&key_id, expires_in.unwrap_or(SignedDuration::ZERO))
                .await?;
            eprintln!(
                "rolled {key_id}: it works until {}; the new key {} is shown only this once",
                when(Some(old_expires_at)),
                issued.record.id
            );
            println!("{}", issued.secret);
            Ok(())
        }
        Command::Keys {
            command:
                KeysCommand::Create {
                    account,
                    mode,
                    database,
                },
        } => {
            let service = open_service(&database, ServiceSettings::default()).await?;
            let issued = service
                .create_api_key(&account, matches!(mode, Mode::Live))
                .await
                .context("creating the key")?;
            eprintln!(
                "created key {} for account `{}` ({} mode); store it now, it is not shown again",
                issued.record.id,
                issued.account.name,
                if issued.record.livemode {
                    "live"
                } else {
                    "test"
                }
            );
            println!("{}", issued.secret);
            Ok(())
        }
        Command::Accounts {
            command:
                AccountsCommand::SetProcessor {
                    name,
                    mode,
                    processor,
                    secret_key,
                    publishable_key,
                    webhook_secret,
                    public_url,
                    database,
                    processors,
                },
        } => {
            let settings = ServiceSettings {
                processors: processors.settings()?,
                ..ServiceSettings::default()
            };
            let service = open_service(&database, settings).await?;
            let livemode = matches!(mode, Mode::Live);
            let choice = match processor {
                ProcessorName::Test => ProcessorChoice::Test,
                ProcessorName::Stripe => ProcessorChoice::Stripe(StripeConfig {
                    secret_key: secret_key.unwrap_or_default(),
                    publishable_key: publishable_key.unwrap_or_default(),
                    webhook_secret: webhook_secret.unwrap_or_default(),
                }),
            };
            service.set_processor(&name, livemode, choice).await?;
            let mode_word = if livemode { "live" } else { "test" };
            match processor {
                ProcessorName::Test => eprintln!(
                    "account `{name}` takes {mode_word}-mode payments with the built-in test processor"
                ),
                ProcessorName::Stripe => {
                    eprintln!(
                        "account `{name}` takes {mode_word}-mode payments with Stripe; register this webhook URL at Stripe (events payment_intent.succeeded, payment_intent.payment_failed, charge.refunded):"
                    );
                    println!(
                        "{}/processors/stripe/{name}/webhook",
                        public_url.trim_end_matches('/')
                    );
                }
            }
            Ok(())
        }
        Command::Accounts {
            command: AccountsCommand::Suspend { name, database },
        } => suspend_or_resume(&name, &database, true).await,
        Command::Accounts {
            command: AccountsCommand::Resume { name, database },
        } => suspend_or_resume(&name, &database, false).await,
    }
}

async fn suspend_or_resume(
    name: &str,
    database: &DatabaseArgs,
    suspend: bool,
) -> anyhow::Result<()> {
    let service = open_service(database, ServiceSettings::default()).await?;
    service
        .set_account_suspended(name, suspend)
        .await
        .with_context(|| format!("no account named `{name}`"))?;
    eprintln!(
        "account `{name}` {}",
        if suspend { "suspended" } else { "resumed" }
    );
    Ok(())
}
