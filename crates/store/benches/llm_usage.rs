//! LLM usage storage speed: usage queries over a large stored history, and batch ingest.
//!
//! Loads `LLM_BENCH_CALLS` (default 10,000,000) model calls of one tenant, spread evenly over
//! 365 days, 5 providers, 40 models, 4 operations and 100,000 conversations, straight into the
//! raw table with one `INSERT … SELECT` per million rows, then builds the daily rollups from
//! them with `INSERT … SELECT … GROUP BY`. A check compares, for one day, the rollups with the
//! raw rows read through `llm_usage` (so the generated rollups are what ingest would have
//! written). Then it times 1,000 usage queries of seven shapes in turn and prints p50 / p99 per
//! shape, and `insert_llm_batch` throughput for batches of 1,000 fresh and all-duplicate calls.
//!
//! ```text
//! cargo bench -p store --bench llm_usage                          # SQLite, a temporary file
//! LLM_BENCH_BACKEND=postgres cargo bench -p store --bench llm_usage   # a private PG schema
//! LLM_BENCH_SQLITE_DIR=/some/dir cargo bench -p store --bench llm_usage  # keep and reuse the file
//! ```
//!
//! `LLM_BENCH_CALLS` and `LLM_BENCH_QUERIES` (default 1,000) change the sizes.

use std::time::{Duration, Instant};

use llm::usage::Dimension;
use llm::{CallStatus, Cost, ModelCall, Operation, TokenCounts};
use sqlx::{Connection, Executor, Row};
use store::testing::TestStore;
use store::{Backend, Store, StoreOptions, Tier};

const DAY_MS: i64 = 86_400_000;
/// 2025-12-01T00:00:00Z: the history runs 365 days from here.
const T0: i64 = 1_764_547_200_000;
const DAYS: i64 = 365;
const MODELS: usize = 40;
const OPERATIONS: [Operation; 4] = [
    Operation::Chat,
    Operation::Embeddings,
    Operation::ExecuteTool,
    Operation::InvokeAgent,
];
const PROVIDERS: [&str; 5] = ["openai", "anthropic", "google", "mistral", "bedrock"];
/// Rows per generator statement.
const LOAD_STEP: i64 = 1_000_000;

fn model_name(m: usize) -> String {
    format!("model-{m:02}")
}

/// Per-model prices in picodollars per token; the last model has no price (unpriced calls).
fn model_price(m: usize) -> Option<(i64, i64, i64, i64)> {
    (m != MODELS - 1).then(|| {
        let input = 150_000 + 100_000 * m as i64;
        (input, input * 4, input / 10, input * 5 / 4)
    })
}

