//! A journey run live, as a marketer runs it (issue 13): edits between runs, re-runs, a second
//! run at once, a crashed run's leftovers, dry runs, and the checks that must catch every bad row
//! a run changes. Each `regression_` test failed on the runner before ids, the activation log and
//! full checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use journeydb_client::Session;
use journeydb_journey::def::{self, Journey};
use journeydb_journey::run::{self, RunError, RunOptions};
use journeydb_query::Engine;
use journeydb_server::EmbeddedSession;
use journeydb_storage::{Database, KeyType, Options};

const START: i64 = 1_767_225_600_000_000;
const DAY: i64 = 86_400_000_000;
const EXAMPLE: &str = include_str!("../../examples/journey.toml");

fn example() -> Journey {
    def::parse(EXAMPLE).unwrap()
}

fn opts(day: i64) -> RunOptions {
    RunOptions {
        now_us: START + day * DAY,
        check_percent: 100.0,
        allow_backfill: false,
        dry_run: false,
        keep_snapshots: 7,
        publish: false,
    }
}

/// An engine over a new database with the demo's CDP data for `customers` customers.
fn engine(customers: usize) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path(), KeyType::Varchar, Options::default()).unwrap();
    let e = Engine::new(Arc::new(db));
    let mut s = EmbeddedSession::new(e.clone());
    for c in journeydb_tools::data::CREATE {
        s.run(c).unwrap();
    }
    let g = journeydb_tools::data::Cdp { seed: 5 };
    s.append("profiles", &g.profiles(0..customers)).unwrap();
    s.append("behaviours", &g.behaviours_batch(0..customers))
        .unwrap();
    (dir, e)
}

fn one(s: &mut dyn Session, sql: &str) -> u64 {
    run::count(&s.run(sql).unwrap())
}

/// Every row of a table, as text, sorted (a whole-table fingerprint).
fn rows(s: &mut dyn Session, table: &str) -> Vec<Vec<Option<String>>> {
    common::reply_rows(&s.run(&format!("SELECT * FROM {table} ORDER BY 1")).unwrap())
}

fn tables(e: &Engine) -> Vec<String> {
    let mut t = e.database().snapshot().table_names();
    t.sort();
    t
}

/// No scratch table of a run is left behind.
fn no_scratch(e: &Engine) {
    let t = tables(e);
    assert!(t.iter().all(|t| !t.contains("__")), "{t:?}");
}

/// Finding 2: re-running the same `--now` replaced `<state>_activations` with the re-run's empty
/// result (762 rows became 0). The log now keeps every activation with its run id, and a re-run
/// of the last run's time publishes nothing at all.
#[test]
fn regression_a_rerun_loses_no_activation() {
    let (_d, e) = engine(3000);
    let mut s = EmbeddedSession::new(e.clone());
    let j = example();
    let r1 = run::run(&mut s, &j, &opts(1)).unwrap();
    assert!(r1.swapped && r1.run_id == 1);
    assert!(!r1.activations.is_empty());
    let log = rows(&mut s, "onboarding_state_activations");
    let acts = j.activations();
    // The activations of run `id` in the log (one column pair per activation step).
    let logged = |s: &mut EmbeddedSession, id: i64| -> u64 {
        acts.iter()
            .map(|(c, _)| {
                one(
                    s,
                    &format!(
                        "SELECT count(*) FROM onboarding_state_activations WHERE {c}__run = {id}"
                    ),
                )
            })
            .sum()
    };
    assert_eq!(logged(&mut s, 1), r1.activations.len() as u64);
    let state = rows(&mut s, "onboarding_state");
    let again = run::run(&mut s, &j, &opts(1)).unwrap();
    assert!(again.unchanged && again.activations.is_empty());
    assert_eq!(rows(&mut s, "onboarding_state_activations"), log);
    assert_eq!(rows(&mut s, "onboarding_state"), state);
    assert_eq!(one(&mut s, "SELECT count(*) FROM onboarding_state_runs"), 1);
    // Later runs append to the log: the first run's rows stay, with their run id.
    let r3 = run::run(&mut s, &j, &opts(3)).unwrap();
    assert!(r3.swapped && r3.run_id == 2);
    let total = r1.activations.len() + r3.activations.len();
    let sent: u64 = acts
        .iter()
        .map(|(c, _)| {
            one(
                &mut s,
                &format!("SELECT count({c}) FROM onboarding_state_activations"),
            )
        })
        .sum();
    assert_eq!(sent, total as u64);
    assert_eq!(
        logged(&mut s, 1),
        r1.activations.len() as u64,
        "the first run's activations keep their run id"
    );
    assert_eq!(logged(&mut s, 2), r3.activations.len() as u64);
    assert_eq!(
        one(
            &mut s,
            "SELECT count(*) FROM onboarding_state_runs WHERE run_id = 2 AND transitions > 0"
        ),
        1
    );
    // No scratch table is left behind.
    no_scratch(&e);
}

