//! Token counts by exclusive type.
//!
//! Providers and the OpenTelemetry GenAI conventions report overlapping numbers: input tokens
//! *include* cache reads and cache writes, output tokens *include* reasoning tokens. signalbox
//! stores and exports exclusive counts, so that summing every `token_type` gives the total once
//! and a price applies to each token exactly once.

use serde::{Deserialize, Serialize};

/// One exclusive kind of token, the `token_type` label of `model_api_tokens_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenType {
    /// Prompt tokens read neither from nor into the provider's cache.
    Input,
    /// Completion tokens that are not reasoning tokens.
    Output,
    /// Prompt tokens served from the provider's prompt cache.
    CacheRead,
    /// Prompt tokens written into the provider's prompt cache.
    CacheWrite,
    /// Hidden reasoning ("thinking") tokens, billed as output by most providers.
    Reasoning,
}

impl TokenType {
    /// Every token type, in label order.
    pub const ALL: [TokenType; 5] = [
        TokenType::Input,
        TokenType::Output,
        TokenType::CacheRead,
        TokenType::CacheWrite,
        TokenType::Reasoning,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenType::Input => "input",
            TokenType::Output => "output",
            TokenType::CacheRead => "cache_read",
            TokenType::CacheWrite => "cache_write",
            TokenType::Reasoning => "reasoning",
        }
    }
}

/// Exclusive token counts of one call (or a sum of calls).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenCounts {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub reasoning: u64,
}

impl TokenCounts {
    /// The count of one type.
    pub fn get(&self, token_type: TokenType) -> u64 {
        match token_type {
            TokenType::Input => self.input,
            TokenType::Output => self.output,
            TokenType::CacheRead => self.cache_read,
            TokenType::CacheWrite => self.cache_write,
            TokenType::Reasoning => self.reasoning,
        }
    }

    /// All tokens, each counted once. Saturates rather than wraps.
    pub fn total(&self) -> u64 {
        TokenType::ALL
            .iter()
            .fold(0u64, |sum, t| sum.saturating_add(self.get(*t)))
    }

    /// The sum of two counts, or `None` on overflow.
    pub fn checked_add(&self, other: &TokenCounts) -> Option<TokenCounts> {
        Some(TokenCounts {
            input: self.input.checked_add(other.input)?,
            output: self.output.checked_add(other.output)?,
            cache_read: self.cache_read.checked_add(other.cache_read)?,
            cache_write: self.cache_write.checked_add(other.cache_write)?,
            reasoning: self.reasoning.checked_add(other.reasoning)?,
        })
    }

    /// Exclusive counts from the inclusive numbers providers and OpenTelemetry report:
    /// `input_total` includes `cache_read` and `cache_write`, `output_total` includes
    /// `reasoning`. `None` when a part exceeds its whole.
    pub fn from_inclusive(
        input_total: u64,
        output_total: u64,
        cache_read: u64,
        cache_write: u64,
        reasoning: u64,
    ) -> Option<TokenCounts> {
        let cached = cache_read.checked_add(cache_write)?;
        Some(TokenCounts {
            input: input_total.checked_sub(cached)?,
            output: output_total.checked_sub(reasoning)?,
            cache_read,
            cache_write,
            reasoning,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn from_inclusive_keeps_every_token_once(input in any::<u64>(), output in any::<u64>(), cache_read in any::<u64>(), cache_write in any::<u64>(), reasoning in any::<u64>()) {
            match TokenCounts::from_inclusive(input, output, cache_read, cache_write, reasoning) {
                Some(t) => {
                    prop_assert_eq!(t.input as u128 + t.cache_read as u128 + t.cache_write as u128, input as u128);
                    prop_assert_eq!(t.output as u128 + t.reasoning as u128, output as u128);
                    prop_assert_eq!((t.cache_read, t.cache_write, t.reasoning), (cache_read, cache_write, reasoning));
                    let total = TokenType::ALL.iter().map(|k| t.get(*k) as u128).sum::<u128>();
                    prop_assert_eq!(t.total() as u128, total.min(u64::MAX as u128));
                }
                None => prop_assert!(
                    cache_read as u128 + cache_write as u128 > input as u128 || reasoning > output
                ),
            }
        }

        #[test]
        fn small_parts_always_fit(input in 0u64..1 << 40, a in 0u64..=100, b in 0u64..=100, output in 0u64..1 << 40, r in 0u64..=100) {
            let cr = input * a / 200;
            let cw = input * b / 200;
            let reasoning = output * r / 100;
            prop_assert!(TokenCounts::from_inclusive(input, output, cr, cw, reasoning).is_some());
        }
    }
}
