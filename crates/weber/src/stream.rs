//! The compact streaming profile state.

use crate::batch::{normalize, profile_of_window, with_scratch, Engine};
use crate::kernel::{self, Scratch};
use crate::types::{Interaction, WeberError, WeberParams, WeberProfile};

/// The newest event's place in its window (see [`ProfileState::newest_calculation`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calculation {
    /// The event's (quantized) sentiment.
    pub sentiment: f64,
    /// Mean of the window's earlier sentiments (the event's own for the first event).
    pub baseline: f64,
    /// `|sentiment - baseline| / (|baseline| + eps)` (0 for the first event).
    pub ratio: f64,
}

/// Outcome of [`ProfileState::apply`].
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub enum Update {
    /// The event was newer than every event seen: it was appended (the
    /// oldest dropped when the window was full) and this is the re-derived
    /// profile over the window.
    Updated(WeberProfile),
    /// The event's `(time_ms, tiebreak)` equals the newest key: it is the
    /// same event, nothing changed.
    Duplicate,
    /// The event is older than the newest key (a late event, or a late
    /// duplicate of an older one), or the window grew beyond what the state
    /// retained. Nothing changed; the caller must store the event in its
    /// de-duplicated history (if the key is new) and replace the state with
    /// [`ProfileState::rebuild`] over that history.
    NeedsRebuild,
}

/// Streaming profile state of one user: the quantized sentiments of the
/// last `W` distinct events in `(time_ms, tiebreak)` order, the key of the
/// newest event and the number of distinct events applied.
///
/// At `W = 100` it takes `size_of::<ProfileState>() + heap_bytes()` =
/// 48 + 200 = 248 bytes (see [`ProfileState::footprint_bytes`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileState {
    /// Quantized sentiments, oldest first (shifted left on append when full);
    /// `len() <= W`, capacity `W`.
    window: Vec<i16>,
    newest_time_ms: i64,
    newest_tiebreak: u64,
    /// Distinct events applied since the last rebuild (plus the rebuilt
    /// history's size). `0` means empty (then the newest key is unset).
    count: u64,
}

impl ProfileState {
    /// An empty state (allocates nothing until the first event).
    #[must_use]
    pub const fn new() -> Self {
        Self {
            window: Vec::new(),
            newest_time_ms: 0,
            newest_tiebreak: 0,
            count: 0,
        }
    }

    /// Rebuilds the state from a user's stored history (any order;
    /// repeated keys keep the first, as in the batch path).
    ///
    /// # Errors
    /// [`WeberError::InvalidSentiment`] if any stored sentiment is invalid.
    pub fn rebuild(history: &[Interaction], params: &WeberParams) -> Result<Self, WeberError> {
        with_scratch(|s| {
            let norm = normalize(history, params.window(), s)?;
            let cap = if s.q.is_empty() { 0 } else { params.window() };
            let mut window = Vec::with_capacity(cap);
            window.extend_from_slice(&s.q);
            let (t, tb) = norm.newest.unwrap_or((0, 0));
            Ok(Self {
                window,
                newest_time_ms: t,
                newest_tiebreak: tb,
                count: norm.distinct as u64,
            })
        })
    }

    /// Applies one event, re-deriving the profile when it is new (see
    /// [`Update`]). Uses a per-thread scratch; see [`ProfileState::apply_with`]
    /// for an explicit one.
    ///
    /// # Errors
    /// [`WeberError::InvalidSentiment`] (index 0) for an invalid sentiment;
    /// the state is then unchanged.
    pub fn apply(
        &mut self,
        interaction: &Interaction,
        params: &WeberParams,
    ) -> Result<Update, WeberError> {
        with_scratch(|s| self.apply_inner(interaction, params, s))
    }

    /// [`ProfileState::apply`] with an explicit [`Engine`] (its parameters
    /// and buffers).
    ///
    /// # Errors
    /// As [`ProfileState::apply`].
    pub fn apply_with(
        &mut self,
        interaction: &Interaction,
        engine: &mut Engine,
    ) -> Result<Update, WeberError> {
        let params = *engine.params();
        self.apply_inner(interaction, &params, engine.scratch_mut())
    }