/// Finding 2: two runs of one journey at once overwrote each other's scratch tables. A run holds
/// the journey's lock; a second one is refused while it is held, and runs once it is released
/// (also when the holder's session simply ends, as a crashed run's does).
#[test]
fn regression_a_second_run_at_once_is_refused() {
    let (_d, e) = engine(500);
    let j = example();
    let mut holder = EmbeddedSession::new(e.clone());
    holder.run("LOCK TABLE onboarding_state NOWAIT").unwrap();
    let mut s = EmbeddedSession::new(e.clone());
    match run::run(&mut s, &j, &opts(1)) {
        Err(RunError::Locked(name)) => assert_eq!(name, "onboarding"),
        other => panic!("a second run was not refused: {other:?}"),
    }
    drop(holder);
    assert!(run::run(&mut s, &j, &opts(1)).unwrap().swapped);
}

/// A run that died leaves scratch tables (its next state, its criteria, its log copy); the next
/// run drops them and completes, and the state is the one the died run's predecessor published.
#[test]
fn a_crashed_runs_scratch_tables_are_cleaned_by_the_next_run() {
    let (_d, e) = engine(500);
    let j = example();
    let mut s = EmbeddedSession::new(e.clone());
    run::run(&mut s, &j, &opts(1)).unwrap();
    for t in ["onboarding_state__r2_next", "onboarding_state__r2_c1"] {
        s.run(&format!(
            "CREATE TABLE {t} (customer_id VARCHAR PRIMARY KEY, x TIMESTAMP)"
        ))
        .unwrap();
    }
    let r = run::run(&mut s, &j, &opts(2)).unwrap();
    assert!(r.swapped && r.run_id == 2);
    no_scratch(&e);
}

