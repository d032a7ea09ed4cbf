//! The `psmgate` command.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use psmgate::store::Store;
use psmgate_policy::Config;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "psmgate",
    version,
    about = "Privileged-session recording gateway"
)]
struct Cli {
    /// Configuration file (TOML). Without one, embedded defaults are used.
    #[arg(long, short, global = true, env = "PSMGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Data folder (overrides `gateway.data_dir`).
    #[arg(long, global = true, env = "PSMGATE_DATA")]
    data: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway: recover interrupted recordings, then serve the player and admin API.
    Serve {
        /// Also record a demo session in the background and print its player URL.
        #[arg(long)]
        demo: bool,
        /// Length of that demo session in seconds.
        #[arg(long, default_value_t = 30)]
        demo_seconds: u64,
        /// Admin listener address (overrides `gateway.admin_listen`).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Serve the admin listener without TLS (behind a TLS-terminating proxy, or tests).
        #[arg(long)]
        no_tls: bool,
        /// VNC listener address (overrides `gateway.vnc_listen`).
        #[arg(long)]
        vnc_listen: Option<std::net::SocketAddr>,
        /// RDP listener address (overrides `gateway.rdp_listen`).
        #[arg(long)]
        rdp_listen: Option<std::net::SocketAddr>,
    },
    /// Record a demo session of the synthetic desktop (real time) and print its id.
    Demo {
        /// Session length in seconds.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Screen width.
        #[arg(long, default_value_t = 1280)]
        width: u32,
        /// Screen height.
        #[arg(long, default_value_t = 720)]
        height: u32,
        /// Workload seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Verify a recording's hash chain, signatures and files. Exit 0 when intact, 1 otherwise.
    Verify {
        /// Session id, or a recording folder.
        recording: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List and inspect recordings.
    Recordings {
        #[command(subcommand)]
        command: RecordingsCommand,
    },
    /// Export a recording as a folder that plays from disk in a browser.
    Export {
        /// Session id.
        recording: String,
        /// Output folder (created; must be empty).
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a configuration file and print every problem found.
    CheckConfig {
        /// The file (default: --config).
        file: Option<PathBuf>,
    },
    /// Issue, list and revoke access tokens (the credential a user connects with).
    Access {
        #[command(subcommand)]
        command: AccessCommand,
    },
    /// Hash a user's password for `[users.<name>] password_hash` (reads the password from
    /// standard input, one line; prints the argon2id PHC string).
    HashPassword,
    /// Show the gateway signing key.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The web proxy's certificate authority (browsers trust it to accept intercepted pages).
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Apply retention: delete recordings past their retention unless on legal hold.
    Retention {
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Benchmark the recording pipeline on the standard workload.
    Bench {
        /// Encoders: svt-av1, rav1e or all.
        #[arg(long, default_value = "all")]
        encoder: String,
        /// Session minutes.
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Screen width.
        #[arg(long, default_value_t = 1920)]
        width: u32,
        /// Screen height.
        #[arg(long, default_value_t = 1080)]
        height: u32,
        /// Workload seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Frame-rate cap.
        #[arg(long, default_value_t = 10)]
        max_fps: u32,
        /// Quantizer 0..=63 (default: the backend's default).
        #[arg(long)]
        quantizer: Option<u8>,
        /// Encoder speed/preset (default: the backend's default).
        #[arg(long)]
        speed: Option<u8>,
        /// Where the benchmark recordings go.
        #[arg(long, default_value = "target/bench-recordings")]
        out: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Benchmark recordings search: latency of index queries (filters and transcript text) over
    /// a synthetic SQLite index.
    BenchSearch {
        /// Sessions in the index.
        #[arg(long, default_value_t = 100_000)]
        sessions: u64,
        /// Queries of each kind.
        #[arg(long, default_value_t = 1000)]
        queries: u32,
        /// Rows asked for per query (one page).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Generator seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Folder for the index database, kept afterwards (default: a temporary folder).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum RecordingsCommand {
    /// List recordings, newest first.
    List {
        /// Only this user.
        #[arg(long)]
        user: Option<String>,
        /// Only this target.
        #[arg(long)]
        target: Option<String>,
        /// Only recordings whose transcript holds all these words (typed text, titles, URLs,
        /// policy events; the last word also as a prefix; case and accents ignored).
        #[arg(long, value_name = "WORDS")]
        text: Option<String>,
        /// Only this protocol (vnc, rdp, web, demo).
        #[arg(long)]
        protocol: Option<String>,
        /// Only sessions started at or after this time (RFC 3339, e.g. 2026-11-22T10:00:00Z).
        #[arg(long, value_parser = parse_rfc3339)]
        since: Option<time::OffsetDateTime>,
        /// Only sessions started before this time (RFC 3339).
        #[arg(long, value_parser = parse_rfc3339)]
        until: Option<time::OffsetDateTime>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one recording's manifest.
    Show {
        /// Session id.
        recording: String,
    },
    /// Set or clear legal hold (held recordings are never deleted by retention).
    Hold {
        /// Session id.
        recording: String,
        /// Clear the hold instead of setting it.
        #[arg(long)]
        release: bool,
    },
}

#[derive(Subcommand, Debug)]
enum AccessCommand {
    /// Issue a token for a user and target; prints it (shown once).
    Grant {
        /// Gateway user (must exist in the config).
        #[arg(long)]
        user: String,
        /// Target (must exist, and a rule must allow the user).
        #[arg(long)]
        target: String,
        /// Valid for one session only.
        #[arg(long)]
        once: bool,
        /// Lifetime, e.g. 10m, 8h (default 8h, at most 30 days).
        #[arg(long, default_value = "8h")]
        ttl: String,
    },
    /// List grants (without their tokens).
    List,
    /// Revoke a grant by id.
    Revoke {
        /// Grant id (from `access list`).
        id: i64,
    },
    /// Ask for just-in-time access on a user's behalf (the rule decides: approved at once, or
    /// pending for an approver).
    Request {
        /// Gateway user.
        #[arg(long)]
        user: String,
        /// Target.
        #[arg(long)]
        target: String,
        /// Why (recorded).
        #[arg(long)]
        reason: String,
        /// How long the credential works, e.g. 30m, 2h (at most the rule's max_duration).
        #[arg(long, default_value = "1h")]
        duration: String,
    },
    /// List access requests (newest first).
    Requests {
        /// Only requests with this status (pending, approved, denied, cancelled, expired).
        #[arg(long)]
        status: Option<String>,
    },
    /// Approve a pending access request (issues the one-time credential; prints it).
    Approve {
        /// Request id.
        id: i64,
        /// Note recorded with the decision.
        #[arg(long)]
        note: Option<String>,
    },
    /// Deny a pending access request.
    Deny {
        /// Request id.
        id: i64,
        /// Note recorded with the decision.
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Print the key id, public key and key file.
    Show,
}

#[derive(Subcommand, Debug)]
enum CaCommand {
    /// Print the CA certificate (PEM) for browser and OS trust stores; generated if missing.
    Export,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("psmgate: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing() {
    // The proxy library's request spans carry full URLs (query strings can hold secrets), so
    // they stay off unless asked for by name; psmgate logs redacted URLs itself.
    let filter = tracing_subscriber::EnvFilter::try_from_env("PSMGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        .add_directive(
            "hudsucker=warn"
                .parse()
                .expect("a constant, valid directive"),
        );
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn load_config(path: Option<&Path>) -> Result<Config> {
    match path {
        Some(p) => Config::load(p).map_err(|e| anyhow::anyhow!("{e}")),
        None => Ok(Config::default()),
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let config = match &cli.command {
        Command::CheckConfig { file } => {
            let Some(path) = file.as_deref().or(cli.config.as_deref()) else {
                bail!("check-config needs a file (argument or --config)");
            };
            return Ok(
                match Config::load(path).and_then(|c| c.check_secrets().map(|_| c)) {
                    Ok(c) => {
                        println!("{}: ok (policy {})", path.display(), c.policy_version());
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        ExitCode::from(1)
                    }
                },
            );
        }
        _ => load_config(cli.config.as_deref())?,
    };
    let data = cli.data.as_deref();
    let cli_config = cli.config.clone();
    match cli.command {
        Command::CheckConfig { .. } => unreachable!("handled above"),
        Command::Serve {
            demo,
            demo_seconds,
            listen,
            no_tls,
            vnc_listen,
            rdp_listen,
        } => {
            let mut config = config;
            let file_gateway = config.gateway.clone();
            if let Some(l) = vnc_listen {
                config.gateway.vnc_listen = l;
            }
            if let Some(l) = rdp_listen {
                config.gateway.rdp_listen = l;
            }
            if let Some(l) = listen {
                config.gateway.admin_listen = l;
            }
            if no_tls {
                config.gateway.admin_tls = false;
            }
            let path = cli_config.clone();
            let policy = psmgate::policy_cell::PolicyCell::with_file_gateway(
                config.clone(),
                path,
                file_gateway,
            );
            serve(config, policy, data, demo, demo_seconds)
        }
        Command::Demo {
            seconds,
            width,
            height,
            seed,
        } => {
            let store = Store::open(&config, data)?;
            store.recover()?;
            let opts = psmgate::demo::DemoOptions {
                seconds,
                width,
                height,
                seed,
            };
            let m = psmgate::demo::run(&store, &config, &opts)?;
            println!("session {}", m.session_id);
            println!(
                "recorded {:.1} s, state {}, {} bytes of video",
                m.duration_ms.unwrap_or(0) as f64 / 1000.0,
                m.state,
                m.segment_bytes()
            );
            let scheme = if config.gateway.admin_tls {
                "https"
            } else {
                "http"
            };
            println!(
                "watch it: run `psmgate serve` and open {scheme}://{}/login?token={}&next=/player/%3Fid%3D{}",
                config.gateway.admin_listen,
                store.admin_token()?,
                m.session_id
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { recording, json } => verify(&config, data, &recording, json),
        Command::Recordings { command } => recordings(&config, data, command),
        Command::Export { recording, out } => {
            let store = Store::open(&config, data)?;
            let dir = store.resolve_recording(&recording)?;
            let s = psmgate::export::export(&store, &dir, &out)?;
            println!(
                "exported {} files to {} ({} bytes of video); open {}",
                s.files.len(),
                out.display(),
                s.mp4_bytes,
                out.join("index.html").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys {
            command: KeysCommand::Show,
        } => {
            let store = Store::open(&config, data)?;
            println!("key id:     {}", store.key.key_id());
            println!(
                "public key: {} (Ed25519, base64)",
                store.key.public_key_base64()
            );
            println!(
                "key file:   {}",
                store
                    .data_dir
                    .join("keys")
                    .join("gateway.ed25519")
                    .display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Retention { dry_run } => retention(&config, data, dry_run),
        Command::Access { command } => access(&config, data, command),
        Command::HashPassword => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            let password = line.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                bail!("empty password on standard input");
            }
            println!("{}", psmgate_policy::password::hash_password(password)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Ca {
            command: CaCommand::Export,
        } => {
            let store = Store::open(&config, data)?;
            let ca = psmgate::web::ca::WebCa::load_or_generate(&store.data_dir.join("tls"))?;
            print!("{}", ca.pem());
            eprintln!("SHA-256 fingerprint: {}", ca.fingerprint());
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchSearch {
            sessions,
            queries,
            limit,
            seed,
            dir,
            json,
        } => bench_search(
            &psmgate::bench::search::SearchBenchOptions {
                sessions,
                queries,
                limit,
                seed,
                dir,
            },
            json,
        ),
        Command::Bench {
            encoder,
            minutes,
            width,
            height,
            seed,
            max_fps,
            quantizer,
            speed,
            out,
            json,
        } => {
            let encoders = match encoder.as_str() {
                "all" => psmgate_codecs::encoder::available(),
                "svt-av1" => vec![psmgate_codecs::encoder::EncoderKind::SvtAv1],
                "rav1e" => vec![psmgate_codecs::encoder::EncoderKind::Rav1e],
                other => bail!("unknown encoder {other:?} (svt-av1, rav1e, all)"),
            };
            let opts = psmgate::bench::BenchOptions {
                encoders,
                minutes,
                width,
                height,
                seed,
                max_fps,
                quantizer,
                speed,
                out,
                quality_every_s: 10,
            };
            let results = psmgate::bench::run(&opts, &[])?;
            if json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            } else {
                println!(
                    "standard workload, {width}x{height}, {minutes} session minutes, seed {seed}, max {max_fps} fps, quantizer {}, speed {}",
                    quantizer.map_or("default".to_string(), |q| q.to_string()),
                    speed.map_or("default".to_string(), |s| s.to_string())
                );
                println!(
                    "{:<8} {:>4} {:>5} {:>7} {:>7} {:>9} {:>10} {:>8} {:>11} {:>8} {:>8} {:>7} {:>9} {:>9} {:>9}",
                    "encoder",
                    "q",
                    "speed",
                    "frames",
                    "bridge",
                    "cpu s",
                    "cpu s/min",
                    "core %",
                    "MB/hour",
                    "PSNR dB",
                    "min dB",
                    "SSIM",
                    "lag p99",
                    "lag max",
                    "1st frame"
                );
                for r in &results {
                    println!("{:<8} {:>4} {:>5} {:>7} {:>7} {:>9.1} {:>10.2} {:>8.2} {:>11.2} {:>8.2} {:>8.2} {:>7.4} {:>9} {:>9} {:>9}", r.encoder, r.quantizer, r.speed, r.frames, r.bridge_frames, r.cpu_seconds, r.cpu_s_per_session_min, r.core_share_percent, r.bytes_per_hour / 1e6, r.psnr_db, r.psnr_min_db, r.ssim, r.lag_p99_ms, r.worst_lag_ms, r.first_frame_ms);
                    let phases: Vec<String> = r
                        .video_bytes_by_phase
                        .iter()
                        .map(|(k, v)| format!("{k} {:.2} MB", *v as f64 / 1e6))
                        .collect();
                    println!("         video bytes by phase: {}", phases.join(", "));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn bench_search(opts: &psmgate::bench::search::SearchBenchOptions, json: bool) -> Result<ExitCode> {
    let r = psmgate::bench::search::run(opts)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "recordings search over {} sessions (SQLite, FTS5), {} queries per kind, pages of {} rows, seed {}",
        r.sessions, r.queries_per_kind, r.limit, r.seed
    );
    println!(
        "insert: {:.1} s, {:.0} sessions/s (row, then text: two transactions each); text {:.1} MB; index on disk {:.1} MB",
        r.insert_seconds,
        r.sessions_per_second,
        r.text_bytes as f64 / 1e6,
        r.index_bytes as f64 / 1e6
    );
    println!(
        "{:<15} {:>8} {:>8} {:>8} {:>6} {:>9}  example",
        "kind", "p50 ms", "p99 ms", "max ms", "rows", "matches"
    );
    for k in &r.kinds {
        println!(
            "{:<15} {:>8.2} {:>8.2} {:>8.2} {:>6.1} {:>9.0}  {}",
            k.kind, k.p50_ms, k.p99_ms, k.max_ms, k.rows_mean, k.matches_mean, k.example
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn serve(
    config: Config,
    policy: std::sync::Arc<psmgate::policy_cell::PolicyCell>,
    data: Option<&Path>,
    demo: bool,
    demo_seconds: u64,
) -> Result<ExitCode> {
    let store = Store::open(&config, data)?;
    let recovered = store.recover()?;
    if recovered > 0 {
        tracing::warn!(recovered, "sealed interrupted recordings as `interrupted`");
    }
    let token = store.admin_token()?;
    let listen = config.gateway.admin_listen;
    let tls = if config.gateway.admin_tls {
        let (tls, fp) = psmgate::tls::load_or_generate(&store.data_dir.join("tls"))?;
        tracing::info!(sha256 = %fp, "admin certificate");
        Some(tls)
    } else {
        None
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding admin listener {listen}"))?;
        let addr = listener.local_addr()?;
        let base = format!("{scheme}://{addr}");
        println!("psmgate serving the player and admin API on {base}");
        println!("open {base}/login?token={token}");
        // One connection to the token database for the whole process (see
        // psmgate_storage::tokens on why a process must not open it twice).
        let tokens = std::sync::Arc::new(store.tokens()?);
        let state = std::sync::Arc::new(psmgate::admin::AdminState::new(
            store.clone(),
            token.clone(),
            policy.clone(),
            tokens.clone(),
        ));
        // SIGHUP reloads the policy (as `POST /api/config/reload` does): live sessions keep the
        // policy they started with; an invalid file is rejected and the policy in force stays.
        {
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("installing the SIGHUP handler")?;
            let (store, policy) = (store.clone(), policy.clone());
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let (store, policy) = (store.clone(), policy.clone());
                    let _ = tokio::task::spawn_blocking(move || {
                        psmgate::admin::reload_policy(&store, &policy, "sighup")
                    })
                    .await;
                }
            });
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(psmgate::admin::serve(listener, state, tls, stop_rx.clone()));
        // The audit log goes to the `[[siem]]` sinks of the policy in force (followed on reload).
        psmgate::siem::spawn(&store, policy.clone(), stop_rx.clone());
        // The VNC gateway runs when the policy has VNC targets.
        let vnc_targets = config
            .targets
            .values()
            .filter(|t| t.protocol == psmgate_policy::Protocol::Vnc)
            .count();
        if vnc_targets > 0 {
            // Everything a session needs is open before the port is.
            // VeNCrypt presents the gateway certificate (the admin listener's, generated on
            // first start).
            let vnc_tls = if config.gateway.vnc_tls == psmgate_policy::VncTls::Off {
                None
            } else {
                let (tls, fp) = psmgate::tls::load_or_generate(&store.data_dir.join("tls"))?;
                tracing::info!(sha256 = %fp, mode = ?config.gateway.vnc_tls, "VNC viewers get TLS with the gateway certificate");
                Some(psmgate::vnc_gateway::viewer_tls(&tls))
            };
            let gw = std::sync::Arc::new(psmgate::vnc_gateway::VncGateway {
                policy: policy.clone(),
                store: store.clone(),
                auth: psmgate::access::TokenAuthenticator::new(
                    tokens.clone(),
                    psmgate::access::FailureLimiter::default(),
                ),
                tls: vnc_tls,
            });
            let vnc_addr = config.gateway.vnc_listen;
            let vnc = tokio::net::TcpListener::bind(vnc_addr)
                .await
                .with_context(|| format!("binding VNC listener {vnc_addr}"))?;
            println!("psmgate VNC gateway on {} ({vnc_targets} targets)", vnc.local_addr()?);
            tokio::spawn(psmgate::vnc_gateway::serve(vnc, gw, stop_rx.clone()));
        }
        // The RDP gateway runs when the policy has RDP targets. Clients get TLS with the gateway
        // certificate; CredSSP binds to its public key.
        let rdp_targets = config
            .targets
            .values()
            .filter(|t| t.protocol == psmgate_policy::Protocol::Rdp)
            .count();
        if rdp_targets > 0 {
            let tls_dir = store.data_dir.join("tls");
            let (tls, fp) = psmgate::tls::load_or_generate_with(&tls_dir, &[&rustls::version::TLS12])?;
            let cert = psmgate::tls::leaf_certificate(&tls_dir)?;
            let gw = std::sync::Arc::new(psmgate::rdp_gateway::RdpGateway {
                policy: policy.clone(),
                store: store.clone(),
                auth: std::sync::Arc::new(psmgate::access::TokenAuthenticator::new(
                    tokens.clone(),
                    psmgate::access::FailureLimiter::default(),
                )),
                tls: psmgate::rdp_gateway::client_tls(&tls),
                public_key: psmgate::tls::subject_public_key(cert.as_ref())?,
            });
            let rdp_addr = config.gateway.rdp_listen;
            let rdp = tokio::net::TcpListener::bind(rdp_addr)
                .await
                .with_context(|| format!("binding RDP listener {rdp_addr}"))?;
            println!("psmgate RDP gateway on {} ({rdp_targets} targets; certificate sha256 {fp})", rdp.local_addr()?);
            tokio::spawn(psmgate::rdp_gateway::serve(rdp, gw, stop_rx.clone()));
        }
        // The web proxy runs when the policy has web targets.
        let web_targets = config
            .targets
            .values()
            .filter(|t| t.protocol == psmgate_policy::Protocol::Web)
            .count();
        let mut web_task = None;
        if web_targets > 0 {
            let ca = psmgate::web::ca::WebCa::load_or_generate(&store.data_dir.join("tls"))?;
            let fp = ca.fingerprint().to_string();
            let gw = std::sync::Arc::new(psmgate::web::WebGateway::new(
                policy.clone(),
                store.clone(),
                std::sync::Arc::new(psmgate::access::TokenAuthenticator::new(
                    tokens.clone(),
                    psmgate::access::FailureLimiter::default(),
                )),
            ));
            let web = psmgate::web::bind(config.gateway.web_listen).await?;
            println!("psmgate web proxy on {} ({web_targets} targets; CA sha256 {fp}; `psmgate ca export` prints it)", web.local_addr()?);
            web_task = Some(tokio::spawn(psmgate::web::serve(web, gw, ca, stop_rx.clone())));
        }
        // Retention runs at start and then hourly; each deletion is audited first.
        {
            let store = store.clone();
            let config = config.clone();
            tokio::spawn(async move {
                loop {
                    let (store, config) = (store.clone(), config.clone());
                    let r = tokio::task::spawn_blocking(move || apply_retention(&store, &config)).await;
                    match r {
                        Ok(Ok(report)) if !report.deleted.is_empty() || !report.failed.is_empty() => {
                            tracing::info!(deleted = report.deleted.len(), held = report.held.len(), failed = report.failed.len(), "retention applied");
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "retention failed"),
                        Err(e) => tracing::error!(error = %e, "retention task failed"),
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                }
            });
        }
        if demo {
            let store = store.clone();
            let config = config.clone();
            let base = base.clone();
            let token = token.clone();
            tokio::task::spawn_blocking(move || {
                let opts = psmgate::demo::DemoOptions { seconds: demo_seconds, ..Default::default() };
                println!("recording a {demo_seconds} s demo session…");
                match psmgate::demo::run(&store, &config, &opts) {
                    Ok(m) => println!("demo recorded; watch it: {base}/login?token={token}&next=/player/%3Fid%3D{}", m.session_id),
                    Err(e) => eprintln!("psmgate: demo failed: {e:#}"),
                }
            });
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        // The web proxy ending on its own (it cannot serve) stops the gateway with its error:
        // a gateway that silently stopped recording web sessions must not look healthy.
        let web_ended = async {
            match web_task.as_mut() {
                Some(t) => t.await,
                None => std::future::pending().await,
            }
        };
        let web_failure = tokio::select! {
            r = tokio::signal::ctrl_c() => { r.context("waiting for Ctrl-C")?; None }
            _ = term.recv() => None,
            r = web_ended => Some(match r {
                Ok(Ok(())) => anyhow::anyhow!("the web proxy stopped"),
                Ok(Err(e)) => e,
                Err(e) => anyhow::anyhow!("the web proxy task failed: {e}"),
            }),
        };
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        if let Some(e) = web_failure {
            let _ = server.await;
            return Err(e.context("web proxy"));
        }
        if let Some(web) = web_task {
            match web.await {
                Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "web proxy"),
                Err(e) => tracing::error!(error = %e, "web proxy task"),
                Ok(Ok(())) => {}
            }
        }
        let _ = server.await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn verify(config: &Config, data: Option<&Path>, recording: &str, json: bool) -> Result<ExitCode> {
    let store = Store::open(config, data)?;
    // A recording folder anywhere (an exported or copied recording), or one in the store.
    let folder = Path::new(recording);
    let (backend, dir): (
        std::sync::Arc<dyn psmgate_storage::backend::Backend>,
        String,
    ) = if folder.join("chain.jsonl").is_file() {
        let folder = folder
            .canonicalize()
            .with_context(|| format!("resolving {recording}"))?;
        let parent = folder.parent().context("recording folder has no parent")?;
        let name = folder
            .file_name()
            .and_then(|n| n.to_str())
            .context("recording folder name")?;
        (
            std::sync::Arc::new(psmgate_storage::backend::LocalBackend::new(parent)?),
            name.to_string(),
        )
    } else {
        (store.backend.clone(), store.resolve_recording(recording)?)
    };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("verifying {bar:40} {bytes}/{total_bytes} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let report = psmgate_storage::verify::verify(
        backend.as_ref(),
        &dir,
        Some(store.key.verifying_key()),
        &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    );
    bar.finish_and_clear();
    let ok = report.ok;
    use psmgate_storage::index::{Integrity, IntegrityStatus};
    let integrity = Integrity {
        status: if ok {
            IntegrityStatus::Ok
        } else {
            IntegrityStatus::Failed
        },
        message: report.problems.first().map(|p| p.message.clone()),
        verified_at: Some(time::OffsetDateTime::now_utc()),
    };
    let id = psmgate_storage::layout::session_id_of(&dir).to_string();
    if let Err(e) = store.index.set_integrity(&id, &integrity) {
        tracing::debug!(error = %e, "could not store the verification result in the index");
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&psmgate::report::verify_json(&report))?
        );
    } else {
        print!("{}", psmgate::report::verify_text(&report));
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn recordings(
    config: &Config,
    data: Option<&Path>,
    command: RecordingsCommand,
) -> Result<ExitCode> {
    let store = Store::open(config, data)?;
    match command {
        RecordingsCommand::List {
            user,
            target,
            text,
            protocol,
            since,
            until,
            limit,
            json,
        } => {
            if text.is_some() {
                // Recordings not made by a gateway session (`psmgate demo`) or made before
                // search existed are made searchable first.
                psmgate_storage::search::index_missing(
                    store.backend.as_ref(),
                    store.index.as_ref(),
                )?;
            }
            let filter = psmgate_storage::index::ListFilter {
                user,
                target,
                text,
                protocol,
                since,
                until,
                limit: Some(limit),
                ..Default::default()
            };
            let rows = store.index.list(&filter)?;
            if json {
                let rows: Vec<_> = rows.iter().map(psmgate::report::row_json).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<36}  {:<20}  {:<10} {:<16} {:<6} {:>9} {:<11} integrity",
                    "id", "started (UTC)", "user", "target", "proto", "duration", "state"
                );
                for r in rows {
                    println!(
                        "{:<36}  {:<20}  {:<10} {:<16} {:<6} {:>8.1}s {:<11} {}",
                        r.id,
                        psmgate::report::short_time(r.started_at),
                        r.user,
                        r.target,
                        r.protocol,
                        r.duration_ms.unwrap_or(0) as f64 / 1000.0,
                        r.state.as_str(),
                        r.integrity.status.as_str()
                    );
                }
            }
        }
        RecordingsCommand::Show { recording } => {
            let dir = store.resolve_recording(&recording)?;
            let backend = store.backend.as_ref();
            let text = backend
                .read(&format!("{dir}/manifest.json"))
                .or_else(|_| backend.read(&format!("{dir}/manifest.partial.json")))
                .with_context(|| format!("{dir} has no manifest"))?;
            println!(
                "folder: {}",
                store.data_dir.join("recordings").join(&dir).display()
            );
            println!("{}", String::from_utf8_lossy(&text));
        }
        RecordingsCommand::Hold { recording, release } => {
            let dir = store.resolve_recording(&recording)?;
            let id = psmgate_storage::layout::session_id_of(&dir).to_string();
            let mut audit = store.audit.lock();
            psmgate_storage::retention::set_legal_hold(
                store.index.as_ref(),
                &mut audit,
                &id,
                !release,
                "cli",
            )?;
            println!(
                "{id}: legal hold {}",
                if release { "released" } else { "set" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A command-line time: RFC 3339.
fn parse_rfc3339(s: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{e} (expected RFC 3339, e.g. 2026-11-22T10:00:00Z)"))
}

/// Fails, saying where to add it, unless `user` and `target` are in the config.
fn known_user_and_target(config: &Config, user: &str, target: &str) -> Result<()> {
    if !config.users.contains_key(user) {
        bail!("unknown user {user:?}: add it under [users] in the config");
    }
    if config.target(target).is_none() {
        bail!("unknown target {target:?}: add it under [targets] in the config");
    }
    Ok(())
}

fn access(config: &Config, data: Option<&Path>, command: AccessCommand) -> Result<ExitCode> {
    let store = Store::open(config, data)?;
    let tokens = store.tokens()?;
    let now = time::OffsetDateTime::now_utc();
    match command {
        AccessCommand::Grant {
            user,
            target,
            once,
            ttl,
        } => {
            known_user_and_target(config, &user, &target)?;
            let decision = config.is_allowed(&user, &target);
            if !decision.allowed {
                bail!("no rule allows {user} to reach {target}");
            }
            let ttl =
                psmgate_policy::Duration::parse(&ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
            let grant = tokens.grant(&user, &target, once, ttl.get(), now)?;
            let mut audit = store.audit.lock();
            audit.append(
                now,
                "access_grant",
                "",
                "",
                "cli",
                &format!(
                    "grant {} user={user} target={target} once={once} expires={}",
                    grant.id,
                    psmgate::report::rfc3339(grant.expires_at)
                ),
            )?;
            println!("{}", grant.token.expose());
            eprintln!(
                "grant {} for {user} → {target}{}, expires {} (UTC)",
                grant.id,
                if once { ", one session" } else { "" },
                psmgate::report::short_time(grant.expires_at)
            );
            if config
                .target(&target)
                .is_some_and(|t| t.protocol == psmgate_policy::Protocol::Rdp)
            {
                eprintln!(
                    "RDP: sign in to the gateway as {user}@{target} with the token as the password"
                );
            }
            if config
                .target(&target)
                .is_some_and(|t| t.protocol == psmgate_policy::Protocol::Web)
            {
                eprintln!(
                    "Web: set the browser's proxy to {} and sign in to it as {user}@{target} with the token as the password",
                    config.gateway.web_listen
                );
            }
        }
        AccessCommand::List => {
            println!(
                "{:>5}  {:<12} {:<16} {:<5} {:<20} {:>5}  status",
                "id", "user", "target", "once", "expires (UTC)", "uses"
            );
            for g in tokens.list()? {
                println!(
                    "{:>5}  {:<12} {:<16} {:<5} {:<20} {:>5}  {}",
                    g.id,
                    g.user,
                    g.target,
                    g.once,
                    psmgate::report::short_time(g.expires_at),
                    g.use_count,
                    g.status(now).describe()
                );
            }
        }
        AccessCommand::Request {
            user,
            target,
            reason,
            duration,
        } => {
            known_user_and_target(config, &user, &target)?;
            let Some(policy) = config.access_policy(&user, &target, now) else {
                bail!("no rule lets {user} connect to {target} at this time");
            };
            let duration = psmgate_policy::Duration::parse(&duration)
                .map_err(|e| anyhow::anyhow!("--duration: {e}"))?
                .get();
            if duration > policy.max_duration {
                bail!(
                    "--duration is longer than rule {}'s max_duration ({} s)",
                    policy.rule_id,
                    policy.max_duration.as_secs()
                );
            }
            let r =
                tokens.create_request(&user, &target, &reason, duration, &policy.rule_id, now)?;
            psmgate::supervisor::audit_action(
                &store,
                "cli",
                psmgate_storage::audit::ACTION_ACCESS_REQUESTED,
                &target,
                &format!(
                    "request {} for {user}, {} s (rule {}): {reason}",
                    r.id,
                    duration.as_secs(),
                    policy.rule_id
                ),
            );
            if policy.approval == psmgate_policy::Approval::Auto {
                let approver = format!("policy:{}", policy.rule_id);
                let (r, g) = tokens.approve_request(
                    r.id,
                    &approver,
                    Some("approved by policy"),
                    true,
                    now,
                )?;
                psmgate::supervisor::audit_action(
                    &store,
                    &approver,
                    psmgate_storage::audit::ACTION_GRANT_ISSUED,
                    &target,
                    &format!("request {}: grant {} for {user}", r.id, g.id),
                );
                println!("{}", g.token.expose());
                eprintln!(
                    "request {} approved by rule {}; credential valid once until {} (UTC)",
                    r.id,
                    policy.rule_id,
                    psmgate::report::short_time(g.expires_at)
                );
            } else {
                println!(
                    "request {} pending approval (rule {})",
                    r.id, policy.rule_id
                );
            }
        }
        AccessCommand::Requests { status } => {
            let status = match status {
                Some(s) => Some(
                    psmgate_storage::requests::RequestStatus::parse(&s)
                        .ok_or_else(|| anyhow::anyhow!("unknown status {s:?}"))?,
                ),
                None => None,
            };
            println!(
                "{:>5}  {:<20} {:<12} {:<16} {:>6}  {:<10} reason",
                "id", "created (UTC)", "user", "target", "min", "status"
            );
            for r in tokens.list_requests(&psmgate_storage::requests::RequestFilter {
                status,
                ..Default::default()
            })? {
                println!(
                    "{:>5}  {:<20} {:<12} {:<16} {:>6}  {:<10} {}",
                    r.id,
                    psmgate::report::short_time(r.created_at),
                    r.user,
                    r.target,
                    r.duration.as_secs() / 60,
                    r.status.as_str(),
                    r.reason
                );
            }
        }
        AccessCommand::Approve { id, note } => {
            let (r, g) = tokens.approve_request(id, "cli", note.as_deref(), true, now)?;
            psmgate::supervisor::audit_action(
                &store,
                "cli",
                psmgate_storage::audit::ACTION_ACCESS_APPROVED,
                &r.target,
                &format!("request {} of {}: grant {}", r.id, r.user, g.id),
            );
            println!("{}", g.token.expose());
            eprintln!(
                "request {id} approved: {} → {}, valid once until {} (UTC); give the token to {}",
                r.user,
                r.target,
                psmgate::report::short_time(g.expires_at),
                r.user
            );
        }
        AccessCommand::Deny { id, note } => {
            let r = tokens.deny_request(id, "cli", note.as_deref(), now)?;
            psmgate::supervisor::audit_action(
                &store,
                "cli",
                psmgate_storage::audit::ACTION_ACCESS_DENIED,
                &r.target,
                &format!("request {} of {}", r.id, r.user),
            );
            println!("request {id} denied");
        }
        AccessCommand::Revoke { id } => {
            if !tokens.revoke(id, now)? {
                bail!("no grant {id}");
            }
            let mut audit = store.audit.lock();
            audit.append(now, "access_revoke", "", "", "cli", &format!("grant {id}"))?;
            println!("grant {id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Applies retention once: recordings past their days are deleted unless on legal hold.
fn apply_retention(
    store: &Store,
    config: &Config,
) -> Result<psmgate_storage::retention::RetentionReport> {
    let mut audit = store.audit.lock();
    Ok(psmgate_storage::retention::apply_retention(
        store.backend.as_ref(),
        store.index.as_ref(),
        time::OffsetDateTime::now_utc(),
        &|row| retention_days(config, row),
        &mut audit,
    )?)
}

/// Days a recording is kept by policy (None: forever).
fn retention_days(config: &Config, row: &psmgate_storage::index::SessionRow) -> Option<u32> {
    let days = config
        .retention_days(&row.target)
        .unwrap_or(config.retention.days);
    (days > 0).then_some(days)
}

fn retention(config: &Config, data: Option<&Path>, dry_run: bool) -> Result<ExitCode> {
    let store = Store::open(config, data)?;
    if dry_run {
        let now = time::OffsetDateTime::now_utc();
        let rows = store
            .index
            .list(&psmgate_storage::index::ListFilter::default())?;
        for row in rows {
            if let Some(days) = retention_days(config, &row) {
                if psmgate_storage::retention::is_expired(&row, days, now) {
                    let hold = if row.legal_hold {
                        " (legal hold: kept)"
                    } else {
                        ""
                    };
                    println!("would delete {} ({} days){hold}", row.id, days);
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let report = apply_retention(&store, config)?;
    for id in &report.deleted {
        println!("deleted {id}");
    }
    for id in &report.held {
        println!("kept {id} (legal hold)");
    }
    for (id, why) in &report.failed {
        eprintln!("could not delete {id}: {why}");
    }
    println!(
        "{} deleted, {} held, {} failed",
        report.deleted.len(),
        report.held.len(),
        report.failed.len()
    );
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
