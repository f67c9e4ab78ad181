//! Single-core throughput of the weber engine, in the same units as
//! `oracle/numpy_throughput.py` (ratios per second over USERS x LEN).
//!
//! ```text
//! cargo run --release -p weber --example throughput -- [USERS] [LEN] [RUNS]
//! python3 crates/weber/oracle/numpy_throughput.py [USERS] [LEN] [RUNS]
//! ```

use std::hint::black_box;
use std::time::Instant;

use weber::{Engine, Interaction, ProfileState, Update, WeberParams};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A sentiment on the 1e-4 grid in [-1, 1].
    fn sentiment(&mut self) -> f64 {
        (self.next() % 20_001) as f64 / 10_000.0 - 1.0
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let users = arg(1, 100_000);
    let len = arg(2, 100);
    let runs = arg(3, 5).max(1);
    let params = WeberParams::default();
    let mut rng = Rng(42);

    // CSR layout: each user's interactions are contiguous and time-ordered.
    let mut data = Vec::with_capacity(users * len);
    let mut quant = Vec::with_capacity(users * len);
    for _ in 0..users {
        for i in 0..len {
            let s = rng.sentiment();
            data.push(Interaction::new(s, 1_700_000_000_000 + i as i64 * 1000, 0));
            quant.push(weber::quantize(s).expect("grid value"));
        }
    }
    let ratios_per_pass = (users * len.min(params.window())) as f64;
    let mut engine = Engine::new(params);

    let mut batch = Vec::new();
    let mut batch_q = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let mut acc = 0.0;
        for u in data.chunks_exact(len) {
            if let Ok(p) = engine.profile(black_box(u)) {
                acc += p.weber_constant;
            }
        }
        black_box(acc);
        batch.push(ratios_per_pass / t.elapsed().as_secs_f64());

        let t = Instant::now();
        let mut acc = 0.0;
        for u in quant.chunks_exact(len) {
            if let Ok(p) = engine.profile_quantized(black_box(u), None) {
                acc += p.weber_constant;
            }
        }
        black_box(acc);
        batch_q.push(ratios_per_pass / t.elapsed().as_secs_f64());
    }

    // Streaming: 10k full states (W = 100), round-robin new events.
    let n_states = 10_000.min(users);
    let mut states: Vec<ProfileState> = (0..n_states)
        .map(|u| {
            ProfileState::rebuild(&data[u * len..(u + 1) * len], &params).expect("valid history")
        })
        .collect();
    let updates = 2_000_000usize;
    let events: Vec<f64> = (0..updates).map(|_| rng.sentiment()).collect();
    let mut stream = Vec::new();
    let mut time = 1_800_000_000_000i64;
    for _ in 0..runs {
        let t = Instant::now();
        let mut acc = 0.0;
        for (k, &s) in events.iter().enumerate() {
            if k % n_states == 0 {
                time += 1;
            }
            let st = &mut states[k % n_states];
            if let Ok(Update::Updated(p)) =
                st.apply_with(&Interaction::new(s, time, 0), &mut engine)
            {
                acc += p.weber_constant;
            }
        }
        black_box(acc);
        stream.push(updates as f64 / t.elapsed().as_secs_f64());
    }
    let per_user = states.first().map_or(0, ProfileState::footprint_bytes);

    println!(
        "shape: {users} users x {len} interactions (W = {}), {runs} runs, 1 core",
        params.window()
    );
    println!("rust batch (from Interaction, validate+order-check+quantize+profile): {:.1} M ratios/s (median)", median(batch) / 1e6);
    println!("rust batch (pre-quantized i16 columns):                           {:.1} M ratios/s (median)", median(batch_q) / 1e6);
    println!("rust streaming apply (W = 100, full re-derive per update):        {:.2} M updates/s (median)", median(stream) / 1e6);
    println!("streaming state footprint: {per_user} bytes/user");
}