/// Finding 1: inserting a step passed `check` and then every run failed on a column mismatch,
/// because columns were named by position. Columns are named by ids: the new step is a new column,
/// every other column keeps its name and its times, and `check` says what the edit adds.
#[test]
fn regression_inserting_a_step_into_a_live_journey() {
    let (_d, e) = engine(2000);
    let mut s = EmbeddedSession::new(e.clone());
    let j = example();
    for day in 1..=3 {
        assert!(run::run(&mut s, &j, &opts(day)).unwrap().swapped);
    }
    let before = rows(&mut s, "onboarding_state");
    let edited = EXAMPLE.replace(
        "[[stage.step]]\nname = \"tips push\"",
        "[[stage.step]]\nname = \"tips email\"\nkind = \"activation\"\nchannel = \"email\"\n\n[[stage.step]]\nname = \"tips push\"",
    );
    let j2 = def::parse(&edited).unwrap();
    assert_eq!(j2.columns().len(), j.columns().len() + 1);
    let c = run::check(&mut s, &j2, START + 4 * DAY).unwrap();
    assert_eq!(c.added, vec!["activate__tips_email".to_string()]);
    assert!(c.retired.is_empty() && c.customers > 0);
    // An added step changes the journey for customers inside: it is a new version.
    assert_eq!(c.version, Some(1));
    assert!(c.needs_publish);
    assert!(c
        .changes
        .iter()
        .any(|x| x.text.starts_with("adds activate__tips_email")));
    match run::run(&mut s, &j2, &opts(4)) {
        Err(RunError::NeedsPublish {
            version: 1,
            changes,
        }) => {
            assert!(
                changes.iter().any(|x| x.contains("activate__tips_email")),
                "{changes:?}"
            );
        }
        other => panic!("an unpublished edit ran: {other:?}"),
    }
    let r = run::run(
        &mut s,
        &j2,
        &RunOptions {
            publish: true,
            ..opts(4)
        },
    )
    .unwrap();
    assert!(r.swapped && r.version == 2, "{:?}", r.violations);
    // Every time of the old columns is still there.
    let cols = j.columns().join(", ");
    let now = rows(&mut s, "onboarding_state");
    assert!(now.len() >= before.len());
    let old_cols = common::reply_rows(
        &s.run(&format!(
            "SELECT customer_id, {cols} FROM onboarding_state WHERE welcome < TIMESTAMP '{}' ORDER BY 1",
            journeydb_journey::value::timestamp_text(START + 4 * DAY)
        ))
        .unwrap(),
    );
    // Rows that existed before: their old columns are unchanged except where day 4 stamped
    // a position they had not reached.
    for row in &old_cols {
        let was = before.iter().find(|b| b[0] == row[0]).unwrap();
        for (x, (old, new)) in was.iter().zip(row.iter()).enumerate().skip(1) {
            if old.is_some() {
                assert_eq!(old, new, "column {x} of {:?} changed", row[0]);
            }
        }
    }
    // Customers inside stay on version 1: none of them gets the new step, while they move on.
    for day in 5..=9 {
        assert!(run::run(&mut s, &j2, &opts(day)).unwrap().swapped);
    }
    assert_eq!(
        one(
            &mut s,
            "SELECT count(activate__tips_email) FROM onboarding_state WHERE journey_version = 1"
        ),
        0
    );
    assert!(
        one(&mut s, "SELECT count(activate__tips_push) FROM onboarding_state WHERE journey_version = 1 AND activate__tips_push > TIMESTAMP '2026-01-05'") > 0
    );
    // New customers enter version 2 and get it.
    assert!(
        one(
            &mut s,
            "SELECT count(activate__tips_email) FROM onboarding_state WHERE journey_version = 2"
        ) > 0
    );
    // Removing it again: `check` reports the removed position and its customers.
    let c = run::check(&mut s, &j, START + 10 * DAY).unwrap();
    assert!(c.added.is_empty());
    assert_eq!(c.retired.len(), 1);
    assert_eq!(c.retired[0].0, "activate__tips_email");
    assert!(c.needs_publish && c.per_version.len() == 2, "{c:?}");
    let back = RunOptions {
        publish: true,
        ..opts(10)
    };
    let r = run::run(&mut s, &j, &back).unwrap();
    assert!(r.swapped && r.version == 3);
}

