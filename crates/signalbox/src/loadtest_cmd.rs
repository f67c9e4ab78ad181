//! `signalbox loadtest`: drives the `loadtest` crate and prints its report.

use std::path::PathBuf;

use anyhow::Context;
use loadtest::{Plan, Preset, Stop};

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("stop").args(["duration", "requests"])))]
pub struct LoadtestArgs {
    /// Target URL; must be http:// on this machine (loopback only). The generic scenario takes
    /// it repeated: several URLs on one server are measured in the same run, round-robin (each
    /// request takes the next URL, so all get an equal share under the same load), and the
    /// report adds each URL's figures to the totals. The other scenarios take one base URL.
    #[arg(long, required = true)]
    url: Vec<String>,
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// Extra request header, `Name: value`; repeatable.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// File whose contents are sent as the request body.
    #[arg(long, value_name = "FILE")]
    body: Option<PathBuf>,
    /// Concurrent keep-alive connections (1-1024) [default: the preset's].
    #[arg(long, short = 'c', conflicts_with = "preset")]
    connections: Option<usize>,
    /// The seed's load levels: light (10 connections for 60 s), normal (50, 300 s), heavy
    /// (100, 180 s) or stress (200, 60 s); --duration or --requests replace its duration.
    #[arg(long)]
    preset: Option<String>,
    /// Run for this long (e.g. 10s, at most 10m) [default: the preset's].
    #[arg(long)]
    duration: Option<String>,
    /// Send exactly this many requests in total.
    #[arg(long)]
    requests: Option<u64>,
    /// Per-request timeout; a timed-out request counts as a transport error.
    #[arg(long, default_value = "30s")]
    timeout: String,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// `generic` sends the same request over and over; `weber-freshness` takes --url as the
    /// server's base URL, ingests unique interactions at --rate events/s in the background and
    /// measures how soon after an ingest 2xx the updated profile is readable;
    /// `rate-limit-redis` takes --url as redis://HOST:PORT and runs rate-limit checks (the
    /// server's Lua script) from --connections tasks over --keys users for --duration;
    /// `llm-ingest` takes --url as the server's base URL and posts batches of --batch new
    /// model calls in --format for --duration, reporting calls stored per second;
    /// `feedback-ingest` takes --url as the server's base URL (an admin key: it sets the
    /// tenant's feedback mode to research), posts --batch-item realtime batches at --rate
    /// items/s and each queued tier's at --queued-rate items/s for --duration, and reports the
    /// realtime request latency and each queued tier's accept-to-processed time;
    /// `console` takes --url as the server's base URL, signs in to the web console with --key
    /// (default: the demo tenant's key in DATA_DIR/demo-tenant.json), follows the console's
    /// links from the overview and loads each page it finds with --requests (or for
    /// --duration) over --connections, reporting per page the median and p99 latency and the
    /// bytes of HTML, script and style, plain and compressed.
    #[arg(long, value_enum, default_value = "generic")]
    scenario: Scenario,
    /// weber-freshness: background events per second, all connections together.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// feedback-ingest: items per second of each queued tier (priority, standard, batch).
    #[arg(long, default_value_t = 50)]
    queued_rate: u64,
    /// weber-freshness, llm-ingest and feedback-ingest: events per request.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// rate-limit-redis: distinct keys the checks spread over.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// console: the API key to sign in with (default: the demo tenant's, from its file in the
    /// data directory).
    #[arg(long)]
    key: Option<String>,
    /// llm-ingest: the wire format.
    #[arg(long, value_enum, default_value = "otlp-protobuf")]
    format: crate::llm_load::IngestFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    Generic,
    WeberFreshness,
    RateLimitRedis,
    LlmIngest,
    FeedbackIngest,
    Console,
}

