//! The `oort` command line: one clap struct per subcommand, whose doc comments are the `--help`.

mod client;
mod run_rule;
mod serve;
mod sink;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::clock::Clock;
use crate::engine::RunConfig;
use crate::host::{ArtifactCache, DescriptorLimits, HostConfig};

/// Run eKuiper rules whose sinks are WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "oort", version, about, long_about = None)]
pub struct Cli {
    /// Log filter: error, warn, info, debug, trace, or a tracing filter such as
    /// `oort=debug,wasmtime=warn`. Also read from OORT_LOG.
    #[arg(long, global = true, env = "OORT_LOG", default_value = "info")]
    pub log: String,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a rule (or every rule of a ruleset) until its input ends, then print a summary.
    RunRule(run_rule::RunRuleArgs),
    /// Check a rule, its SQL, streams and sinks without running anything.
    Validate(validate::ValidateArgs),
    /// Print the SQL functions this version supports, as a Markdown table.
    Functions,
    /// Run rules as a service managed over eKuiper's REST API (default 127.0.0.1:9081).
    Serve(serve::ServeArgs),
    /// Client: create a stream, table, rule or sink plugin on a running server.
    Create {
        /// What to create.
        #[command(subcommand)]
        what: client::Create,
        /// The server.
        #[command(flatten)]
        host: client::Host,
    },
    /// Client: list the server's streams, tables, rules (with status) or plugins.
    Show {
        /// What to list.
        what: client::Listing,
        /// The server.
        #[command(flatten)]
        host: client::Host,
    },
    /// Client: show a stream, table or rule.
    Describe {
        /// Its kind.
        kind: client::Noun,
        /// Its name.
        name: String,
        /// The server.
        #[command(flatten)]
        host: client::Host,
    },
    /// Client: drop a stream, table or rule.
    #[command(name = "drop")]
    DropIt {
        /// Its kind.
        kind: client::Noun,
        /// Its name.
        name: String,
        /// The server.
        #[command(flatten)]
        host: client::Host,
    },
    /// Client: a rule's status and metrics.
    Getstatus {
        /// `rule`.
        kind: client::RuleWord,
        /// The rule.
        name: String,
        /// The server.
        #[command(flatten)]
        host: client::Host,
    },
    /// Client: start a rule.
    Start {
        /// `rule`.
        kind: client::RuleWord,
        /// The rule.
        name: String,
        /// The server.
        #[command(flatten)]
        host: client::Host,
    },
    /// Client: stop a rule.
    Stop {
        /// `rule`.
        kind: client::RuleWord,
        /// The rule.
        name: String,
        /// The server.
        #[command(flatten)]
        host: client::Host,
    },
    /// Client: restart a rule.
    Restart {
        /// `rule`.
        kind: client::RuleWord,
        /// The rule.
        name: String,
        /// The server.
        #[command(flatten)]
        host: client::Host,
    },
    /// Client: import a ruleset (streams, tables and rules).
    Import {
        /// `ruleset`.
        kind: client::RulesetWord,
        /// The ruleset file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// The server.
        #[command(flatten)]
        host: client::Host,
    },
    /// Write sinks: scaffold a sink project (`new`), check a built component (`inspect`).
    Sink(sink::SinkArgs),
}

/// Options shared by commands that load rules.
#[derive(Debug, Args)]
pub struct RuleArgs {
    /// Rule files: an eKuiper rule (`{"id", "sql", "actions"}`; without `id`, the file name is
    /// the id), a JSON array of rules, a ruleset export (`{"streams", "rules"}`), or a folder of
    /// such `*.json` files. Several may be given: their rules run together.
    #[arg(required = true, num_args = 1..)]
    pub rule: Vec<PathBuf>,

    /// A file of `CREATE STREAM` statements (repeatable). Relative DATASOURCE paths start at
    /// its folder.
    #[arg(long = "streams", short = 's')]
    pub streams: Vec<PathBuf>,

