//! Usage grouped by any subset of day, provider, model, operation and conversation.

use serde::{Deserialize, Serialize};

use crate::latency::LatencyHistogram;
use crate::{Cost, TokenCounts};

/// A dimension usage can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Day,
    Provider,
    Model,
    Operation,
    Conversation,
}

/// The sums of one group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageTotals {
    pub calls: u64,
    pub errors: u64,
    pub tokens: TokenCounts,
    /// Sum of the effective cost of priced calls.
    pub cost: Cost,
    /// Calls with no price (their cost is not in `cost`).
    pub unpriced_calls: u64,
    pub latency: LatencyHistogram,
}