    fn apply_inner(
        &mut self,
        interaction: &Interaction,
        params: &WeberParams,
        scratch: &mut Scratch,
    ) -> Result<Update, WeberError> {
        let q = kernel::quantize_at(interaction.sentiment, 0)?;
        let key = interaction.key();
        if self.count > 0 {
            let newest = (self.newest_time_ms, self.newest_tiebreak);
            if key == newest {
                return Ok(Update::Duplicate);
            }
            if key < newest {
                return Ok(Update::NeedsRebuild);
            }
        }
        let w = params.window();
        if !self.covers(w) {
            return Ok(Update::NeedsRebuild);
        }
        if self.window.len() >= w {
            // Drop the oldest so that exactly w - 1 remain, then append.
            let drop = self.window.len() + 1 - w;
            self.window.drain(..drop);
        }
        if self.window.capacity() < w {
            self.window.reserve_exact(w - self.window.len());
        } else if self.window.capacity() > w {
            self.window.shrink_to(w);
        }
        self.window.push(q);
        self.newest_time_ms = key.0;
        self.newest_tiebreak = key.1;
        self.count = self.count.saturating_add(1);
        Ok(Update::Updated(profile_of_window(
            &self.window,
            params.eps(),
            Some(key.0),
            scratch,
        )))
    }

    /// Whether the retained events cover a window of `w` (false only when
    /// events were dropped and `w` asks for more than is retained).
    fn covers(&self, w: usize) -> bool {
        self.window.len() >= w || self.count <= self.window.len() as u64
    }

    /// The current profile over the last `min(W, len)` retained events, or
    /// `None` if `params.window()` exceeds what the state retained (after a
    /// window increase; rebuild then).
    #[must_use]
    pub fn profile(&self, params: &WeberParams) -> Option<WeberProfile> {
        let w = params.window();
        if !self.covers(w) {
            return None;
        }
        let start = self.window.len().saturating_sub(w);
        let q = self.window.get(start..).unwrap_or(&[]);
        let newest = (self.count > 0).then_some(self.newest_time_ms);
        Some(with_scratch(|s| {
            profile_of_window(q, params.eps(), newest, s)
        }))
    }

    /// The newest event's sentiment, its baseline and its ratio within the window the current
    /// profile covers (the last `min(W, len)` retained events), as the calculation audit
    /// records them. `None` when empty or when [`ProfileState::profile`] would be `None`.
    ///
    /// ```
    /// use weber::{Interaction, ProfileState, WeberParams};
    /// let params = WeberParams::default();
    /// let mut state = ProfileState::new();
    /// for (i, s) in [0.5, 0.5, -0.5].iter().enumerate() {
    ///     let _ = state.apply(&Interaction::new(*s, i as i64, 0), &params)?;
    /// }
    /// let c = state.newest_calculation(&params).unwrap();
    /// assert_eq!((c.sentiment, c.baseline), (-0.5, 0.5));
    /// assert!((c.ratio - 1.0 / 0.6).abs() < 1e-12); // |-0.5 - 0.5| / (0.5 + 0.1)
    /// # Ok::<(), weber::WeberError>(())
    /// ```
    #[must_use]
    pub fn newest_calculation(&self, params: &WeberParams) -> Option<Calculation> {
        let w = params.window();
        if !self.covers(w) {
            return None;
        }
        let q = self.window.get(self.window.len().saturating_sub(w)..)?;
        let (&last, before) = q.split_last()?;
        let scale = crate::types::SENTIMENT_SCALE;
        let sentiment = f64::from(last) / scale;
        if before.is_empty() {
            // baseline_0 = s_0 and ratio_0 = 0 by definition.
            return Some(Calculation {
                sentiment,
                baseline: sentiment,
                ratio: 0.0,
            });
        }
        // The kernel's exact form: integer prefix sum, one division.
        let i = before.len() as f64;
        let prefix: i64 = before.iter().map(|&v| i64::from(v)).sum();
        let p = prefix as f64;
        Some(Calculation {
            sentiment,
            baseline: p / (i * scale),
            ratio: (f64::from(last) * i - p).abs() / (p.abs() + params.eps() * scale * i),
        })
    }

    /// Number of retained events (`min(distinct events, W)`).
    #[must_use]
    pub fn len(&self) -> usize {
        self.window.len()
    }

    /// Whether no event has been applied.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Distinct events seen (the rebuilt history plus events applied since).
    #[must_use]
    pub const fn events_seen(&self) -> u64 {
        self.count
    }

    /// Key `(time_ms, tiebreak)` of the newest event.
    #[must_use]
    pub const fn newest_key(&self) -> Option<(i64, u64)> {
        if self.count > 0 {
            Some((self.newest_time_ms, self.newest_tiebreak))
        } else {
            None
        }
    }

    /// Heap bytes owned by the state (the `i16` ring buffer's capacity).
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        self.window.capacity() * std::mem::size_of::<i16>()
    }

    /// Total footprint: `size_of::<ProfileState>() + heap_bytes()`.
    #[must_use]
    pub fn footprint_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.heap_bytes()
    }
}
