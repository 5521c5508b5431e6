//! `system.costs`: what each tenant's statements cost per day, from the query log.
//!
//! One row per tenant and UTC day of the query log (`system.queries`), with the day's statements,
//! CPU seconds, bytes scanned and bytes written, and a cost figure:
//!
//! ```text
//! cost = cpu_seconds × cpu_second_rate + GB scanned × gb_scanned_rate + GB written × gb_written_rate
//!        + GB stored × gb_stored_day_rate
//! ```
//!
//! GB stored is the day's average of the tenant's database size, sampled by the server into the
//! log (rows of protocol `storage`) at start and hourly; `statements` does not count those rows.
//!
//! (GB = 10^9 bytes). The rates are the server's (`journeydb serve --cost-cpu-second ..
//! --cost-gb-scanned .. --cost-gb-written ..`); the view is the query log grouped, so it is exactly
//! as durable and as old as the log.

/// The rates of the cost formula, in the currency the platform bills in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostRates {
    /// Per CPU-second.
    pub cpu_second: f64,
    /// Per GB (10^9 bytes) scanned.
    pub gb_scanned: f64,
    /// Per GB appended or loaded.
    pub gb_written: f64,
    /// Per GB stored for a day.
    pub gb_stored_day: f64,
}

impl Default for CostRates {
    /// A cloud-like default: $0.05 a vCPU-hour, $5 a TB scanned, $10 a TB written, $0.023 a
    /// GB-month stored.
    fn default() -> Self {
        CostRates {
            cpu_second: 0.05 / 3600.0,
            gb_scanned: 0.005,
            gb_written: 0.01,
            gb_stored_day: 0.023 / 30.0,
        }
    }
}

/// The relation of the query log's rows: the whole table, or only `tenant`'s rows.
pub fn log_relation(tenant: Option<&str>) -> String {
    let log = crate::QUERY_LOG_TABLE;
    match tenant {
        None => log.to_string(),
        Some(t) => format!(
            "(SELECT * FROM {log} WHERE tenant = '{}') AS queries",
            t.replace('\'', "''")
        ),
    }
}

/// The query `system.costs` stands for, over `tenant`'s rows of the log (`None`: all).
pub fn view_sql(r: &CostRates, tenant: Option<&str>) -> String {
    let log = log_relation(tenant);
    format!(
        "SELECT tenant, date_trunc('day', started_at) AS day, \
         count(*) FILTER (WHERE protocol <> 'storage') AS statements, \
         sum(cpu_us) / 1000000.0 AS cpu_seconds, sum(bytes_scanned) AS bytes_scanned, \
         sum(bytes_written) AS bytes_written, avg(bytes_stored) AS bytes_stored, \
         coalesce(sum(cpu_us), 0) / 1000000.0 * {:e} + coalesce(sum(bytes_scanned), 0) / 1e9 * {:e} \
         + coalesce(sum(bytes_written), 0) / 1e9 * {:e} \
         + coalesce(avg(bytes_stored), 0) / 1e9 * {:e} AS cost \
         FROM {log} GROUP BY tenant, date_trunc('day', started_at)",
        r.cpu_second, r.gb_scanned, r.gb_written, r.gb_stored_day
    )
}
