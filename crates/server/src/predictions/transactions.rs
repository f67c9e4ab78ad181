//! Purchases in: parsing, validating and storing `POST /api/v1/transactions` bodies.
//!
//! A body is framed like the interactions ingest (a JSON array, or NDJSON), see
//! [`crate::ingest::split_body`]. Each purchase is `{order_id, customer_id, occurred_at, amount,
//! currency?}` and is checked on its own: a bad one is rejected with its index, the field at
//! fault and a reason, and the rest go on. An order is stored once: the same order id again
//! with the same values is a duplicate; with different values it is rejected (`order_id`), and
//! the stored order stays as it was.

use serde::Serialize;
use serde_json::{Map, Value};
use store::{NewTransaction, TransactionInsertion, MAX_TRANSACTION_ID_BYTES};
use utoipa::ToSchema;

use crate::ingest::{BodyError, Framing};

/// Largest accepted amount of one order. Far above any real order; it keeps sums of a
/// customer's orders (and the models fitted on them) far from overflow and precision loss.
pub const MAX_AMOUNT: f64 = 1e12;
/// How far in the future an order's time may lie: clocks of senders drift.
pub const FUTURE_TOLERANCE_MS: i64 = 5 * 60 * 1000;

/// Why one purchase was not accepted.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RejectedTransaction {
    /// Position in the array, or 0-based line number in NDJSON.
    pub index: usize,
    /// The purchase's order id, when it had a readable one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// The field at fault; absent when the item as a whole is unreadable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub reason: String,
}

/// What became of a body of purchases.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TransactionReport {
    /// Purchases accepted: newly stored plus duplicates.
    pub accepted: usize,
    /// Purchases stored for the first time.
    pub stored: usize,
    /// Orders your tenant had already sent with the same values: accepted, nothing changed.
    pub duplicates: usize,
    /// The purchases not accepted, each with its index and the reason (an order id already
    /// stored with different values among them).
    pub rejected: Vec<RejectedTransaction>,
}

/// Why a body of purchases could not be taken at all.
#[derive(Debug, thiserror::Error)]
pub enum TransactionIngestError {
    /// The body could not be split into purchases.
    #[error("{0:?}")]
    Body(BodyError),
    /// Every purchase was rejected.
    #[error("all {} purchases were rejected", .0.len())]
    AllRejected(Vec<RejectedTransaction>),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

type FieldError = (Option<&'static str>, String);

/// Validates one purchase object against `now_ms` (for the future-time check).
pub fn parse_transaction(
    value: Value,
    now_ms: i64,
) -> Result<NewTransaction, (Option<String>, FieldError)> {
    let Value::Object(obj) = value else {
        return Err((
            None,
            (None, "each purchase must be a JSON object".to_owned()),
        ));
    };
    let order_id = obj
        .get("order_id")
        .and_then(Value::as_str)
        .filter(|id| valid_id(id))
        .map(str::to_owned);
    let for_error = order_id.clone();
    parse_fields(&obj, order_id, now_ms).map_err(|e| (for_error, e))
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_TRANSACTION_ID_BYTES && !s.contains('\0')
}

fn parse_fields(
    obj: &Map<String, Value>,
    order_id: Option<String>,
    now_ms: i64,
) -> Result<NewTransaction, FieldError> {
    const KNOWN: [&str; 5] = [
        "order_id",
        "customer_id",
        "occurred_at",
        "amount",
        "currency",
    ];
    if let Some(unknown) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err((
            None,
            format!(
                "unknown field `{unknown}` (expected one of: {})",
                KNOWN.join(", ")
            ),
        ));
    }
    let order_id = order_id.ok_or_else(|| {
        (
            Some("order_id"),
            format!(
                "order_id is required: a string of 1 to {MAX_TRANSACTION_ID_BYTES} bytes, \
                 without NUL"
            ),
        )
    })?;
    let customer_id = match present(obj, "customer_id") {
        Some(Value::String(s)) if valid_id(s) => s.clone(),
        _ => {
            return Err((
                Some("customer_id"),
                format!(
                    "customer_id is required: a string of 1 to {MAX_TRANSACTION_ID_BYTES} \
                     bytes, without NUL"
                ),
            ))
        }
    };
    let occurred_at_ms = occurred_at(present(obj, "occurred_at"), now_ms)?;
    let amount = match present(obj, "amount") {
        None => {
            return Err((
                Some("amount"),
                "amount is required: the order's net value, a number >= 0".to_owned(),
            ))
        }
        Some(v) => v
            .as_f64()
            .ok_or_else(|| (Some("amount"), format!("amount must be a number, got {v}")))?,
    };
    if !amount.is_finite() || amount > MAX_AMOUNT {
        return Err((
            Some("amount"),
            format!("amount must be a finite number of at most {MAX_AMOUNT:e}, got {amount}"),
        ));
    }
    if amount < 0.0 {
        return Err((
            Some("amount"),
            format!("amount must not be negative (got {amount}); refunds: send the net amount"),
        ));
    }
    let currency = match present(obj, "currency") {
        None => None,
        Some(Value::String(c)) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) => {
            Some(c.clone())
        }
        Some(v) => {
            return Err((
                Some("currency"),
                format!("currency must be an ISO 4217 code of three capital letters, got {v}"),
            ))
        }
    };
    Ok(NewTransaction {
        order_id,
        customer_id,
        occurred_at_ms,
        // `-0.0` is stored as `0.0`, so a repeat compares equal whichever was sent.
        amount: amount + 0.0,
        currency,
    })
}