/// Finding 1: changing one wait from 2 to 5 days passed `check`, then every later run was refused
/// ("out of order"): rows stamped under the old duration failed the new rule; and a changed
/// condition applied to customers already inside. Now the edit must be published as a version;
/// customers inside keep the version they entered with, new ones get the new one.
#[test]
fn regression_changing_a_wait_duration_does_not_refuse_later_runs() {
    let (_d, e) = engine(2000);
    let mut s = EmbeddedSession::new(e.clone());
    let j = example();
    for day in 1..=4 {
        assert!(run::run(&mut s, &j, &opts(day)).unwrap().swapped);
    }
    assert!(
        one(
            &mut s,
            "SELECT count(welcome__let_it_sink_in) FROM onboarding_state"
        ) > 0
    );
    let j5 =
        def::parse(&EXAMPLE.replace("duration = \"2 days\"", "duration = \"5 days\"")).unwrap();
    // The edit is refused unless published, naming the change.
    let err = run::run(&mut s, &j5, &opts(5)).unwrap_err().to_string();
    assert!(
        err.contains("wait 2 days -> ") && err.contains("wait 5 days"),
        "{err}"
    );
    for day in 5..=12 {
        let o = RunOptions {
            publish: day == 5,
            ..opts(day)
        };
        let r = run::run(&mut s, &j5, &o).unwrap();
        assert!(r.swapped, "day {day}: {:?}", r.violations);
    }
    // Customers inside kept their 2 days after the edit; new ones wait 5.
    let after_edit = "welcome__let_it_sink_in > TIMESTAMP '2026-01-06'";
    assert!(
        one(
            &mut s,
            &format!(
                "SELECT count(*) FROM onboarding_state WHERE journey_version = 1 AND {after_edit}"
            )
        ) > 0
    );
    assert_eq!(
        one(&mut s, &format!("SELECT count(*) FROM onboarding_state WHERE journey_version = 1 AND {after_edit} AND welcome__let_it_sink_in <> welcome__welcome_email + INTERVAL '2 days'")),
        0
    );
    assert!(
        one(
            &mut s,
            "SELECT count(welcome__let_it_sink_in) FROM onboarding_state WHERE journey_version = 2"
        ) > 0
    );
    assert_eq!(
        one(&mut s, "SELECT count(*) FROM onboarding_state WHERE journey_version = 2 AND welcome__let_it_sink_in <> welcome__welcome_email + INTERVAL '5 days'"),
        0
    );
}

/// Finding 3: a step stamped after the journey goal, and a stage goal without entry into the next
/// stage, passed the check even at 100%.
#[test]
fn regression_missing_invariants_are_checked() {
    for (insert, class) in [
        (
            "INSERT INTO onboarding_state (customer_id, welcome, goal, welcome__welcome_email) VALUES ('after_goal', '2026-01-01', '2026-01-01', '2026-01-02')",
            "after the journey goal",
        ),
        (
            "INSERT INTO onboarding_state (customer_id, welcome, welcome__goal) VALUES ('stuck', '2026-01-01', '2026-01-01')",
            "stage goal without entry",
        ),
    ] {
        let (_d, e) = engine(300);
        let mut s = EmbeddedSession::new(e.clone());
        let j = example();
        run::run(&mut s, &j, &opts(1)).unwrap();
        s.run(insert).unwrap();
        let before = rows(&mut s, "onboarding_state");
        let log = rows(&mut s, "onboarding_state_activations");
        let r = run::run(&mut s, &j, &opts(2)).unwrap();
        assert!(!r.swapped, "{insert}");
        let v = r
            .violations
            .iter()
            .find(|v| v.class.contains(class))
            .unwrap_or_else(|| panic!("{class}: {:?}", r.violations));
        assert_eq!(v.sampled, 1, "{v:?}");
        assert_eq!(v.keys.len(), 1);
        assert_eq!(rows(&mut s, "onboarding_state"), before);
        assert_eq!(rows(&mut s, "onboarding_state_activations"), log);
        assert_eq!(one(&mut s, "SELECT count(*) FROM onboarding_state_runs"), 1);
    }
}

/// Finding 3: the sampled check let bad rows in. Every row a run changes is checked in full, so
/// an invalid row the run touches is caught even with a sample of 0.001%, and named.
#[test]
fn regression_every_changed_row_is_checked() {
    let (_d, e) = engine(300);
    let mut s = EmbeddedSession::new(e.clone());
    let j = example();
    run::run(&mut s, &j, &opts(1)).unwrap();
    // Entered, no email yet (the run will send it: a changed row), and a branch taken without
    // its decision.
    s.run("INSERT INTO onboarding_state (customer_id, welcome, welcome__clicked__no_click) VALUES ('bad', '2026-01-01', '2026-01-01')").unwrap();
    let r = run::run(
        &mut s,
        &j,
        &RunOptions {
            check_percent: 0.001,
            ..opts(2)
        },
    )
    .unwrap();
    assert!(!r.swapped);
    let v = r
        .violations
        .iter()
        .find(|v| v.changed > 0)
        .unwrap_or_else(|| panic!("{:?}", r.violations));
    assert_eq!(v.changed, 1);
    assert_eq!(v.keys, vec!["bad".to_string()]);
    assert!(r.checked_rows > 1);
}