/// A latency a model call could have: per-model base of 0.2 to 4 s, times a spread of 0.5x to
/// 3x (skewed towards the low end), deterministic in `k`.
fn duration_us(m: usize, k: u64) -> u64 {
    let base = 200_000 + (m as u64 % 20) * 190_000;
    let u = (k % 1000) as f64 / 1000.0;
    (base as f64 * (0.5 + 2.5 * u * u * u)) as u64
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Fixture {
    store: Store,
    options: StoreOptions,
    test_store: Option<TestStore>,
}

async fn open(backend: Backend) -> Fixture {
    match (backend, std::env::var("LLM_BENCH_SQLITE_DIR")) {
        (Backend::Sqlite, Ok(dir)) => {
            let options = StoreOptions::sqlite_in(dir.as_ref());
            let store = Store::connect(&options)
                .await
                .expect("open the bench SQLite file");
            Fixture {
                store,
                options,
                test_store: None,
            }
        }
        _ => {
            let t = TestStore::new(backend).await;
            Fixture {
                store: t.store.clone(),
                options: t.options.clone(),
                test_store: Some(t),
            }
        }
    }
}

async fn raw_connection(options: &StoreOptions) -> sqlx::AnyConnection {
    let mut conn = sqlx::AnyConnection::connect(&options.url)
        .await
        .expect("raw connection for the generator");
    if let Some(schema) = &options.schema {
        conn.execute(sqlx::raw_sql(&format!("SET search_path TO {schema}")))
            .await
            .expect("schema");
    }
    conn
}

/// Loads `calls` generated calls for `tenant` and their rollups.
async fn load(backend: Backend, options: &StoreOptions, tenant: &str, calls: i64) {
    let mut conn = raw_connection(options).await;
    // Lookup tables the generator joins: models with their provider and prices, operations,
    // and 1,000 latencies per model with their bucket (llm::latency::bucket_of).
    let setup = "DROP TABLE IF EXISTS bench_models; DROP TABLE IF EXISTS bench_ops; \
        DROP TABLE IF EXISTS bench_durations; \
        CREATE TABLE bench_models (k BIGINT PRIMARY KEY, provider TEXT NOT NULL, model TEXT NOT NULL, \
          priced BIGINT NOT NULL, reasoning BIGINT NOT NULL, p_in BIGINT, p_out BIGINT, p_cr BIGINT, p_cw BIGINT); \
        CREATE TABLE bench_ops (k BIGINT PRIMARY KEY, name TEXT NOT NULL); \
        CREATE TABLE bench_durations (k BIGINT PRIMARY KEY, duration_us BIGINT NOT NULL, bucket BIGINT NOT NULL);";
    conn.execute(sqlx::raw_sql(setup))
        .await
        .expect("lookup tables");
    let mut tx = conn.begin().await.expect("begin");
    for m in 0..MODELS {
        let price = model_price(m);
        sqlx::query("INSERT INTO bench_models VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(m as i64)
            .bind(PROVIDERS[m % PROVIDERS.len()])
            .bind(model_name(m))
            .bind(i64::from(price.is_some()))
            .bind(i64::from(m % 8 == 3))
            .bind(price.map(|p| p.0))
            .bind(price.map(|p| p.1))
            .bind(price.map(|p| p.2))
            .bind(price.map(|p| p.3))
            .execute(&mut *tx)
            .await
            .expect("model row");
        for k in 0..1000u64 {
            let d = duration_us(m, k);
            sqlx::query("INSERT INTO bench_durations VALUES ($1, $2, $3)")
                .bind((m * 1000) as i64 + k as i64)
                .bind(d as i64)
                .bind(i64::from(llm::latency::bucket_of(d)))
                .execute(&mut *tx)
                .await
                .expect("duration row");
        }
    }
    for (k, op) in OPERATIONS.iter().enumerate() {
        sqlx::query("INSERT INTO bench_ops VALUES ($1, $2)")
            .bind(k as i64)
            .bind(op.as_str())
            .execute(&mut *tx)
            .await
            .expect("op row");
    }
    tx.commit().await.expect("commit lookups");

    let step_ms = DAYS * DAY_MS / calls;
    let (numbers, id) = match backend {
        Backend::Sqlite => (
            "WITH RECURSIVE n(i) AS (SELECT $2 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $3)",
            "printf('c%09d', i)",
        ),
        Backend::Postgres => (
            "WITH n(i) AS (SELECT generate_series($2::bigint, $3::bigint - 1))",
            "'c' || lpad(i::text, 9, '0')",
        ),
    };
    let generator = format!(
        "{numbers} \
        INSERT INTO llm_model_calls (tenant_id, event_id, time_ms, day, provider, model, operation, \
          conversation_id, duration_us, latency_bucket, input_tokens, output_tokens, \
          cache_read_tokens, cache_write_tokens, reasoning_tokens, status, error_type, \
          client_cost_pico, computed_cost_pico, cost_pico) \
        SELECT $1, id, t, t / {DAY_MS}, provider, model, operation, conversation_id, duration_us, \
          bucket, inp, outp, cr, cw, rs, status, error_type, NULL, cost, cost \
        FROM (SELECT id, t, m.provider, m.model, o.name AS operation, \
                CASE WHEN h % 10 = 0 THEN NULL ELSE 'conv-' || ((h / 3) % 100000) END AS conversation_id, \
                d.duration_us, d.bucket, inp, outp, cr, cw, \
                CASE WHEN m.reasoning = 1 THEN (h / 23) % 500 ELSE 0 END AS rs, \
                CASE WHEN h % 50 = 7 THEN 'error' ELSE 'success' END AS status, \
                CASE WHEN h % 50 = 7 THEN 'rate_limited' ELSE NULL END AS error_type, \
                CASE WHEN m.priced = 1 THEN inp * m.p_in + outp * m.p_out + cr * m.p_cr + cw * m.p_cw \
                  + (CASE WHEN m.reasoning = 1 THEN (h / 23) % 500 ELSE 0 END) * m.p_out END AS cost \
              FROM (SELECT {id} AS id, {T0} + i * {step_ms} AS t, h, \
                      200 + (h / 7) % 4000 AS inp, 20 + (h / 11) % 800 AS outp, \
                      CASE WHEN (h / 13) % 3 = 0 THEN (h / 17) % 2000 ELSE 0 END AS cr, \
                      (h / 19) % 50 AS cw \
                    FROM (SELECT i, (i * 2654435761) % 4294967291 AS h FROM n) x) g \
              JOIN bench_models m ON m.k = g.h % {MODELS} \
              JOIN bench_ops o ON o.k = (g.h / {MODELS}) % 4 \
              JOIN bench_durations d ON d.k = (g.h % {MODELS}) * 1000 + (g.h / 160) % 1000) y"
    );
    let started = Instant::now();
    let mut from = 0;
    while from < calls {
        let to = (from + LOAD_STEP).min(calls);
        sqlx::query(&generator)
            .bind(tenant)
            .bind(from)
            .bind(to)
            .execute(&mut conn)
            .await
            .expect("generate calls");
        from = to;
        eprintln!("  {to} calls loaded ({:.0?})", started.elapsed());
    }
    let rollups = "INSERT INTO llm_usage_daily (tenant_id, day, provider, model, operation, calls, \
          errors, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, \
          reasoning_tokens, cost_pico, unpriced_calls) \
        SELECT tenant_id, day, provider, model, operation, COUNT(*), \
          SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END), SUM(input_tokens), SUM(output_tokens), \
          SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(reasoning_tokens), \
          COALESCE(SUM(cost_pico), 0), SUM(CASE WHEN cost_pico IS NULL THEN 1 ELSE 0 END) \
        FROM llm_model_calls WHERE tenant_id = $1 \
        GROUP BY tenant_id, day, provider, model, operation";
    sqlx::query(rollups)
        .bind(tenant)
        .execute(&mut conn)
        .await
        .expect("daily rollups");
    let latency = "INSERT INTO llm_usage_latency (tenant_id, day, provider, model, operation, \
          bucket, calls) \
        SELECT tenant_id, day, provider, model, operation, latency_bucket, COUNT(*) \
        FROM llm_model_calls WHERE tenant_id = $1 \
        GROUP BY tenant_id, day, provider, model, operation, latency_bucket";
    sqlx::query(latency)
        .bind(tenant)
        .execute(&mut conn)
        .await
        .expect("latency rollups");
    let by_day = "INSERT INTO llm_usage_latency_by_day (tenant_id, day, bucket, calls) \
        SELECT tenant_id, day, bucket, SUM(calls) FROM llm_usage_latency WHERE tenant_id = $1 \
        GROUP BY tenant_id, day, bucket";
    sqlx::query(by_day)
        .bind(tenant)
        .execute(&mut conn)
        .await
        .expect("latency by day");
    // Month of each day, computed here so the SQL stays portable.
    conn.execute(sqlx::raw_sql(
        "DROP TABLE IF EXISTS bench_months; \
         CREATE TABLE bench_months (day BIGINT PRIMARY KEY, month BIGINT NOT NULL)",
    ))
    .await
    .expect("months table");
    let mut tx = conn.begin().await.expect("begin");
    for day in T0 / DAY_MS..T0 / DAY_MS + DAYS + 1 {
        let month = llm::budget::Period::containing(day * DAY_MS).start_ms() / DAY_MS;
        sqlx::query("INSERT INTO bench_months VALUES ($1, $2)")
            .bind(day)
            .bind(month)
            .execute(&mut *tx)
            .await
            .expect("month row");
    }
    tx.commit().await.expect("commit months");
    let monthly = "INSERT INTO llm_usage_latency_monthly (tenant_id, month, provider, model, \
          operation, bucket, calls) \
        SELECT l.tenant_id, bm.month, l.provider, l.model, l.operation, l.bucket, SUM(l.calls) \
        FROM llm_usage_latency l JOIN bench_months bm ON bm.day = l.day \
        WHERE l.tenant_id = $1 \
        GROUP BY l.tenant_id, bm.month, l.provider, l.model, l.operation, l.bucket";
    sqlx::query(monthly)
        .bind(tenant)
        .execute(&mut conn)
        .await
        .expect("monthly latency");
    let analyze = match backend {
        Backend::Sqlite => "ANALYZE",
        Backend::Postgres => {
            "ANALYZE llm_model_calls; ANALYZE llm_usage_daily; ANALYZE llm_usage_latency"
        }
    };
    conn.execute(sqlx::raw_sql(analyze)).await.expect("analyze");
    let counts = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM llm_model_calls), (SELECT COUNT(*) FROM llm_usage_daily), \
         (SELECT COUNT(*) FROM llm_usage_latency)",
    )
    .fetch_one(&mut conn)
    .await
    .expect("counts");
    eprintln!(
        "loaded in {:.1?}: {} raw calls, {} daily rollup rows, {} latency rollup rows",
        started.elapsed(),
        counts.get::<i64, _>(0),
        counts.get::<i64, _>(1),
        counts.get::<i64, _>(2)
    );
    let _ = conn.close().await;
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A tiny deterministic generator (xorshift64*), enough to vary query windows.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn time_queries(store: &Store, tenant: &str) {
    let first_day = T0 / DAY_MS;
    let shapes: [(&str, &[Dimension], i64); 7] = [
        ("day, 30 days", &[Dimension::Day], 30),
        ("day, 365 days", &[Dimension::Day], 365),
        (
            "provider+model, 30 days",
            &[Dimension::Provider, Dimension::Model],
            30,
        ),
        (
            "provider+model, 365 days",
            &[Dimension::Provider, Dimension::Model],
            365,
        ),
        (
            "day+model+operation, 30 days",
            &[Dimension::Day, Dimension::Model, Dimension::Operation],
            30,
        ),
        (
            "day+model+operation, 365 days",
            &[Dimension::Day, Dimension::Model, Dimension::Operation],
            365,
        ),
        (
            "conversation, 1 day (raw calls)",
            &[Dimension::Conversation],
            1,
        ),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); shapes.len()];
    let mut groups = vec![0usize; shapes.len()];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let queries = env_u64("LLM_BENCH_QUERIES", 1000) as usize;
    for q in 0..queries {
        let s = q % shapes.len();
        let (_, dims, days) = shapes[s];
        let from = first_day + rng.below((DAYS - days + 1) as u64) as i64;
        let started = Instant::now();
        let rows = store
            .llm_usage(tenant, from, from + days, dims)
            .await
            .expect("usage query");
        times[s].push(started.elapsed());
        groups[s] = rows.len();
    }
    println!("usage queries ({queries} in all, shapes in turn):");
    println!(
        "  {:<34} {:>7} {:>10} {:>10} {:>8}",
        "group_by, range", "runs", "p50", "p99", "groups"
    );
    for (s, (name, _, _)) in shapes.iter().enumerate() {
        let t = &mut times[s];
        t.sort();
        println!(
            "  {:<34} {:>7} {:>10.2?} {:>10.2?} {:>8}",
            name,
            t.len(),
            quantile(t, 0.5),
            quantile(t, 0.99),
            groups[s]
        );
    }
    let mut all: Vec<Duration> = times.concat();
    all.sort();
    println!(
        "  {:<34} {:>7} {:>10.2?} {:>10.2?}",
        "all shapes",
        all.len(),
        quantile(&all, 0.5),
        quantile(&all, 0.99)
    );
}