    /// The plugins folder; sink components are `<dir>/sinks/<Name>.wasm`.
    #[arg(long, env = "OORT_PLUGINS", default_value = "plugins")]
    pub plugins: PathBuf,

    /// Only this rule of a ruleset.
    #[arg(long = "rule-id")]
    pub rule_id: Option<String>,

    /// Where compiled sink components are cached (default: $OORT_CACHE_DIR, else
    /// $XDG_CACHE_HOME/oort/components, else ~/.cache/oort/components).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,

    /// Compile sink components every time instead of caching them.
    #[arg(long)]
    pub no_cache: bool,

    /// Sink instances that may be alive at once (pooled memory); 0 allocates on demand.
    #[arg(long, default_value_t = 1000)]
    pub max_instances: u32,

    /// Linear memory one sink instance may use, in MiB.
    #[arg(long, default_value_t = 64)]
    pub memory_limit_mib: usize,

    /// Longest one call into a sink may take, in milliseconds, before it is interrupted.
    #[arg(long, default_value_t = 10_000)]
    pub call_timeout_ms: u64,

    /// Fuel (about one unit per wasm instruction) one call into a sink may burn before it is
    /// interrupted; 0 turns fuel metering off. Actions may lower or raise it with `fuel`.
    #[arg(long, default_value_t = crate::host::DEFAULT_FUEL_PER_CALL)]
    pub fuel: u64,

    /// Files one sink instance may hold open at once. Actions may change it with `maxOpenFiles`.
    #[arg(long, default_value_t = DescriptorLimits::default().open_files)]
    pub max_open_files: usize,

    /// TCP sockets one sink instance may hold at once. Actions may change it with `maxSockets`.
    #[arg(long, default_value_t = DescriptorLimits::default().sockets)]
    pub max_sockets: usize,

    /// `wasi:http` requests one sink instance may have in flight at once. Actions may change it
    /// with `maxHttpRequests`.
    #[arg(long, default_value_t = DescriptorLimits::default().http_requests)]
    pub max_http_requests: usize,

    /// Where actions with `enableCache` keep their disk caches
    /// (`<dir>/cache/<rule>/<action>.redb`), which survive a crash or a restart.
    #[arg(long, env = "OORT_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Rules with `qos` 1 or 2: forget their checkpoints (in the data directory) and read their
    /// sources from the start, e.g. after an input file was replaced.
    #[arg(long)]
    pub reset_checkpoints: bool,

    /// eKuiper's MQTT source configuration (YAML: a `default` section and named sections that
    /// streams select with CONF_KEY). Without it, mqtt streams use tcp://127.0.0.1:1883.
    #[arg(long, env = "OORT_MQTT_CONF")]
    pub mqtt_conf: Option<PathBuf>,

    /// eKuiper's redis source configuration, for redis lookup tables (YAML: a `default`
    /// section and named sections that tables select with CONF_KEY; `addr`, `username`,
    /// `password`, `datatype`, `lookup`). Without it, redis tables use 127.0.0.1:6379.
    #[arg(long, env = "OORT_REDIS_CONF")]
    pub redis_conf: Option<PathBuf>,
}

impl RuleArgs {
    /// The run configuration these options describe.
    pub fn config(&self) -> RunConfig {
        let cache_dir = if self.no_cache {
            None
        } else {
            self.cache_dir.clone().or_else(ArtifactCache::default_dir)
        };
        RunConfig {
            rule_paths: self.rule.clone(),
            stream_paths: self.streams.clone(),
            plugins_dir: self.plugins.clone(),
            only_rule: self.rule_id.clone(),
            host: HostConfig {
                cache_dir,
                max_instances: self.max_instances,
                max_memory_bytes: self.memory_limit_mib.saturating_mul(1 << 20),
                call_timeout: Duration::from_millis(self.call_timeout_ms.max(1)),
                fuel_per_call: self.fuel,
                epoch_deadlines: true,
                descriptors: DescriptorLimits {
                    open_files: self.max_open_files,
                    sockets: self.max_sockets,
                    http_requests: self.max_http_requests,
                },
            },
            clock: Clock::System,
            watch: false,
            mqtt_conf: self.mqtt_conf.clone(),
            redis_conf: self.redis_conf.clone(),
            data_dir: self.data_dir.clone(),
            progress_every: None,
            reset_checkpoints: self.reset_checkpoints,
            drain_timeout: None,
            replay: None,
        }
    }
}

