//! The jobs page: queues, recent jobs, dead letters with their errors, and retrying one.

use axum::http::StatusCode;
use jobs::Priority;
use store::{AttemptOutcome, Finish, NewJob};
use store::{Backend, Scope};

use crate::TestApp;

/// Enqueues a job for `tenant` and makes it dead with `error`, as a worker would.
async fn dead_job(app: &TestApp, tenant: &str, error: &str) -> String {
    let store = &app.fixture.store;
    let now = server::jobs::now_ms();
    let job = store
        .enqueue_job(
            tenant,
            &NewJob {
                handler: "jobs.noop",
                payload: "{}",
                priority: Priority::Bulk,
                run_at_ms: now,
                expires_at_ms: None,
                max_attempts: 1,
                timeout_ms: 60_000,
                idempotency_key: None,
            },
            now,
        )
        .await
        .unwrap()
        .job;
    let claimed = store
        .claim_jobs(Priority::Bulk, "console-test", 10, now, 60_000)
        .await
        .unwrap();
    let mine = claimed.iter().find(|j| j.id == job.id).expect("claimed");
    let applied = store
        .finish_jobs(
            "console-test",
            &[Finish {
                job_id: &mine.id,
                attempt: mine.attempts,
                outcome: AttemptOutcome::Dead {
                    error: error.to_owned(),
                },
            }],
            now,
        )
        .await
        .unwrap();
    assert_eq!(applied, vec![true]);
    job.id
}

#[tokio::test]
async fn dead_letters_show_their_error_and_can_be_retried() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let id = dead_job(&app, &tenant.id, "the <disk> was full").await;
    let console = app.console(&admin.secret).await;

    let page = console.get("/console/jobs").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let html = page.text();
    assert!(html.contains("id=\"queue-stats\""));
    assert!(
        html.contains(&format!(
            "class=\"retry-job inline-form\" data-job-id=\"{id}\""
        )),
        "{html}"
    );
    assert!(!html.contains("<disk>"), "errors are escaped");
    assert!(
        html.contains("disk&#62;") || html.contains("disk&gt;"),
        "{html}"
    );

    let filtered = console.get("/console/jobs?status=success&queue=bulk").await;
    assert_eq!(filtered.status, StatusCode::OK);
    let bad = console.get("/console/jobs?status=sleeping").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);

    let retried = console
        .post(&format!("/console/jobs/{id}/retry"), &[])
        .await;
    assert_eq!(retried.status, StatusCode::SEE_OTHER, "{}", retried.text());
    let job = app
        .fixture
        .store
        .job(&tenant.id, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.status, jobs::JobStatus::Pending);
    assert_eq!(job.attempts, 0);
    let html = console.get("/console/jobs").await.text();
    let dead_table = &html[html.find("id=\"dead-letters\"").unwrap()..];
    let dead_table = &dead_table[..dead_table.find("</table>").unwrap()];
    assert!(
        !dead_table.contains(&id),
        "no longer a dead letter: {dead_table}"
    );
    assert!(dead_table.contains("No dead jobs."));

    // A pending job cannot be retried: 409, shown as a page.
    let again = console
        .post(&format!("/console/jobs/{id}/retry"), &[])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());
    app.cleanup().await;
}

#[tokio::test]
async fn jobs_need_an_admin_key_and_another_tenants_jobs_do_not_exist() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (a, _) = app.tenant("tenant-a", &[Scope::Admin]).await;
    let a_job = dead_job(&app, &a.id, "a's secret error").await;
    let (b, b_admin) = app.tenant("tenant-b", &[Scope::Admin]).await;
    let b_reader = app
        .fixture
        .store
        .issue_api_key(
            &b.id,
            [Scope::Read, Scope::Write].into_iter().collect(),
            None,
        )
        .await
        .unwrap();

    let b_console = app.console(&b_admin.secret).await;
    let html = b_console.get("/console/jobs").await.text();
    assert!(!html.contains(&a_job) && !html.contains("a's secret error"));
    let retry = b_console
        .post(&format!("/console/jobs/{a_job}/retry"), &[])
        .await;
    assert_eq!(retry.status, StatusCode::NOT_FOUND, "{}", retry.text());
    let job = app.fixture.store.job(&a.id, &a_job).await.unwrap().unwrap();
    assert_eq!(job.status, jobs::JobStatus::Dead, "untouched");

    let reader = app.console(&b_reader.secret).await;
    assert_eq!(
        reader.get("/console/jobs").await.status,
        StatusCode::FORBIDDEN
    );
    let post = reader
        .post(&format!("/console/jobs/{a_job}/retry"), &[])
        .await;
    assert_eq!(post.status, StatusCode::FORBIDDEN);
    app.cleanup().await;
}