/// Checks that the generated rollups are what ingest would have written: for one day, usage
/// from the rollups equals usage from the raw calls (grouped by conversation, merged here).
async fn check_rollups(store: &Store, tenant: &str) {
    let day = T0 / DAY_MS + 100;
    let dims = [Dimension::Provider, Dimension::Model, Dimension::Operation];
    let from_rollups = store.llm_usage(tenant, day, day + 1, &dims).await.unwrap();
    let mut with_conv = dims.to_vec();
    with_conv.push(Dimension::Conversation);
    let raw = store
        .llm_usage(tenant, day, day + 1, &with_conv)
        .await
        .unwrap();
    let mut merged: std::collections::BTreeMap<store::LlmUsageKey, llm::usage::UsageTotals> =
        Default::default();
    for (mut key, t) in raw {
        key.conversation = None;
        let m = merged.entry(key).or_default();
        m.calls += t.calls;
        m.errors += t.errors;
        m.tokens = m.tokens.checked_add(&t.tokens).unwrap();
        m.cost = m.cost.checked_add(t.cost).unwrap();
        m.unpriced_calls += t.unpriced_calls;
        m.latency.merge(&t.latency);
    }
    let merged: Vec<_> = merged.into_iter().collect();
    assert_eq!(merged, from_rollups, "generated rollups equal the raw sums");
    let whole_day = store
        .llm_usage(tenant, day, day + 1, &[Dimension::Day])
        .await
        .unwrap();
    let mut all = llm::usage::UsageTotals::default();
    for (_, t) in &merged {
        all.merge(t);
    }
    assert_eq!(
        whole_day[0].1, all,
        "the per-day histograms equal the raw ones"
    );
    // Whole months (monthly histograms) plus edge days equal the daily histograms merged.
    let (from, to) = (T0 / DAY_MS + 20, T0 / DAY_MS + 100);
    let by_month = store
        .llm_usage(tenant, from, to, &[Dimension::Provider, Dimension::Model])
        .await
        .unwrap();
    let by_day = store
        .llm_usage(
            tenant,
            from,
            to,
            &[Dimension::Day, Dimension::Provider, Dimension::Model],
        )
        .await
        .unwrap();
    let mut merged_days: std::collections::BTreeMap<store::LlmUsageKey, llm::usage::UsageTotals> =
        Default::default();
    for (mut key, t) in by_day {
        key.day = None;
        merged_days.entry(key).or_default().merge(&t);
    }
    assert_eq!(
        merged_days.into_iter().collect::<Vec<_>>(),
        by_month,
        "monthly histograms equal the daily ones"
    );
    let calls: u64 = from_rollups.iter().map(|(_, t)| t.calls).sum();
    eprintln!(
        "rollups check: day {day}, {} groups, {calls} calls: rollups == raw",
        from_rollups.len()
    );
}

