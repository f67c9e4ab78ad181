//! A reused `Engine` (as batch jobs use one per thread) gives exactly what a fresh call gives,
//! whatever it profiled before.

use proptest::prelude::*;
use weber::{profile, Engine, Interaction, WeberParams};

fn user() -> impl Strategy<Value = Vec<Interaction>> {
    proptest::collection::vec((-10_000i32..=10_000, 0i64..50, 0u64..1_000), 0..160).prop_map(|v| {
        v.into_iter()
            .map(|(q, t, tie)| Interaction::new(f64::from(q) / 10_000.0, t, tie))
            .collect()
    })
}

proptest! {
    #[test]
    fn reused_engine_equals_fresh_profile(users in proptest::collection::vec(user(), 1..8)) {
        let params = WeberParams::default();
        let mut engine = Engine::new(params);
        for events in &users {
            let fresh = profile(events, &params).unwrap();
            let reused = engine.profile(events).unwrap();
            prop_assert_eq!(fresh, reused);
        }
    }
}

proptest! {
    /// With distinct (time, tiebreak) keys, the order of the input slice does not matter.
    /// (Equal keys are one event, and then the first seen wins, which is order-dependent by
    /// design.)
    #[test]
    fn profile_ignores_input_order(events in user(), seed in any::<u64>()) {
        let params = WeberParams::default();
        let events: Vec<Interaction> = events
            .iter()
            .enumerate()
            .map(|(i, e)| Interaction::new(e.sentiment, e.time_ms, i as u64))
            .collect();
        let mut shuffled = events.clone();
        // A deterministic shuffle from the seed.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(profile(&events, &params).unwrap(), profile(&shuffled, &params).unwrap());
    }
}
