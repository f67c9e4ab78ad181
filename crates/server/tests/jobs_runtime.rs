//! The job runtime in process: time limits, cancellation of a running job, the built-in
//! handlers' effects, and the use cases' checks (each refusal names its field). Process-level
//! guarantees (killed workers, priorities, schedules across processes, panics) are in
//! `crates/signalbox/tests/jobs.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobs::{JobStatus, Priority};
use server::jobs::{
    EnqueueRequest, ForecastRebuildSettings, JobError, JobSettings, ScheduleRequest,
};
use server::{AppState, ServerConfig};
use store::testing::TestStore;
use store::{Backend, JobRecord};

struct Runtime {
    state: AppState,
    fixture: TestStore,
    tenant: String,
    stop: tokio::sync::watch::Sender<bool>,
    workers: Option<tokio::task::JoinHandle<()>>,
    _dirs: Vec<tempfile::TempDir>,
}

/// Short timings: a 300 ms lease (heartbeats every 100 ms), fast polling, no start pacing.
fn fast_settings() -> JobSettings {
    let mut settings = JobSettings {
        lease: Duration::from_millis(300),
        poll_interval: Duration::from_millis(50),
        cancel_grace: Duration::from_millis(200),
        shutdown_grace: Duration::from_millis(500),
        ..JobSettings::default()
    };
    for p in Priority::ALL {
        let q = settings.queue_mut(p);
        q.rate_per_minute = 0;
        q.retry_delay_ms = 50;
    }
    settings
}