fn batch(seed: u64, n: usize) -> Vec<ModelCall> {
    let mut rng = Rng(seed | 1);
    (0..n)
        .map(|i| {
            let m = rng.below(MODELS as u64) as usize;
            let price = model_price(m);
            let tokens = TokenCounts {
                input: 200 + rng.below(4000),
                output: 20 + rng.below(800),
                cache_read: rng.below(2000),
                cache_write: rng.below(50),
                reasoning: 0,
            };
            ModelCall {
                id: format!("ingest-{seed}-{i}"),
                time_ms: T0 + DAYS * DAY_MS - 1 - rng.below(3 * DAY_MS as u64) as i64,
                provider: PROVIDERS[m % PROVIDERS.len()].to_owned(),
                model: model_name(m),
                operation: OPERATIONS[rng.below(4) as usize],
                conversation_id: Some(format!("conv-{}", rng.below(100_000))),
                duration_us: duration_us(m, rng.below(1000)),
                tokens,
                status: CallStatus::Success,
                error_type: None,
                client_cost: None,
                computed_cost: price.map(|p| {
                    Cost::from_picodollars(
                        tokens.input * p.0 as u64
                            + tokens.output * p.1 as u64
                            + tokens.cache_read * p.2 as u64
                            + tokens.cache_write * p.3 as u64,
                    )
                }),
            }
        })
        .collect()
}