/// `--dry-run` computes the transitions, the activations and the check, and publishes nothing.
#[test]
fn a_dry_run_publishes_nothing() {
    let (_d, e) = engine(1000);
    let mut s = EmbeddedSession::new(e.clone());
    let j = example();
    run::run(&mut s, &j, &opts(1)).unwrap();
    let state = rows(&mut s, "onboarding_state");
    let log = rows(&mut s, "onboarding_state_activations");
    let dry = run::run(
        &mut s,
        &j,
        &RunOptions {
            dry_run: true,
            ..opts(3)
        },
    )
    .unwrap();
    assert!(!dry.swapped && dry.total_transitions() > 0);
    assert_eq!(rows(&mut s, "onboarding_state"), state);
    assert_eq!(rows(&mut s, "onboarding_state_activations"), log);
    assert_eq!(one(&mut s, "SELECT count(*) FROM onboarding_state_runs"), 1);
    // The real run does what the dry run said.
    let real = run::run(&mut s, &j, &opts(3)).unwrap();
    assert_eq!(real.transitions, dry.transitions);
    assert_eq!(real.activations, dry.activations);
    no_scratch(&e);
}

/// Ids: derived from names, or given; two positions that would share a column are refused.
#[test]
fn ids_name_the_columns_and_collisions_are_refused() {
    let j = example();
    let cols = j.columns();
    assert!(cols.contains(&"welcome__welcome_email".to_string()));
    assert!(cols.contains(&"welcome__clicked__no_click".to_string()));
    assert!(cols.contains(&"activate__exit__churned".to_string()));
    let given = EXAMPLE
        .replace(
            "name = \"welcome email\"",
            "name = \"welcome email\"\nid = \"hello\"",
        )
        .replace("since = \"welcome_email\"", "since = \"hello\"");
    let j2 = def::parse(&given).unwrap();
    assert!(j2.columns().contains(&"welcome__hello".to_string()));
    // Renaming a step with a given id keeps its column.
    let renamed = given.replace("name = \"welcome email\"", "name = \"Bienvenue !\"");
    assert_eq!(def::parse(&renamed).unwrap().columns(), j2.columns());
    let clash = EXAMPLE.replace(
        "name = \"let it sink in\"",
        "name = \"let it sink in\"\nid = \"welcome_email\"",
    );
    let e = def::parse(&clash).unwrap_err();
    assert!(
        e.message.contains("duplicate") || e.message.contains("share"),
        "{e}"
    );
    let bad = EXAMPLE.replace(
        "name = \"welcome email\"",
        "name = \"welcome email\"\nid = \"a b\"",
    );
    assert!(def::parse(&bad).unwrap_err().message.contains("identifier"));
}

/// A database with the CDP tables and hand-written customers: (key, signup day, behaviours as
/// (column, day + hours)).
fn hand_made(customers: &[(&str, &[(&str, f64)])]) -> (tempfile::TempDir, EmbeddedSession) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path(), KeyType::Varchar, Options::default()).unwrap();
    let mut s = EmbeddedSession::new(Engine::new(Arc::new(db)));
    for c in journeydb_tools::data::CREATE {
        s.run(c).unwrap();
    }
    let ts = |day: f64| journeydb_journey::value::timestamp_text(START + (day * DAY as f64) as i64);
    for (key, events) in customers {
        s.run(&format!(
            "INSERT INTO profiles VALUES ('{key}', '{}', 'FR', 'free', 30)",
            ts(0.0)
        ))
        .unwrap();
        for (col, day) in *events {
            s.run(&format!(
                "INSERT INTO behaviours (customer_id, {col}) VALUES ('{key}', '{}')",
                ts(*day)
            ))
            .unwrap();
        }
    }
    (dir, s)
}