/// The value of a field that is present and not null.
fn present<'a>(obj: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    obj.get(field).filter(|v| !v.is_null())
}

/// RFC 3339 text (any offset) or epoch milliseconds, from 1970 to five minutes past `now_ms`.
fn occurred_at(value: Option<&Value>, now_ms: i64) -> Result<i64, FieldError> {
    let bad = |detail: String| (Some("occurred_at"), detail);
    let ms = crate::ingest::epoch_ms_field(value, "occurred_at")?;
    if ms > now_ms.saturating_add(FUTURE_TOLERANCE_MS) {
        return Err(bad(format!(
            "occurred_at lies in the future ({ms} ms; now is {now_ms} ms, and at most 5 minutes \
             ahead is accepted)"
        )));
    }
    Ok(ms)
}

/// Validates every purchase of a split body: the valid ones (with their index) and the
/// rejections.
pub fn validate_all(
    items: Vec<crate::ingest::Item>,
    now_ms: i64,
) -> (Vec<(usize, NewTransaction)>, Vec<RejectedTransaction>) {
    let mut valid = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items {
        match item
            .map_err(|reason| (None, (None, reason)))
            .and_then(|v| parse_transaction(v, now_ms))
        {
            Ok(t) => valid.push((index, t)),
            Err((order_id, (field, reason))) => rejected.push(RejectedTransaction {
                index,
                order_id,
                field: field.map(str::to_owned),
                reason,
            }),
        }
    }
    (valid, rejected)
}

