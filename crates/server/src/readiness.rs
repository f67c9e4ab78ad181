//! Dependency checks for `/ready` and `/health`: the store always, Redis and NATS when set.
//!
//! Connections to Redis and NATS are made on first check and kept; a failed check drops the
//! connection so the next check starts afresh. Every check has a deadline, so a hung dependency
//! makes the answer "down", never a hung probe.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Mutex;
use utoipa::ToSchema;

const CHECK_DEADLINE: Duration = Duration::from_secs(2);

/// The state of one dependency.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ComponentStatus {
    /// `up`, `down`, or `not_configured`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ComponentStatus {
    fn not_configured() -> ComponentStatus {
        ComponentStatus {
            status: "not_configured",
            backend: None,
            latency_ms: None,
            error: None,
        }
    }

    pub fn is_down(&self) -> bool {
        self.status == "down"
    }
}

/// Every dependency's state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Components {
    pub storage: ComponentStatus,
    pub redis: ComponentStatus,
    pub nats: ComponentStatus,
}

impl Components {
    pub fn all_up(&self) -> bool {
        !(self.storage.is_down() || self.redis.is_down() || self.nats.is_down())
    }
}

pub(crate) struct Readiness {
    redis: Option<RedisProbe>,
    nats: Option<NatsProbe>,
}

struct RedisProbe {
    url: String,
    conn: Mutex<Option<redis::aio::MultiplexedConnection>>,
}

struct NatsProbe {
    url: String,
    client: Mutex<Option<async_nats::Client>>,
}

impl Readiness {
    pub(crate) fn new(redis_url: Option<String>, nats_url: Option<String>) -> Readiness {
        Readiness {
            redis: redis_url.map(|url| RedisProbe {
                url,
                conn: Mutex::new(None),
            }),
            nats: nats_url.map(|url| NatsProbe {
                url,
                client: Mutex::new(None),
            }),
        }
    }

    pub(crate) async fn check(&self, store: &store::Store) -> Components {
        let storage = timed(Some(store.backend().as_str()), async {
            store.ping().await.map_err(|e| e.to_string())
        });
        let redis = async {
            match &self.redis {
                Some(probe) => timed(Some("redis"), probe.check()).await,
                None => ComponentStatus::not_configured(),
            }
        };
        let nats = async {
            match &self.nats {
                Some(probe) => timed(Some("nats"), probe.check()).await,
                None => ComponentStatus::not_configured(),
            }
        };
        let (storage, redis, nats) = tokio::join!(storage, redis, nats);
        Components {
            storage,
            redis,
            nats,
        }
    }
}

impl RedisProbe {
    async fn check(&self) -> Result<(), String> {
        let mut slot = self.conn.lock().await;
        if slot.is_none() {
            let client = redis::Client::open(self.url.as_str()).map_err(|e| e.to_string())?;
            let conn = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| e.to_string())?;
            *slot = Some(conn);
        }
        let Some(conn) = slot.as_mut() else {
            return Err("no connection".to_owned());
        };
        let pong: Result<String, _> = redis::cmd("PING").query_async(conn).await;
        match pong {
            Ok(_) => Ok(()),
            Err(e) => {
                *slot = None;
                Err(e.to_string())
            }
        }
    }
}

impl NatsProbe {
    async fn check(&self) -> Result<(), String> {
        let mut slot = self.client.lock().await;
        if slot.is_none() {
            let client = async_nats::ConnectOptions::new()
                .connection_timeout(CHECK_DEADLINE)
                .connect(self.url.as_str())
                .await
                .map_err(|e| e.to_string())?;
            *slot = Some(client);
        }
        let Some(client) = slot.as_ref() else {
            return Err("no connection".to_owned());
        };
        match client.flush().await {
            Ok(()) => Ok(()),
            Err(e) => {
                *slot = None;
                Err(e.to_string())
            }
        }
    }
}

async fn timed(
    backend: Option<&'static str>,
    check: impl std::future::Future<Output = Result<(), String>>,
) -> ComponentStatus {
    let start = Instant::now();
    let outcome = match tokio::time::timeout(CHECK_DEADLINE, check).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no answer within {} ms",
            CHECK_DEADLINE.as_millis()
        )),
    };
    let latency_ms = Some(start.elapsed().as_secs_f64() * 1e3);
    match outcome {
        Ok(()) => ComponentStatus {
            status: "up",
            backend,
            latency_ms,
            error: None,
        },
        Err(error) => ComponentStatus {
            status: "down",
            backend,
            latency_ms,
            error: Some(error.chars().take(200).collect()),
        },
    }
}