/// The stamps of one customer: column -> time, for the columns that are set.
fn stamps(s: &mut dyn Session, j: &Journey, key: &str) -> Vec<(String, i64)> {
    let r = s
        .run(&format!(
            "SELECT {} FROM {} WHERE customer_id = '{key}'",
            j.columns().join(", "),
            j.state_table
        ))
        .unwrap();
    let mut out = Vec::new();
    for b in &r.batches {
        for (c, name) in b.columns().iter().zip(j.columns()) {
            let a = c
                .as_any()
                .downcast_ref::<arrow_array::TimestampMicrosecondArray>()
                .unwrap();
            if b.num_rows() > 0 && arrow_array::Array::is_valid(a, 0) {
                out.push((name, a.value(0)));
            }
        }
    }
    out
}

/// Finding 5: a fixed priority beat the order of events: a customer who unsubscribed on day 3 and
/// purchased on day 4 was recorded as reaching the goal on day 5. The earliest event wins.
#[test]
fn regression_the_first_event_wins() {
    let (_d, mut s) = hand_made(&[
        ("unsub_first", &[("unsubscribed", 3.1), ("purchase", 4.1)]),
        ("buy_first", &[("purchase", 3.1), ("unsubscribed", 4.1)]),
    ]);
    let j = example();
    assert!(run::run(&mut s, &j, &opts(1)).unwrap().swapped);
    assert!(run::run(&mut s, &j, &opts(5)).unwrap().swapped);
    let a = stamps(&mut s, &j, "unsub_first");
    assert!(a.iter().any(|(c, _)| c == "exit__unsubscribed"), "{a:?}");
    assert!(a.iter().all(|(c, _)| c != "goal"), "{a:?}");
    let b = stamps(&mut s, &j, "buy_first");
    assert!(b.iter().any(|(c, _)| c == "goal"), "{b:?}");
    assert!(b.iter().all(|(c, _)| c != "exit__unsubscribed"), "{b:?}");
}

/// Finding 4: goals and conditions were not measured from entry: journey goals were stamped in the
/// run the customer entered (they had purchased before the journey contacted them), and a
/// "clicked?" decision counted clicks from before the email. With `since`, neither happens; without
/// it (the old behaviour) both do, so the data exercises it.
#[test]
fn regression_goals_and_decisions_count_from_entry() {
    let (_d, e) = engine(4000);
    let mut s = EmbeddedSession::new(e.clone());
    let at_entry = |s: &mut EmbeddedSession, j: &Journey| {
        for day in 1..=8 {
            assert!(run::run(s, j, &opts(day)).unwrap().swapped);
        }
        let goals = one(
            s,
            &format!(
                "SELECT count(*) FROM {} WHERE goal IS NOT NULL AND goal = welcome",
                j.state_table
            ),
        );
        // Clicks before the email, for customers who took the "clicked" branch: the state's
        // email time and the click time side by side in one table keyed by customer.
        s.run("DROP TABLE IF EXISTS side").unwrap();
        s.run("CREATE TABLE side (customer_id VARCHAR PRIMARY KEY, sent TIMESTAMP, clicked TIMESTAMP)")
            .unwrap();
        s.run(&format!(
            "INSERT INTO side (customer_id, sent) SELECT customer_id, welcome__welcome_email FROM {} WHERE welcome__clicked__clicked IS NOT NULL",
            j.state_table
        ))
        .unwrap();
        s.run("INSERT INTO side (customer_id, clicked) SELECT customer_id, email_click FROM behaviours WHERE email_click IS NOT NULL").unwrap();
        let early = one(
            s,
            "SELECT count(*) FROM side WHERE sent IS NOT NULL AND clicked < sent",
        );
        (goals, early)
    };
    let (goals, early) = at_entry(&mut s, &example());
    assert_eq!((goals, early), (0, 0));
    // The same journey without `since`, in another state table: both happen.
    let old = def::parse(
        &EXAMPLE
            .replace("since = \"entry\"\n", "")
            .replace("since = \"welcome_email\"\n", "")
            .replace("name = \"onboarding\"", "name = \"old\""),
    )
    .unwrap();
    let (goals, early) = at_entry(&mut s, &old);
    assert!(
        goals > 0 && early > 0,
        "goals at entry {goals}, early clicks {early}"
    );
}