/// The ingestion use case: splits, validates and stores a body of purchases for the tenant,
/// counting outcomes in the metrics. `now_ms` is the server's clock (the future-time check and
/// the received time).
pub async fn ingest(
    state: &crate::AppState,
    tenant_id: &str,
    body: &[u8],
    framing: Framing,
    now_ms: i64,
) -> Result<TransactionReport, TransactionIngestError> {
    let items = crate::ingest::split_body(body, framing).map_err(TransactionIngestError::Body)?;
    let (valid, mut rejected) = validate_all(items, now_ms);
    let metrics = state.metrics().predictions();
    metrics.transactions(tenant_id, "rejected", rejected.len() as u64);
    if valid.is_empty() && !rejected.is_empty() {
        return Err(TransactionIngestError::AllRejected(rejected));
    }
    let purchases: Vec<NewTransaction> = valid.iter().map(|(_, t)| t.clone()).collect();
    let outcomes = state
        .store()
        .insert_transactions(tenant_id, &purchases, now_ms)
        .await?;
    let (mut stored, mut duplicates, mut conflicts) = (0, 0, 0);
    for ((index, t), outcome) in valid.into_iter().zip(outcomes) {
        match outcome {
            TransactionInsertion::Stored => stored += 1,
            TransactionInsertion::Duplicate => duplicates += 1,
            TransactionInsertion::Conflict => {
                conflicts += 1;
                rejected.push(RejectedTransaction {
                    index,
                    reason: format!(
                        "order `{}` was already sent with a different customer, time, amount or \
                         currency; a stored order does not change",
                        t.order_id
                    ),
                    order_id: Some(t.order_id),
                    field: Some("order_id".to_owned()),
                })
            }
        }
    }
    rejected.sort_by_key(|r| r.index);
    metrics.transactions(tenant_id, "stored", stored as u64);
    metrics.transactions(tenant_id, "duplicate", duplicates as u64);
    metrics.transactions(tenant_id, "conflict", conflicts as u64);
    if stored + duplicates == 0 && !rejected.is_empty() {
        return Err(TransactionIngestError::AllRejected(rejected));
    }
    Ok(TransactionReport {
        accepted: stored + duplicates,
        stored,
        duplicates,
        rejected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn reject(v: Value) -> (Option<String>, Option<&'static str>, String) {
        let (id, (field, reason)) = parse_transaction(v, NOW).unwrap_err();
        (id, field, reason)
    }

    #[test]
    fn purchases_parse_with_both_time_forms_and_zero_amounts() {
        let t = parse_transaction(
            json!({"order_id":"o1","customer_id":"c","occurred_at":"2025-12-31T23:00:00+01:00",
                   "amount":12.5,"currency":"EUR"}),
            NOW,
        )
        .unwrap();
        assert_eq!(t.occurred_at_ms, NOW - 2 * 3_600_000);
        assert_eq!((t.amount, t.currency.as_deref()), (12.5, Some("EUR")));
        let t = parse_transaction(
            json!({"order_id":"o1","customer_id":"c","occurred_at":NOW + 60_000,"amount":-0.0}),
            NOW,
        )
        .unwrap();
        assert_eq!(t.amount.to_bits(), 0.0f64.to_bits());
    }

    #[test]
    fn each_bad_field_is_named() {
        let base = || json!({"order_id":"o1","customer_id":"c","occurred_at":1,"amount":3});
        let with = |field: &str, v: Value| {
            let mut b = base();
            b[field] = v;
            b
        };
        let without = |field: &str| {
            let mut b = base();
            b.as_object_mut().unwrap().remove(field);
            b
        };
        let cases: Vec<(Value, Option<&str>, &str)> = vec![
            (json!("x"), None, "JSON object"),
            (without("order_id"), Some("order_id"), "required"),
            (with("order_id", json!("")), Some("order_id"), "required"),
            (without("customer_id"), Some("customer_id"), "required"),
            (
                with("customer_id", json!("a\u{0}")),
                Some("customer_id"),
                "NUL",
            ),
            (without("occurred_at"), Some("occurred_at"), "required"),
            (
                with("occurred_at", json!("soon")),
                Some("occurred_at"),
                "RFC 3339",
            ),
            (with("occurred_at", json!(-1)), Some("occurred_at"), "1970"),
            (
                with("occurred_at", json!(NOW + FUTURE_TOLERANCE_MS + 1)),
                Some("occurred_at"),
                "future",
            ),
            (without("amount"), Some("amount"), "required"),
            (with("amount", json!(-0.01)), Some("amount"), "refunds"),
            (with("amount", json!("NaN")), Some("amount"), "number"),
            (with("amount", json!(1e300)), Some("amount"), "finite"),
            (
                with("currency", json!("euro")),
                Some("currency"),
                "ISO 4217",
            ),
            (with("colour", json!("red")), None, "unknown field `colour`"),
        ];
        for (value, field, has) in cases {
            let (id, got_field, reason) = reject(value.clone());
            assert_eq!(got_field, field, "{value}: {reason}");
            assert!(reason.contains(has), "{value}: {reason}");
            if value.get("order_id").and_then(Value::as_str) == Some("o1") {
                assert_eq!(id.as_deref(), Some("o1"), "{value}");
            }
        }
    }
}