impl Runtime {
    async fn start(
        backend: Backend,
        adjust: impl FnOnce(&mut JobSettings, &std::path::Path),
    ) -> Runtime {
        let fixture = TestStore::new(backend).await;
        let tenant = fixture
            .store
            .create_tenant("jobs", store::Tier::Professional)
            .await
            .unwrap()
            .id;
        let events_dir = tempfile::tempdir().unwrap();
        let files = tempfile::tempdir().unwrap();
        let events = stream::EventLog::open_file(events_dir.path(), Default::default())
            .await
            .unwrap();
        let mut settings = fast_settings();
        adjust(&mut settings, files.path());
        let config = ServerConfig {
            jobs: settings,
            ..ServerConfig::default()
        };
        let metrics = Arc::new(telemetry::Metrics::new(Default::default()));
        let state = AppState::new(fixture.store.clone(), metrics, config, events).unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let workers = tokio::spawn(server::run_job_workers(state.clone(), async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|s| *s).await;
        }));
        Runtime {
            state,
            fixture,
            tenant,
            stop,
            workers: Some(workers),
            _dirs: vec![events_dir, files],
        }
    }

    async fn enqueue(
        &self,
        handler: &str,
        payload: serde_json::Value,
        timeout_ms: Option<u64>,
        max_retries: u32,
    ) -> String {
        let request = EnqueueRequest {
            handler: handler.to_owned(),
            payload,
            timeout_ms,
            max_retries: Some(max_retries),
            ..EnqueueRequest::default()
        };
        // As the operator: some handlers (forecast.rebuild) are not for tenants' keys.
        self.state
            .jobs()
            .for_operator()
            .enqueue(&self.tenant, &request, server::jobs::now_ms())
            .await
            .unwrap()
            .job
            .id
    }

    async fn job(&self, id: &str) -> JobRecord {
        self.state.jobs().get(&self.tenant, id).await.unwrap()
    }

    /// Polls until the job is in a final status.
    async fn finished(&self, id: &str, limit: Duration) -> JobRecord {
        let deadline = Instant::now() + limit;
        loop {
            let job = self.job(id).await;
            if job.status.is_final() {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "not finished within {limit:?}: {job:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(w) = self.workers.take() {
            w.await.unwrap();
        }
        self.fixture.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_past_its_hard_limit_is_aborted_and_its_attempt_fails() {
    let rt = Runtime::start(Backend::Sqlite, |_, _| {}).await;
    let id = rt
        .enqueue(
            "jobs.canary",
            serde_json::json!({"sleep_ms": 60_000, "ignore_stop": true}),
            Some(1_000),
            0,
        )
        .await;
    let started = Instant::now();
    let job = rt.finished(&id, Duration::from_secs(20)).await;
    assert_eq!(job.status, JobStatus::Dead, "{job:?}");
    assert_eq!(
        job.last_error.as_deref(),
        Some("timed out after 1000 ms (the job's hard time limit)")
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooperative_handler_stops_at_its_soft_limit() {
    let rt = Runtime::start(Backend::Sqlite, |_, _| {}).await;
    // Soft limit at half of a 2 s timeout.
    let id = rt
        .enqueue(
            "jobs.canary",
            serde_json::json!({"sleep_ms": 60_000}),
            Some(2_000),
            0,
        )
        .await;
    let job = rt.finished(&id, Duration::from_secs(20)).await;
    assert_eq!(job.status, JobStatus::Dead, "{job:?}");
    assert_eq!(
        job.last_error.as_deref(),
        Some("stopped: soft time limit reached")
    );
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_stops_its_handler() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let rt = Runtime::start(backend, |_, _| {}).await;
        // One handler that stops when asked, one that must be aborted after the grace.
        let polite = rt
            .enqueue(
                "jobs.canary",
                serde_json::json!({"sleep_ms": 60_000}),
                None,
                3,
            )
            .await;
        let stubborn = rt
            .enqueue(
                "jobs.canary",
                serde_json::json!({"sleep_ms": 60_000, "ignore_stop": true}),
                None,
                3,
            )
            .await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while rt.job(&polite).await.status != JobStatus::Running
            || rt.job(&stubborn).await.status != JobStatus::Running
        {
            assert!(Instant::now() < deadline, "the jobs never ran");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for id in [&polite, &stubborn] {
            let marked = rt
                .state
                .jobs()
                .cancel(&rt.tenant, id, server::jobs::now_ms())
                .await
                .unwrap();
            assert!(marked.cancel_requested, "{marked:?}");
        }
        for id in [&polite, &stubborn] {
            let job = rt.finished(id, Duration::from_secs(20)).await;
            assert_eq!(job.status, JobStatus::Cancelled, "{backend:?} {job:?}");
            assert_eq!(job.attempts, 1);
        }
        // Finished: a second cancel is refused naming the status.
        match rt
            .state
            .jobs()
            .cancel(&rt.tenant, &polite, server::jobs::now_ms())
            .await
        {
            Err(JobError::InvalidState { status, .. }) => assert_eq!(status, JobStatus::Cancelled),
            other => panic!("{other:?}"),
        }
        rt.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weber_recalculate_rebuilds_every_user_or_the_listed_ones() {
    let rt = Runtime::start(Backend::Sqlite, |_, _| {}).await;
    let now = server::jobs::now_ms();
    let events: Vec<store::NewInteraction> = (0..3)
        .flat_map(|u| {
            (0..6).map(move |i| store::NewInteraction {
                event_id: format!("e{u}-{i}"),
                user_id: format!("user{u}"),
                event_time_ms: now - 86_400_000 + i * 60_000,
                sentiment: if i % 2 == 0 { 0.6 } else { -0.2 },
                rating: None,
                text: None,
                item_id: None,
                verified_purchase: None,
                helpful_votes: None,
                channel: None,
            })
        })
        .collect();
    rt.fixture
        .store
        .insert_interactions(&rt.tenant, &events, now)
        .await
        .unwrap();
    let all = rt
        .enqueue("weber.recalculate", serde_json::json!({}), None, 0)
        .await;
    let job = rt.finished(&all, Duration::from_secs(20)).await;
    assert_eq!(job.status, JobStatus::Success, "{job:?}");
    let result: serde_json::Value = serde_json::from_str(job.result.as_deref().unwrap()).unwrap();
    assert_eq!(
        result,
        serde_json::json!({"users": 3, "recalculated": 3, "without_history": 0})
    );
    for u in 0..3 {
        let profile = rt
            .fixture
            .store
            .weber_profile(&rt.tenant, &format!("user{u}"))
            .await
            .unwrap()
            .expect("a profile");
        assert_eq!(profile.review_count, 6);
    }
    let listed = rt
        .enqueue(
            "weber.recalculate",
            serde_json::json!({"user_ids": ["user1", "nobody"]}),
            None,
            0,
        )
        .await;
    let job = rt.finished(&listed, Duration::from_secs(20)).await;
    let result: serde_json::Value = serde_json::from_str(job.result.as_deref().unwrap()).unwrap();
    assert_eq!(
        result,
        serde_json::json!({"users": 2, "recalculated": 1, "without_history": 1})
    );
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purge_deletes_only_what_is_older_than_asked() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let rt = Runtime::start(backend, |_, _| {}).await;
        let now = server::jobs::now_ms();
        let day = 86_400_000;
        let events: Vec<store::NewInteraction> = (0..12)
            .map(|i| store::NewInteraction {
                event_id: format!("e{i}"),
                user_id: "user".to_owned(),
                // 7 events 400 days old, 5 a day old.
                event_time_ms: if i < 7 {
                    now - 400 * day + i
                } else {
                    now - day + i
                },
                sentiment: 0.1,
                rating: None,
                text: None,
                item_id: None,
                verified_purchase: None,
                helpful_votes: None,
                channel: None,
            })
            .collect();
        rt.fixture
            .store
            .insert_interactions(&rt.tenant, &events, now)
            .await
            .unwrap();
        let id = rt
            .enqueue(
                "retention.purge",
                serde_json::json!({"interactions_older_than_days": 365, "calculations_older_than_days": 30}),
                None,
                0,
            )
            .await;
        let job = rt.finished(&id, Duration::from_secs(20)).await;
        assert_eq!(job.status, JobStatus::Success, "{job:?}");
        let result: serde_json::Value =
            serde_json::from_str(job.result.as_deref().unwrap()).unwrap();
        assert_eq!(result["interactions_deleted"], 7, "{result}");
        assert_eq!(result["calculations_deleted"], 0, "{result}");
        let left = rt
            .fixture
            .store
            .interaction_windows(&rt.tenant, &["user".to_owned()], 100)
            .await
            .unwrap();
        assert_eq!(left[0].total, 5);
        rt.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forecast_rebuild_writes_the_model_and_swaps_the_served_one() {
    let rt = Runtime::start(Backend::Sqlite, |settings, files| {
        let data_dir = files.join("data");
        std::fs::create_dir_all(&data_dir).unwrap();
        std::fs::write(
            data_dir.join("nyc.csv"),
            include_str!("../../../demo/nyc_weather_2013.csv"),
        )
        .unwrap();
        settings.handlers.forecast = Some(ForecastRebuildSettings {
            data_dir,
            model_dir: files.join("model"),
            serving: Default::default(),
        });
    })
    .await;
    // A tenant's key may not replace the model every tenant is served.
    let by_tenant = EnqueueRequest {
        handler: "forecast.rebuild".to_owned(),
        payload: serde_json::json!({"data_file": "nyc.csv"}),
        ..EnqueueRequest::default()
    };
    match rt.state.jobs().enqueue(&rt.tenant, &by_tenant, 0).await {
        Err(JobError::OperatorOnly { name }) => assert_eq!(name, "forecast.rebuild"),
        other => panic!("{other:?}"),
    }
    // Refused at enqueue: a path outside the data directory.
    let outside = EnqueueRequest {
        handler: "forecast.rebuild".to_owned(),
        payload: serde_json::json!({"data_file": "../../etc/passwd"}),
        ..EnqueueRequest::default()
    };
    match rt
        .state
        .jobs()
        .for_operator()
        .enqueue(&rt.tenant, &outside, 0)
        .await
    {
        Err(JobError::Invalid { field, .. }) => assert_eq!(field, "payload.data_file"),
        other => panic!("{other:?}"),
    }
    // A missing file fails the job at once (no retry fixes it).
    let missing = rt
        .enqueue(
            "forecast.rebuild",
            serde_json::json!({"data_file": "nope.csv"}),
            None,
            3,
        )
        .await;
    let job = rt.finished(&missing, Duration::from_secs(20)).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    assert!(job
        .last_error
        .as_deref()
        .unwrap()
        .contains("payload.data_file: cannot read"));

    // A process serving forecasts swaps to the rebuilt model.
    let placeholder = {
        let csv = include_str!("../../../demo/nyc_weather_2013.csv");
        let cut: String = csv.lines().take(4_000).collect::<Vec<_>>().join("\n");
        let data = analog::forecast::parse_csv(cut.as_bytes()).unwrap();
        analog::forecast::ForecastModel::build(
            &data,
            &analog::forecast::BuildOptions::default(),
            &mut |_, _| {},
        )
        .unwrap()
    };
    rt.state
        .install_forecasts(Arc::new(server::forecasts::ForecastService::new(
            Arc::new(placeholder),
            &Default::default(),
        )));
    let before = rt.state.forecasts().unwrap().version().to_owned();
    let id = rt
        .enqueue(
            "forecast.rebuild",
            serde_json::json!({"data_file": "nyc.csv"}),
            Some(600_000),
            0,
        )
        .await;
    let job = rt.finished(&id, Duration::from_secs(300)).await;
    assert_eq!(job.status, JobStatus::Success, "{job:?}");
    let result: serde_json::Value = serde_json::from_str(job.result.as_deref().unwrap()).unwrap();
    assert_eq!(result["reloaded"], true, "{result}");
    assert_eq!(result["stations"], "EWR,JFK,LGA", "{result}");
    let served = rt.state.forecasts().unwrap().version().to_owned();
    assert_ne!(served, before);
    assert_eq!(result["version"], served.as_str());
    // The directory holds the same model, complete.
    let dir = match &rt.state.jobs().settings().handlers.forecast {
        Some(f) => f.model_dir.clone(),
        None => unreachable!(),
    };
    let loaded = server::forecast_files::load_model_dir(&dir).unwrap();
    assert_eq!(loaded.version(), served);
    rt.stop().await;
}

/// Every refusal of the use cases names its field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_naming_the_field() {
    let rt = Runtime::start(Backend::Sqlite, |_, _| {}).await;
    let jobs = rt.state.jobs();
    let base = || EnqueueRequest {
        handler: "jobs.noop".to_owned(),
        ..EnqueueRequest::default()
    };
    let cases: Vec<(EnqueueRequest, &str)> = vec![
        (
            EnqueueRequest {
                handler: "no.such".into(),
                ..base()
            },
            "handler",
        ),
        (
            EnqueueRequest {
                payload: serde_json::json!([1]),
                ..base()
            },
            "payload",
        ),
        (
            EnqueueRequest {
                payload: serde_json::json!({"x": "a".repeat(70_000)}),
                ..base()
            },
            "payload",
        ),
        (
            EnqueueRequest {
                delay_ms: Some(-1),
                ..base()
            },
            "delay_ms",
        ),
        (
            EnqueueRequest {
                delay_ms: Some(1),
                run_at_ms: Some(1),
                ..base()
            },
            "run_at_ms",
        ),
        (
            EnqueueRequest {
                run_at_ms: Some(i64::MAX),
                ..base()
            },
            "run_at_ms",
        ),
        (
            EnqueueRequest {
                max_retries: Some(26),
                ..base()
            },
            "max_retries",
        ),
        (
            EnqueueRequest {
                timeout_ms: Some(10),
                ..base()
            },
            "timeout_ms",
        ),
        (
            EnqueueRequest {
                idempotency_key: Some("has space".into()),
                ..base()
            },
            "idempotency_key",
        ),
        (
            EnqueueRequest {
                expires_at_ms: Some(1),
                ..base()
            },
            "expires_at_ms",
        ),
        (
            EnqueueRequest {
                handler: "weber.recalculate".into(),
                payload: serde_json::json!({"user_ids": ["ok", ""]}),
                ..base()
            },
            "payload.user_ids[1]",
        ),
        (
            EnqueueRequest {
                handler: "retention.purge".into(),
                payload: serde_json::json!({"interactions_older_than_days": 0}),
                ..base()
            },
            "payload.interactions_older_than_days",
        ),
        (
            EnqueueRequest {
                handler: "jobs.canary".into(),
                payload: serde_json::json!({"fail": "sometimes"}),
                ..base()
            },
            "payload.fail",
        ),
    ];
    for (request, field) in cases {
        let e = jobs
            .enqueue(&rt.tenant, &request, server::jobs::now_ms())
            .await
            .expect_err(field);
        assert_eq!(e.field(), Some(field), "{e}");
        let problem = server::problem::ApiError::from(e);
        assert_eq!(problem.extensions["field"], field);
    }
    let schedule = |cron: &str| ScheduleRequest {
        cron: cron.to_owned(),
        handler: "jobs.noop".to_owned(),
        payload: serde_json::json!({}),
        priority: None,
        enabled: None,
    };
    let e = jobs
        .put_schedule(&rt.tenant, "nightly", &schedule("61 * * * *"), 0)
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("cron"), "{e}");
    let e = jobs
        .put_schedule(&rt.tenant, "bad name", &schedule("* * * * *"), 0)
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("name"), "{e}");
    let e = jobs
        .purge(&rt.tenant, JobStatus::Running)
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("status"), "{e}");
    assert!(matches!(
        jobs.get(&rt.tenant, "job_missing").await,
        Err(JobError::NotFound { .. })
    ));
    rt.stop().await;
}