/// Exit code of a run that finished but did not deliver every row.
pub const EXIT_UNDELIVERED: u8 = 3;

/// Exit code of a run in which a rule stopped by error: a source failed and the rule's
/// `restartStrategy` allowed no more restarts.
pub const EXIT_STOPPED_BY_ERROR: u8 = 4;

/// Raises the soft limit on open files to the hard one: every sink instance holds a few
/// (capped per instance), and one action running short must not starve the others.
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return;
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::debug!(
            "open file limit raised from {:?} to {:?}",
            limit.current,
            limit.maximum
        ),
        Err(e) => tracing::warn!(
            "cannot raise the open file limit from {:?}: {e}",
            limit.current
        ),
    }
}

/// Parses the arguments, sets up logging and runs the command.
pub fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    // `oort serve --config FILE`: the file's options come first, the command line's win.
    let command = Cli::command().mut_subcommand("serve", |serve| serve.args_override_self(true));
    let known: Vec<String> = command
        .find_subcommand("serve")
        .map(|serve| {
            serve
                .get_arguments()
                .filter_map(|a| a.get_long().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let args = match serve::expand_config(std::env::args_os().collect(), &known) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let cli = match Cli::from_arg_matches(&command.get_matches_from(args)) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    init_logging(&cli.log);
    raise_open_file_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::RunRule(args) => run_rule::run(args).await,
            Command::Validate(args) => validate::run(args).await,
            Command::Sink(args) => sink::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Create { what, host } => client::run(host, client::Call::Create(what)).await,
            Command::Show { what, host } => client::run(host, client::Call::Show(what)).await,
            Command::Describe { kind, name, host } => {
                client::run(host, client::Call::Describe(kind, name)).await
            }
            Command::DropIt { kind, name, host } => {
                client::run(host, client::Call::Drop(kind, name)).await
            }
            Command::Getstatus { name, host, .. } => {
                client::run(host, client::Call::Status(name)).await
            }
            Command::Start { name, host, .. } => {
                client::run(host, client::Call::Control("start", name)).await
            }
            Command::Stop { name, host, .. } => {
                client::run(host, client::Call::Control("stop", name)).await
            }
            Command::Restart { name, host, .. } => {
                client::run(host, client::Call::Control("restart", name)).await
            }
            Command::Import { file, host, .. } => {
                client::run(host, client::Call::Import(file)).await
            }
            Command::Functions => {
                print!("{}", crate::sql::functions::markdown_table());
                ExitCode::SUCCESS
            }
        }
    });
    // A source blocked reading stdin holds a thread that cannot be interrupted: do not wait for
    // it once the run is over.
    runtime.shutdown_timeout(Duration::from_millis(200));
    code
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        // The parser, Cranelift and wasmtime are chatty at debug: keep them quiet.
        .add_directive("sqlparser=warn".parse().expect("static directive"))
        .add_directive("cranelift_codegen=warn".parse().expect("static directive"))
        .add_directive("wasmtime_cranelift=warn".parse().expect("static directive"))
        // The MQTT source's markers unsubscribe from a filter never subscribed to, which an
        // MQTT 5 broker answers "no subscription existed": rumqttc would warn at each one.
        .add_directive(
            "rumqttc::v5::state=error"
                .parse()
                .expect("static directive"),
        );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