async fn time_ingest(store: &Store, tenant: &str) {
    const BATCHES: u64 = 100;
    const SIZE: usize = 1000;
    let batches: Vec<Vec<ModelCall>> = (0..BATCHES).map(|b| batch(b + 1, SIZE)).collect();
    for (label, expect_new) in [("fresh ids", SIZE), ("all duplicates", 0)] {
        let mut per_batch = Vec::new();
        let started = Instant::now();
        for b in &batches {
            let t = Instant::now();
            let outcome = store
                .insert_llm_batch(tenant, b, &[])
                .await
                .expect("ingest");
            per_batch.push(t.elapsed());
            assert_eq!(outcome.new_calls(), expect_new);
        }
        let elapsed = started.elapsed();
        per_batch.sort();
        println!(
            "insert_llm_batch, {label}: {:.0} calls/s ({} batches of {SIZE}; per batch p50 {:.2?}, p99 {:.2?})",
            (BATCHES as f64 * SIZE as f64) / elapsed.as_secs_f64(),
            BATCHES,
            quantile(&per_batch, 0.5),
            quantile(&per_batch, 0.99),
        );
    }
    let day = (T0 + DAYS * DAY_MS) / DAY_MS;
    let usage = store
        .llm_usage(tenant, day - 4, day, &[])
        .await
        .expect("ingest usage");
    assert_eq!(
        usage[0].1.calls,
        BATCHES * SIZE as u64,
        "every fresh call counted once"
    );
}