/// Runs the load test; `data_dir` is where the console scenario finds the demo tenant's key.
pub async fn run(args: LoadtestArgs, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let preset = args
        .preset
        .as_deref()
        .map(str::parse::<Preset>)
        .transpose()?;
    let connections = match (args.connections, preset) {
        (Some(n), _) => n,
        (None, Some(p)) => p.connections(),
        (None, None) => anyhow::bail!("connections: give --connections or --preset"),
    };
    let (first_url, extra_urls) = match args.url.split_first() {
        Some((first, rest)) => (first.as_str(), rest),
        None => anyhow::bail!("url: give at least one --url"),
    };
    if args.scenario != Scenario::Generic && !extra_urls.is_empty() {
        anyhow::bail!(
            "url: the {:?} scenario takes one --url (the server's base URL); only the generic scenario measures several",
            args.scenario
        );
    }
    if args.scenario == Scenario::RateLimitRedis {
        let duration = match (&args.duration, preset) {
            (Some(d), _) => loadtest::parse_duration(d)?,
            (None, Some(p)) => p.duration(),
            (None, None) => {
                anyhow::bail!("duration: the rate-limit-redis scenario runs for --duration")
            }
        };
        if !(1..=1024).contains(&connections) {
            anyhow::bail!("connections: must be 1 to 1024");
        }
        eprintln!(
            "loadtest: rate-limit checks on {} from {} tasks over {} keys for {}",
            first_url,
            connections,
            args.keys,
            humantime::format_duration(duration)
        );
        let report = crate::ratelimit_load::run(crate::ratelimit_load::RateLimitLoadPlan {
            redis_url: first_url.to_owned(),
            connections,
            duration,
            keys: args.keys,
        })
        .await?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let url = loadtest::parse_url(first_url)?;
    let stop = match (&args.duration, args.requests, preset) {
        (Some(d), _, _) => Stop::Duration(loadtest::parse_duration(d)?),
        (None, Some(n), _) => Stop::Requests(n),
        (None, None, Some(p)) => Stop::Duration(p.duration()),
        (None, None, None) => anyhow::bail!("duration: give --duration, --requests or --preset"),
    };
    let mut plan = Plan::new(url, connections, stop);
    plan.extra_urls = extra_urls
        .iter()
        .map(|u| loadtest::parse_url(u))
        .collect::<Result<_, _>>()?;
    plan.method = http::Method::from_bytes(args.method.as_bytes())
        .map_err(|_| anyhow::anyhow!("method: '{}' is not an HTTP method", args.method))?;
    plan.headers = args
        .headers
        .iter()
        .map(|h| loadtest::parse_header(h))
        .collect::<Result<_, _>>()?;
    if let Some(path) = &args.body {
        let body =
            std::fs::read(path).with_context(|| format!("body: cannot read {}", path.display()))?;
        plan.body = bytes::Bytes::from(body);
    }
    plan.request_timeout =
        loadtest::parse_duration(&args.timeout).map_err(|e| anyhow::anyhow!("timeout: {e}"))?;
    plan.validate()?;
    if args.scenario == Scenario::WeberFreshness {
        let Stop::Duration(duration) = plan.stop else {
            anyhow::bail!("duration: the weber-freshness scenario runs for --duration");
        };
        eprintln!(
            "loadtest: weber freshness against {} at {} events/s for {}",
            plan.url,
            args.rate,
            humantime::format_duration(duration)
        );
        let report = crate::freshness::run(crate::freshness::FreshnessPlan {
            base: plan.url,
            headers: plan.headers,
            connections: plan.connections,
            duration,
            rate: args.rate,
            batch: args.batch,
        })
        .await?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    if args.scenario == Scenario::FeedbackIngest {
        let Stop::Duration(duration) = plan.stop else {
            anyhow::bail!("duration: the feedback-ingest scenario runs for --duration");
        };
        eprintln!(
            "loadtest: feedback realtime at {} items/s ({} per request) and {} items/s per queued tier into {} for {}",
            args.rate,
            args.batch,
            args.queued_rate,
            plan.url,
            humantime::format_duration(duration)
        );
        let report = crate::feedback_load::run(crate::feedback_load::FeedbackLoadPlan {
            base: plan.url,
            headers: plan.headers,
            connections: plan.connections,
            duration,
            rate: args.rate,
            queued_rate: args.queued_rate,
            batch: args.batch,
        })
        .await?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    if args.scenario == Scenario::Console {
        let key = match &args.key {
            Some(key) => key.clone(),
            None => crate::console_load::demo_key(data_dir)?,
        };
        eprintln!(
            "loadtest: console pages of {} with {} connections",
            plan.url, plan.connections
        );
        let report = crate::console_load::run(crate::console_load::ConsoleLoadPlan {
            base: plan.url,
            key,
            connections: plan.connections,
            stop: plan.stop,
            request_timeout: plan.request_timeout,
        })
        .await?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    if args.scenario == Scenario::LlmIngest {
        let Stop::Duration(duration) = plan.stop else {
            anyhow::bail!("duration: the llm-ingest scenario runs for --duration");
        };
        eprintln!(
            "loadtest: {:?} ingest of {} calls per request into {} with {} connections for {}",
            args.format,
            args.batch,
            plan.url,
            plan.connections,
            humantime::format_duration(duration)
        );
        let report = crate::llm_load::run(crate::llm_load::IngestPlan {
            base: plan.url,
            headers: plan.headers,
            connections: plan.connections,
            duration,
            batch: args.batch,
            format: args.format,
        })
        .await?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let what = match plan.stop {
        Stop::Duration(d) => format!("for {}", humantime::format_duration(d)),
        Stop::Requests(n) => format!("{n} requests"),
    };
    let more = match plan.extra_urls.len() {
        0 => String::new(),
        n => format!(
            " and {n} more URL{} round-robin",
            if n == 1 { "" } else { "s" }
        ),
    };
    let level = preset.map_or(String::new(), |p| format!(" (preset {p})"));
    eprintln!(
        "loadtest: {} {}{more} with {} connections{level}, {what}",
        plan.method, plan.url, plan.connections
    );
    let report = loadtest::run(plan).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).context("encode report")?
        );
    } else {
        println!("{}", report.to_text().trim_end());
    }
    Ok(())
}