/// Finding 6: customers who left the audience stayed in the journey, and dead ends were silent.
/// With `exit_on_audience_leave` they leave (column `exit__audience`); an `end` step ends the
/// journey; the report tells waiting, finished-with-nothing-left and exited apart per stage.
#[test]
fn regression_leaving_the_audience_and_dead_ends() {
    let (_d, mut s) = hand_made(&[("stays", &[]), ("leaves", &[("churned", 2.5)])]);
    let src = EXAMPLE.replace(
        "where = \"signup_at <= now() AND country IN ('FR', 'DE', 'US', 'UK')\"",
        "where = \"signup_at <= now() AND country IN ('FR', 'DE', 'US', 'UK')\"\nexit_on_audience_leave = true",
    );
    let j = def::parse(&src).unwrap();
    // The audience: customers of `profiles` matching it; "leaves" stops matching on day 3.
    let j = Journey {
        audience: journeydb_journey::def::Criterion {
            table: "behaviours".into(),
            cond: "churned IS NULL OR churned > now()".into(),
            ..j.audience.clone()
        },
        ..j
    };
    s.run("INSERT INTO behaviours (customer_id, app_open) VALUES ('stays', '2030-01-01')")
        .unwrap();
    for day in 1..=4 {
        assert!(run::run(&mut s, &j, &opts(day)).unwrap().swapped);
    }
    let left = stamps(&mut s, &j, "leaves");
    assert!(left.iter().any(|(c, _)| c == "exit__audience"), "{left:?}");
    let stays = stamps(&mut s, &j, "stays");
    assert!(
        stays.iter().all(|(c, _)| c != "exit__audience"),
        "{stays:?}"
    );
    let f = journeydb_journey::report::funnel(&mut s, &j).unwrap();
    let welcome = &f.lines[0];
    // "stays" finished the welcome steps (no click) and waits for the stage goal; "leaves" exited.
    assert_eq!(
        (welcome.waiting, welcome.finished, welcome.exited),
        (Some(0), Some(1), Some(1)),
        "{}",
        f.text()
    );
    assert!(f.text().contains("left the audience"));
    // An end step: the last stage of the example ends with one; customers there are not "in" it.
    let e = example();
    assert!(e.end_cols().contains(&"convert__done".to_string()));
}