fn main() {
    let backend = match std::env::var("LLM_BENCH_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    // `cargo test --benches` runs this binary too: keep that run small.
    let smoke =
        std::env::args().any(|a| a == "--test") || !std::env::args().any(|a| a == "--bench");
    let calls = if smoke {
        20_000
    } else {
        env_u64("LLM_BENCH_CALLS", 10_000_000)
    } as i64;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let fixture = open(backend).await;
        let store = &fixture.store;
        println!("backend: {}, stored calls: {calls}", backend.as_str());
        let tenants = store.list_tenants().await.expect("tenants");
        let tenant = match tenants.iter().find(|t| t.name == "llm-bench") {
            Some(t) => {
                eprintln!("reusing the loaded tenant {}", t.id);
                t.id.clone()
            }
            None => {
                let t = store
                    .create_tenant("llm-bench", Tier::Enterprise)
                    .await
                    .expect("tenant");
                load(backend, &fixture.options, &t.id, calls).await;
                t.id
            }
        };
        check_rollups(store, &tenant).await;
        time_queries(store, &tenant).await;
        let ingest = store
            .create_tenant(&format!("llm-ingest-{}", uuid_like()), Tier::Enterprise)
            .await
            .expect("ingest tenant");
        time_ingest(store, &ingest.id).await;
        if let Some(t) = fixture.test_store {
            t.cleanup().await;
        }
    });
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    )
}
