//! Synthetic but realistic CDP data for the demo and the tests: a `profiles` table (signup time,
//! country, plan, age) and a `behaviours` table (first app open, email click, cart, purchase,
//! unsubscribe, churn), drawn from a seed so every run sees the same customers.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};

/// 2026-01-01 00:00:00 UTC in µs: the demo's first day.
pub const START_US: i64 = 1_767_225_600_000_000;
const DAY_US: i64 = 86_400_000_000;

/// `CREATE TABLE` statements of the two tables.
pub const CREATE: [&str; 2] = [
    "CREATE TABLE profiles (customer_id VARCHAR PRIMARY KEY, signup_at TIMESTAMP, country VARCHAR, plan VARCHAR, age BIGINT)",
    "CREATE TABLE behaviours (customer_id VARCHAR PRIMARY KEY, app_open TIMESTAMP MERGE MIN, email_click TIMESTAMP MERGE MIN, cart_add TIMESTAMP MERGE MIN, purchase TIMESTAMP MERGE MIN, unsubscribed TIMESTAMP MERGE MIN, churned TIMESTAMP MERGE MIN)",
];

/// The generator.
#[derive(Debug, Clone, Copy)]
pub struct Cdp {
    /// Seed of every draw.
    pub seed: u64,
}

impl Cdp {
    fn u(&self, i: usize, salt: u64) -> f64 {
        let h = mix(self.seed
            ^ mix((i as u64).wrapping_mul(0x9E37_79B9) ^ salt.wrapping_mul(0xA076_1D64_78BD_642F)));
        (h >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Customer `i`'s key.
    pub fn key(&self, i: usize) -> String {
        format!(
            "{:016x}",
            mix(self.seed.wrapping_add(0x5EED) ^ mix(i as u64))
        )
    }

    fn at(base: i64, days: f64) -> i64 {
        // Whole minutes, like event times usually are.
        base + ((days * DAY_US as f64) as i64 / 60_000_000) * 60_000_000
    }

    /// Signup time of customer `i`: spread from 10 days before the start to 25 days after.
    pub fn signup(&self, i: usize) -> i64 {
        Self::at(START_US - 10 * DAY_US, 35.0 * self.u(i, 1))
    }

    /// Customer `i`'s behaviour times, in the `behaviours` column order.
    pub fn behaviours(&self, i: usize) -> [Option<i64>; 6] {
        let s = self.signup(i);
        let p = |salt: u64, prob: f64| self.u(i, salt) < prob;
        let app_open = p(10, 0.6).then(|| Self::at(s, 6.0 * self.u(i, 11)));
        let email_click = p(12, 0.25).then(|| Self::at(s, 4.0 * self.u(i, 13)));
        let cart_add = app_open
            .filter(|_| p(14, 0.45))
            .map(|a| Self::at(a, 1.0 + 12.0 * self.u(i, 15)));
        let purchase = cart_add
            .filter(|_| p(16, 0.5))
            .map(|c| Self::at(c, 5.0 * self.u(i, 17)));
        let unsubscribed = p(18, 0.06).then(|| Self::at(s, 1.0 + 20.0 * self.u(i, 19)));
        let churned = p(20, 0.04).then(|| Self::at(s, 3.0 + 20.0 * self.u(i, 21)));
        [
            app_open,
            email_click,
            cart_add,
            purchase,
            unsubscribed,
            churned,
        ]
    }

    /// The profiles of customers `range`.
    pub fn profiles(&self, range: std::ops::Range<usize>) -> RecordBatch {
        const COUNTRIES: [&str; 6] = ["FR", "DE", "US", "UK", "ES", "IT"];
        const PLANS: [&str; 3] = ["free", "free", "pro"];
        let keys: Vec<String> = range.clone().map(|i| self.key(i)).collect();
        let signup: Vec<i64> = range.clone().map(|i| self.signup(i)).collect();
        let country: Vec<&str> = range
            .clone()
            .map(|i| {
                COUNTRIES
                    .get((self.u(i, 2) * 6.0) as usize)
                    .copied()
                    .unwrap_or("FR")
            })
            .collect();
        let plan: Vec<&str> = range
            .clone()
            .map(|i| {
                PLANS
                    .get((self.u(i, 3) * 3.0) as usize)
                    .copied()
                    .unwrap_or("free")
            })
            .collect();
        let age: Vec<i64> = range.map(|i| 18 + (self.u(i, 4) * 60.0) as i64).collect();
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        let schema = Schema::new(vec![
            Field::new("customer_id", DataType::Utf8, false),
            Field::new("signup_at", ts, true),
            Field::new("country", DataType::Utf8, true),
            Field::new("plan", DataType::Utf8, true),
            Field::new("age", DataType::Int64, true),
        ]);
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(keys)),
            Arc::new(TimestampMicrosecondArray::from(signup)),
            Arc::new(StringArray::from(country)),
            Arc::new(StringArray::from(plan)),
            Arc::new(Int64Array::from(age)),
        ];
        // The schema and columns are built together above; they always agree.
        RecordBatch::try_new(Arc::new(schema), cols)
            .unwrap_or_else(|_| RecordBatch::new_empty(Arc::new(Schema::empty())))
    }

    /// The behaviours of customers `range`.
    pub fn behaviours_batch(&self, range: std::ops::Range<usize>) -> RecordBatch {
        const NAMES: [&str; 6] = [
            "app_open",
            "email_click",
            "cart_add",
            "purchase",
            "unsubscribed",
            "churned",
        ];
        let rows: Vec<[Option<i64>; 6]> = range.clone().map(|i| self.behaviours(i)).collect();
        let keys: Vec<String> = range.map(|i| self.key(i)).collect();
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        let mut fields = vec![Field::new("customer_id", DataType::Utf8, false)];
        let mut cols: Vec<ArrayRef> = vec![Arc::new(StringArray::from(keys))];
        for (c, name) in NAMES.iter().enumerate() {
            fields.push(Field::new(*name, ts.clone(), true));
            let v: Vec<Option<i64>> = rows.iter().map(|r| r.get(c).copied().flatten()).collect();
            cols.push(Arc::new(TimestampMicrosecondArray::from(v)));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
            .unwrap_or_else(|_| RecordBatch::new_empty(Arc::new(Schema::empty())))
    }
}

/// SplitMix64: a fast, well-mixed hash of a counter (every draw of the generated data).
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