/// `journey rollback --to RUN` restores the state as run RUN published it, in one commit recorded
/// as a run; the activation log stays; the next run continues from there; a rollback can itself
/// be rolled back; only the newest `keep_snapshots` snapshots are kept.
#[test]
fn rollback_restores_an_earlier_runs_state() {
    let (_d, e) = engine(2000);
    let mut s = EmbeddedSession::new(e.clone());
    let j = example();
    let mut states = vec![Vec::new()];
    for day in 1..=5 {
        assert!(run::run(&mut s, &j, &opts(day)).unwrap().swapped);
        states.push(rows(&mut s, "onboarding_state"));
    }
    let log = rows(&mut s, "onboarding_state_activations");
    let rb = run::rollback(&mut s, &j, 3).unwrap();
    assert_eq!((rb.run_id, rb.to_run, rb.at_us), (6, 3, START + 3 * DAY));
    assert_eq!(rows(&mut s, "onboarding_state"), states[3]);
    assert_eq!(
        rows(&mut s, "onboarding_state_activations"),
        log,
        "the log stays"
    );
    assert_eq!(
        one(
            &mut s,
            "SELECT count(*) FROM onboarding_state_runs WHERE rolled_back_to = 3"
        ),
        1
    );
    // The state rolled away from is kept as the snapshot of run 5: roll forward again. The
    // rollback (run 6) published run 3's state, so that state's snapshot is now run 6's.
    run::rollback(&mut s, &j, 5).unwrap();
    assert_eq!(rows(&mut s, "onboarding_state"), states[5]);
    run::rollback(&mut s, &j, 6).unwrap();
    assert_eq!(rows(&mut s, "onboarding_state"), states[3]);
    // The next run continues from run 3's time, and redoes day 4 as it was.
    assert!(run::run(&mut s, &j, &opts(4)).unwrap().swapped);
    assert_eq!(rows(&mut s, "onboarding_state"), states[4]);
    // Errors name what is possible.
    let err = run::rollback(&mut s, &j, 42).unwrap_err().to_string();
    assert!(
        err.contains("no snapshot of run 42 (kept: 8, 7, 4, 2, 1;"),
        "{err}"
    );
    let err = run::rollback(&mut s, &j, 9).unwrap_err().to_string();
    assert!(err.contains("run 9 is the latest"), "{err}");
    // Pruning: with 2 kept, the next run leaves the two newest snapshots.
    let keep2 = RunOptions {
        keep_snapshots: 2,
        publish: false,
        ..opts(5)
    };
    assert!(run::run(&mut s, &j, &keep2).unwrap().swapped);
    let snaps: Vec<String> = tables(&e)
        .into_iter()
        .filter(|t| t.starts_with("onboarding_state_snap_r"))
        .collect();
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    no_scratch(&e);
}

/// The commands a marketer types: `journey diff`, `journey check`, `journey run` refused without
/// `--publish` and taken with it, `journey rollback`.
#[test]
fn the_journey_commands_show_versions_and_roll_back() {
    let (dir, e) = engine(1000);
    drop(e);
    let db = dir.path().to_str().unwrap().to_string();
    let work = tempfile::tempdir().unwrap();
    let old = work.path().join("old.toml");
    let new = work.path().join("new.toml");
    std::fs::write(&old, EXAMPLE).unwrap();
    std::fs::write(
        &new,
        EXAMPLE.replace("duration = \"2 days\"", "duration = \"5 days\""),
    )
    .unwrap();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_journeydb"))
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (old, new) = (old.to_str().unwrap(), new.to_str().unwrap());
    let (ok, text) = cli(&["journey", "diff", old, new]);
    assert!(
        ok && text.contains("needs journey run --publish") && text.contains("wait 5 days"),
        "{text}"
    );
    for day in ["2026-01-02", "2026-01-03"] {
        let (ok, text) = cli(&["journey", "run", old, "--db", &db, "--now", day]);
        assert!(ok, "{text}");
    }
    let (ok, text) = cli(&["journey", "check", new, "--db", &db]);
    assert!(
        ok && text.contains("run it with --publish to make it version 2"),
        "{text}"
    );
    let (ok, text) = cli(&["journey", "run", new, "--db", &db, "--now", "2026-01-04"]);
    assert!(!ok && text.contains("publish it as version 2"), "{text}");
    let (ok, text) = cli(&[
        "journey",
        "run",
        new,
        "--db",
        &db,
        "--now",
        "2026-01-04",
        "--publish",
    ]);
    assert!(ok && text.contains("run 3 published"), "{text}");
    let (ok, text) = cli(&["journey", "rollback", new, "--db", &db, "--to", "2"]);
    assert!(ok && text.contains("run 2 published"), "{text}");
    let (ok, text) = cli(&["journey", "rollback", new, "--db", &db, "--to", "77"]);
    assert!(!ok && text.contains("no snapshot of run 77"), "{text}");
}
