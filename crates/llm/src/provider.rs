//! Provider names, normalised.
//!
//! OpenTelemetry renamed the provider attribute (`gen_ai.system` became
//! `gen_ai.provider.name`) and some of its values on the way. signalbox stores, labels and
//! prices every call under the **current `gen_ai.provider.name` spelling**, lower-cased, so
//! that an old and a new instrumentation of the same provider add up:
//!
//! | received (any case)                  | stored as            |
//! |--------------------------------------|----------------------|
//! | `az.ai.openai`, `azure_openai`       | `azure.ai.openai`    |
//! | `az.ai.inference`                    | `azure.ai.inference` |
//! | `gemini`                             | `gcp.gemini`         |
//! | `vertex_ai`, `vertexai`              | `gcp.vertex_ai`      |
//! | `xai`                                | `x_ai`               |
//! | `mistral`, `mistralai`               | `mistral_ai`         |
//! | `bedrock`                            | `aws.bedrock`        |
//! | `watsonx`                            | `ibm.watsonx.ai`     |
//!
//! Any other name is kept (lower-cased) as it is.
//!
//! Prices are looked up under that name, and for two Google endpoints also under another
//! (see [`billing_fallback`]): Vertex AI and "any Google generative AI endpoint" list the same
//! per-token prices for Gemini models as the Gemini API. Azure OpenAI is deliberately **not**
//! priced as OpenAI: its prices depend on the deployment type and region, so an Azure call is
//! unpriced until the tenant adds `azure.ai.openai` prices (never guessed).

use std::borrow::Cow;

/// Old or informal spellings and the `gen_ai.provider.name` value they stand for.
pub const ALIASES: [(&str, &str); 11] = [
    ("az.ai.openai", "azure.ai.openai"),
    ("azure_openai", "azure.ai.openai"),
    ("az.ai.inference", "azure.ai.inference"),
    ("gemini", "gcp.gemini"),
    ("vertex_ai", "gcp.vertex_ai"),
    ("vertexai", "gcp.vertex_ai"),
    ("xai", "x_ai"),
    ("mistral", "mistral_ai"),
    ("mistralai", "mistral_ai"),
    ("bedrock", "aws.bedrock"),
    ("watsonx", "ibm.watsonx.ai"),
];

/// The stored spelling of a provider name: lower-cased, old spellings mapped to the current
/// `gen_ai.provider.name` values. Borrows when the name is already canonical.
///
/// ```
/// use llm::provider::canonical;
/// assert_eq!(canonical("az.ai.openai"), "azure.ai.openai");
/// assert_eq!(canonical("OpenAI"), "openai");
/// assert_eq!(canonical("gcp.gemini"), "gcp.gemini");
/// ```
pub fn canonical(name: &str) -> Cow<'_, str> {
    let lower: Cow<'_, str> = if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    };
    match ALIASES.iter().find(|(alias, _)| *alias == lower.as_ref()) {
        Some((_, canonical)) => Cow::Borrowed(canonical),
        None => lower,
    }
}

/// The provider whose prices apply when a canonical provider has no entry for a model:
/// Vertex AI and the generic Google endpoint bill Gemini models at the Gemini API's list
/// prices.
pub fn billing_fallback(canonical: &str) -> Option<&'static str> {
    match canonical {
        "gcp.vertex_ai" | "gcp.gen_ai" => Some("gcp.gemini"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_map_to_canonical_names_that_are_fixed_points() {
        for (alias, target) in ALIASES {
            assert_eq!(canonical(alias), target);
            assert_eq!(canonical(&alias.to_uppercase()), target);
            assert_eq!(canonical(target), target, "{target} must be canonical");
        }
        assert_eq!(canonical("anthropic"), "anthropic");
        assert!(matches!(canonical("anthropic"), Cow::Borrowed(_)));
    }
}
