//! The journey runner against an independent oracle: a plain per-customer state machine written
//! directly in Rust. Random journeys (proptest) over random customer data, several runs each; after
//! every run the state table must equal the simulator's state row for row. Also: idempotence, a
//! failing consistency check keeping the old state, and every bad-definition error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use journeydb_client::Session;
use journeydb_journey::def::{
    self, Branch, Criterion, Exit, Journey, Since, Stage, Step, StepKind, AUDIENCE_EXIT_COL,
    GOAL_COL,
};
use journeydb_journey::run::{self, RunOptions, VERSION_COL};
use journeydb_query::Engine;
use journeydb_server::EmbeddedSession;
use journeydb_storage::{Database, KeyType, Options};
use proptest::prelude::*;

const START: i64 = 1_767_225_600_000_000;
const HOUR: i64 = 3_600_000_000;

/// One customer's data: attribute `a` and three event times.
#[derive(Debug, Clone)]
struct Customer {
    a: Option<i64>,
    t: [Option<i64>; 3],
}

/// A condition both rendered as SQL and evaluated natively.
#[derive(Debug, Clone)]
enum Cond {
    ALt(i64),
    Happened(usize),
    /// Not happened yet: true until the event, then false (customers leave such an audience).
    NotYet(usize),
    Known(usize),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
}

impl Cond {
    fn sql(&self) -> String {
        match self {
            Cond::ALt(c) => format!("a < {c}"),
            Cond::Happened(k) => format!("t{k} <= now()"),
            Cond::NotYet(k) => format!("(t{k} IS NULL OR t{k} > now())"),
            Cond::Known(k) => format!("t{k} IS NOT NULL"),
            Cond::And(x, y) => format!("({} AND {})", x.sql(), y.sql()),
            Cond::Or(x, y) => format!("({} OR {})", x.sql(), y.sql()),
        }
    }
    fn eval(&self, c: &Customer, now: i64) -> bool {
        match self {
            Cond::ALt(v) => c.a.is_some_and(|a| a < *v),
            Cond::Happened(k) => c.t[*k].is_some_and(|t| t <= now),
            Cond::NotYet(k) => c.t[*k].is_none_or(|t| t > now),
            Cond::Known(k) => c.t[*k].is_some(),
            Cond::And(x, y) => x.eval(c, now) && y.eval(c, now),
            Cond::Or(x, y) => x.eval(c, now) || y.eval(c, now),
        }
    }
}

fn cond() -> impl Strategy<Value = Cond> {
    let leaf = prop_oneof![
        (0i64..10).prop_map(Cond::ALt),
        (0usize..3).prop_map(Cond::Happened),
        (0usize..3).prop_map(Cond::NotYet),
        (0usize..3).prop_map(Cond::Known),
    ];
    leaf.prop_recursive(2, 4, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(x, y)| Cond::And(Box::new(x), Box::new(y))),
            (inner.clone(), inner).prop_map(|(x, y)| Cond::Or(Box::new(x), Box::new(y))),
        ]
    })
}

/// A journey with its conditions kept alongside (the definition holds only their SQL).
#[derive(Debug, Clone)]
struct Spec {
    journey: Journey,
    audience: Cond,
    goal: Option<Crit>,
    /// Journey-wide exits.
    exits: Vec<Crit>,
    /// Per stage: exit criteria, goal criterion, per step the branch criteria.
    stages: Vec<StageConds>,
}

/// Where a criterion's event must not be before (`since`).
#[derive(Debug, Clone, Copy)]
enum SinceP {
    Entry,
    Stage,
    /// A step of the stage, before the decision.
    Step(usize),
}

/// A criterion of the oracle: a condition, and a `since` (only on a timed condition).
#[derive(Debug, Clone)]
struct Crit {
    cond: Cond,
    since: Option<SinceP>,
}

impl Crit {
    /// The event's time when the condition is a single event `tK <= now()` (the runner infers
    /// `time = tK` from that form); `None` means "at the run's time".
    fn time(&self, c: &Customer) -> Option<i64> {
        match self.cond {
            Cond::Happened(k) => c.t[k],
            _ => None,
        }
    }
}

fn crit(c: &Crit) -> Criterion {
    Criterion {
        table: "profiles".into(),
        cond: c.cond.sql(),
        line: 0,
        time: match c.cond {
            Cond::Happened(k) => Some(format!("t{k}")),
            _ => None,
        },
        since: c.since.map(|s| match s {
            SinceP::Entry => Since::Entry,
            SinceP::Stage => Since::Stage,
            SinceP::Step(k) => Since::Step(k),
        }),
    }
}

/// A criterion: any condition without `since`, or a single event with one of `sinces`.
fn criterion(sinces: Vec<SinceP>) -> impl Strategy<Value = Crit> {
    let timed = (0usize..3, prop::sample::select(sinces)).prop_map(|(k, s)| Crit {
        cond: Cond::Happened(k),
        since: Some(s),
    });
    prop_oneof![
        3 => cond().prop_map(|cond| Crit { cond, since: None }),
        1 => timed,
    ]
}

#[derive(Debug, Clone)]
enum RawStep {
    Wait(i64),
    Activation,
    Decision(Vec<(Crit, Option<usize>)>),
}

fn spec() -> impl Strategy<Value = Spec> {
    let step = prop_oneof![
        (6i64..60).prop_map(|h| RawStep::Wait(h * HOUR)),
        Just(RawStep::Activation),
        prop::collection::vec(
            (
                criterion(vec![SinceP::Entry, SinceP::Stage, SinceP::Step(0)]),
                prop::option::of(1usize..3)
            ),
            1..3
        )
        .prop_map(RawStep::Decision),
    ];
    let stage_crit = || criterion(vec![SinceP::Entry, SinceP::Stage]);
    let stage = (
        prop::collection::vec(step, 1..4),
        prop::collection::vec(stage_crit(), 0..3),
        prop::option::of(stage_crit()),
        prop::bool::weighted(0.4),
    );
    // Audiences people leave: "in the segment and has not done X yet", half of the time.
    let audience = prop_oneof![
        cond(),
        (cond(), 0usize..3).prop_map(|(c, k)| Cond::And(Box::new(c), Box::new(Cond::NotYet(k)))),
    ];
    (
        audience,
        prop::option::of(criterion(vec![SinceP::Entry])),
        prop::collection::vec(criterion(vec![SinceP::Entry]), 0..2),
        prop::collection::vec(stage, 1..4),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(audience, goal, jexits, raw, leave, suppress)| {
            let n = raw.len();
            let mut stages = Vec::new();
            let mut conds = Vec::new();
            for (i, (steps, exits, sgoal, end)) in raw.into_iter().enumerate() {
                let mut s_steps = Vec::new();
                let mut branch_conds = Vec::new();
                for (k, st) in steps.into_iter().enumerate() {
                    let (kind, bc) = match st {
                        RawStep::Wait(us) => (StepKind::Wait(us), vec![]),
                        RawStep::Activation => (StepKind::Activation(format!("ch{k}")), vec![]),
                        RawStep::Decision(bs) => {
                            // `since` a step only for a decision after that step.
                            let bs: Vec<(Crit, Option<usize>)> = bs
                                .into_iter()
                                .map(|(mut c, g)| {
                                    if k == 0 && matches!(c.since, Some(SinceP::Step(_))) {
                                        c.since = Some(SinceP::Stage);
                                    }
                                    (c, g)
                                })
                                .collect();
                            let branches = bs
                                .iter()
                                .enumerate()
                                .map(|(b, (c, g))| Branch {
                                    name: format!("b{b}"),
                                    id: format!("b{b}"),
                                    criterion: crit(c),
                                    // Forward jumps only, when a later stage exists.
                                    goto: g.map(|d| i + d).filter(|&t| t < n),
                                })
                                .collect();
                            (
                                StepKind::Decision(branches, "other".into()),
                                bs.into_iter().map(|(c, _)| c).collect(),
                            )
                        }
                    };
                    s_steps.push(Step {
                        name: format!("s{k}"),
                        id: format!("k{k}"),
                        kind,
                    });
                    branch_conds.push(bc);
                }
                if end {
                    let k = s_steps.len();
                    s_steps.push(Step {
                        name: "the end".into(),
                        id: format!("k{k}"),
                        kind: StepKind::End,
                    });
                    branch_conds.push(vec![]);
                }
                stages.push(Stage {
                    name: format!("stage{i}"),
                    id: format!("stage{i}"),
                    steps: s_steps,
                    exits: exits
                        .iter()
                        .enumerate()
                        .map(|(e, c)| Exit {
                            name: format!("x{e}"),
                            id: format!("x{e}"),
                            criterion: crit(c),
                        })
                        .collect(),
                    goal: sgoal.as_ref().map(crit),
                });
                conds.push((exits, sgoal, branch_conds));
            }
            let suppress = suppress && goal.is_some();
            Spec {
                journey: Journey {
                    name: "j".into(),
                    state_table: "j_state".into(),
                    audience: Criterion {
                        table: "profiles".into(),
                        cond: audience.sql(),
                        line: 0,
                        time: None,
                        since: None,
                    },
                    exit_on_audience_leave: leave,
                    suppress_if_goal_met: suppress,
                    stages,
                    exits: jexits
                        .iter()
                        .enumerate()
                        .map(|(e, c)| Exit {
                            name: format!("jx{e}"),
                            id: format!("jx{e}"),
                            criterion: crit(c),
                        })
                        .collect(),
                    goal: goal.as_ref().map(crit),
                },
                audience,
                goal,
                exits: jexits,
                stages: conds,
            }
        })
}

type State = BTreeMap<String, i64>;

/// A stage's exit criteria, goal criterion, and per step its branch criteria.
type StageConds = (Vec<Crit>, Option<Crit>, Vec<Vec<Crit>>);

/// The oracle: one transition for one customer at `now`, or none. Written from the rules in
/// examples/journey.toml and README, not from the runner's SQL.
fn step(spec: &Spec, c: &Customer, st: &State, now: i64) -> Option<Vec<String>> {
    let j = &spec.journey;
    let has = |k: &str| st.contains_key(k);
    if !has(&j.stage_col(0)) {
        let suppressed =
            j.suppress_if_goal_met && spec.goal.as_ref().is_some_and(|g| g.cond.eval(c, now));
        return (spec.audience.eval(c, now) && !suppressed).then(|| vec![j.stage_col(0)]);
    }
    let n = j.stages.len();
    let done = has(GOAL_COL)
        || (0..n).any(|i| (0..j.stages[i].exits.len()).any(|e| has(&j.exit_col(i, e))))
        || j.journey_exit_cols().iter().any(|x| has(x))
        || j.end_cols().iter().any(|x| has(x))
        || (j.stages[n - 1].goal.is_some() && has(&j.stage_goal_col(n - 1)));
    if done {
        return None;
    }
    let i = (0..n).rev().find(|&i| has(&j.stage_col(i)))?;
    let (exits, sgoal, branches) = &spec.stages[i];
    // A criterion counts when it is true and its event is not before its `since` point; its
    // time is the event's, or the run's.
    let counts = |cr: &Crit| -> Option<i64> {
        if !cr.cond.eval(c, now) {
            return None;
        }
        let t = cr.time(c).unwrap_or(now);
        let since = match cr.since {
            None => None,
            Some(SinceP::Entry) => st.get(&j.stage_col(0)),
            Some(SinceP::Stage) => st.get(&j.stage_col(i)),
            Some(SinceP::Step(k)) => st.get(&j.step_col(i, k)),
        };
        match since {
            Some(&s) if t < s => None,
            _ => Some(t),
        }
    };
    // Outcomes in priority order; the earliest event wins, ties to the earlier in this order.
    let mut outcomes: Vec<(&Crit, Vec<String>)> = Vec::new();
    if let Some(g) = &spec.goal {
        outcomes.push((g, vec![GOAL_COL.into()]));
    }
    for (e, x) in spec.exits.iter().enumerate() {
        outcomes.push((x, vec![j.journey_exit_col(e)]));
    }
    for (e, x) in exits.iter().enumerate() {
        outcomes.push((x, vec![j.exit_col(i, e)]));
    }
    if let Some(g) = sgoal {
        let mut v = vec![j.stage_goal_col(i)];
        if i + 1 < n {
            v.push(j.stage_col(i + 1));
        }
        outcomes.push((g, v));
    }
    let winner = outcomes
        .iter()
        .enumerate()
        .filter_map(|(p, (cr, stamps))| counts(cr).map(|t| ((t, p), stamps)))
        .min_by_key(|(key, _)| *key);
    if let Some((_, stamps)) = winner {
        return Some(stamps.clone());
    }
    if j.exit_on_audience_leave && !spec.audience.eval(c, now) {
        return Some(vec![AUDIENCE_EXIT_COL.into()]);
    }
    let stage = &j.stages[i];
    match (0..stage.steps.len()).find(|&k| !has(&j.step_col(i, k))) {
        Some(k) => {
            let prev = if k == 0 {
                j.stage_col(i)
            } else {
                j.step_col(i, k - 1)
            };
            match &stage.steps[k].kind {
                StepKind::Wait(us) => (st[&prev] + us <= now).then(|| vec![j.step_col(i, k)]),
                StepKind::Activation(_) | StepKind::End => Some(vec![j.step_col(i, k)]),
                StepKind::Decision(bs, _) => {
                    match branches[k].iter().position(|b| counts(b).is_some()) {
                        Some(b) => {
                            let mut v = vec![j.step_col(i, k), j.branch_col(i, k, b)];
                            if let Some(g) = bs[b].goto {
                                v.push(j.stage_col(g));
                            }
                            Some(v)
                        }
                        None => Some(vec![j.step_col(i, k), j.default_col(i, k)]),
                    }
                }
            }
        }
        None if stage.goal.is_none() && i + 1 < n => Some(vec![j.stage_col(i + 1)]),
        None => None,
    }
}

/// One run for one customer: transitions until none applies. A customer who enters gets
/// `version` (the newest; one already inside keeps theirs: the caller passes their spec).
fn simulate(spec: &Spec, version: i64, c: &Customer, st: &mut State, now: i64) {
    let fresh = st.is_empty();
    while let Some(cols) = step(spec, c, st, now) {
        for k in cols {
            st.entry(k).or_insert(now);
        }
    }
    if fresh && !st.is_empty() {
        st.insert(VERSION_COL.into(), version);
    }
}

fn customers() -> impl Strategy<Value = Vec<Customer>> {
    let t = prop::option::of(0i64..(10 * 24)).prop_map(|h| h.map(|h| START + h * HOUR));
    prop::collection::vec(
        (prop::option::of(0i64..10), t.clone(), t.clone(), t)
            .prop_map(|(a, t0, t1, t2)| Customer { a, t: [t0, t1, t2] }),
        20..120,
    )
}

fn load(s: &mut dyn Session, cs: &[Customer]) {
    s.run("CREATE TABLE profiles (customer_id VARCHAR PRIMARY KEY, a BIGINT, t0 TIMESTAMP, t1 TIMESTAMP, t2 TIMESTAMP)").unwrap();
    let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
    let schema = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("a", DataType::Int64, true),
        Field::new("t0", ts.clone(), true),
        Field::new("t1", ts.clone(), true),
        Field::new("t2", ts, true),
    ]));
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(
            (0..cs.len())
                .map(|i| format!("c{i:04}"))
                .collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(cs.iter().map(|c| c.a).collect::<Vec<_>>())),
    ];
    for k in 0..3 {
        cols.push(Arc::new(TimestampMicrosecondArray::from(
            cs.iter().map(|c| c.t[k]).collect::<Vec<_>>(),
        )));
    }
    s.append("profiles", &RecordBatch::try_new(schema, cols).unwrap())
        .unwrap();
}

fn session() -> (tempfile::TempDir, EmbeddedSession) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path(), KeyType::Varchar, Options::default()).unwrap();
    (dir, EmbeddedSession::new(Engine::new(Arc::new(db))))
}

/// A customer table as key -> (column -> value): times as µs, BIGINTs as they are, NULLs left out.
fn keyed(s: &mut dyn Session, sql: &str) -> BTreeMap<String, State> {
    let mut out = BTreeMap::new();
    let r = s.run(sql).unwrap();
    for b in &r.batches {
        let keys = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        for row in 0..b.num_rows() {
            let mut st = State::new();
            for (ci, f) in b.schema().fields().iter().enumerate().skip(1) {
                let c = b.column(ci);
                let v = if let Some(a) = c.as_any().downcast_ref::<Int64Array>() {
                    a.is_valid(row).then(|| a.value(row))
                } else {
                    let a = c
                        .as_any()
                        .downcast_ref::<TimestampMicrosecondArray>()
                        .unwrap();
                    a.is_valid(row).then(|| a.value(row))
                };
                if let Some(v) = v {
                    st.insert(f.name().clone(), v);
                }
            }
            if !st.is_empty() {
                out.insert(keys.value(row).to_string(), st);
            }
        }
    }
    out
}

/// The state table as key -> (column -> time, and the customer's version).
fn table(s: &mut dyn Session, j: &Journey) -> BTreeMap<String, State> {
    keyed(s, &format!("SELECT * FROM {}", j.state_table))
}

/// The activation log as key -> (column -> time, or run id for `<column>__run`).
fn log_table(s: &mut dyn Session) -> BTreeMap<String, State> {
    keyed(s, "SELECT * FROM j_state_activations")
}

fn opts(now_us: i64) -> RunOptions {
    RunOptions {
        now_us,
        check_percent: 100.0,
        allow_backfill: false,
        dry_run: false,
        keep_snapshots: 3,
        publish: false,
    }
}

proptest! {
    // JOURNEY_ORACLE_CASES=500 for a longer campaign.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("JOURNEY_ORACLE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn runner_equals_the_state_machine(
        spec in spec(),
        edited in spec(),
        edit_at in 1usize..8,
        cs in customers(),
        gaps in prop::collection::vec(1i64..40, 2..6),
    ) {
        let (_dir, mut s) = session();
        load(&mut s, &cs);
        let mut model: Vec<State> = vec![State::new(); cs.len()];
        let mut now = START;
        // Before the run `edit_at` the journey is edited to another random one and published
        // as version 2 (unless it only renames: then it stays version 1): customers inside stay
        // on version 1, new customers enter version 2.
        let v2 = if edited.journey.same_shape(&spec.journey) { 1 } else { 2 };
        let (mut newest, mut def) = (1, &spec);
        // The time of each run so far: run ids count from 1.
        let mut run_times: Vec<i64> = Vec::new();
        for (r, gap) in gaps.into_iter().enumerate() {
            now += gap * HOUR;
            run_times.push(now);
            let publish = r == edit_at;
            if publish {
                (newest, def) = (v2, &edited);
            }
            let o = RunOptions { publish, ..opts(now) };
            let r = run::run(&mut s, &def.journey, &o).unwrap();
            prop_assert!(r.swapped, "check failed: {:?}", r.violations);
            prop_assert_eq!(r.version, newest);
            let spec_of = |st: &State| match st.get(VERSION_COL) {
                Some(2) => &edited,
                Some(_) => &spec,
                None => def,
            };
            for (c, st) in cs.iter().zip(model.iter_mut()) {
                let sp = spec_of(st);
                simulate(sp, newest, c, st, now);
            }
            let got = table(&mut s, &def.journey);
            let want: BTreeMap<String, State> = model
                .iter()
                .enumerate()
                .filter(|(_, st)| !st.is_empty())
                .map(|(i, st)| (format!("c{i:04}"), st.clone()))
                .collect();
            prop_assert_eq!(&got, &want, "after the run at +{}h", (now - START) / HOUR);
            // Activations of the run: exactly the activation columns (of each customer's
            // version) stamped now.
            let want_acts: usize = want
                .values()
                .map(|st| {
                    let acts = spec_of(st).journey.activations();
                    st.iter()
                        .filter(|(k, &t)| t == now && acts.iter().any(|(c, _)| c == *k))
                        .count()
                })
                .sum();
            prop_assert_eq!(r.activations.len(), want_acts);
            // The activation log: every activation ever made, at its time, with the id of the run
            // that made it; the run records: one per run.
            let mut want_log: BTreeMap<String, State> = BTreeMap::new();
            for (key, st) in &want {
                let acts = spec_of(st).journey.activations();
                for (c, &t) in st.iter().filter(|(c, _)| acts.iter().any(|(a, _)| a == *c)) {
                    let run_id = run_times.iter().position(|&x| x == t).map_or(0, |p| p as i64 + 1);
                    let e = want_log.entry(key.clone()).or_default();
                    e.insert(c.clone(), t);
                    e.insert(format!("{c}__run"), run_id);
                }
            }
            prop_assert_eq!(log_table(&mut s), want_log);
            prop_assert_eq!(
                run::count(&s.run("SELECT count(*) FROM j_state_runs").unwrap()),
                run_times.len() as u64
            );
            // The same `now` again changes nothing.
            let again = run::run(&mut s, &def.journey, &opts(now)).unwrap();
            prop_assert_eq!(again.total_transitions(), 0);
            prop_assert_eq!(table(&mut s, &def.journey), want);
        }
    }
}

fn example() -> Journey {
    def::parse(include_str!("../../examples/journey.toml")).unwrap()
}

/// A database with the demo's CDP tables for `customers` customers, after the example journey's
/// first run (day 1).
fn after_first_run(customers: usize) -> (tempfile::TempDir, EmbeddedSession) {
    let (dir, mut s) = session();
    for c in journeydb_tools::data::CREATE {
        s.run(c).unwrap();
    }
    let g = journeydb_tools::data::Cdp { seed: 3 };
    s.append("profiles", &g.profiles(0..customers)).unwrap();
    s.append("behaviours", &g.behaviours_batch(0..customers))
        .unwrap();
    let r = run::run(&mut s, &example(), &opts(START + DAY)).unwrap();
    assert!(r.swapped && r.total_transitions() > 0);
    (dir, s)
}

const DAY: i64 = 86_400_000_000;

/// Corrupts the state with `insert`, runs day `day`, and checks the run was refused for `class`
/// with the old state left in place.
fn refused(customers: usize, insert: &str, day: i64, class: &str) {
    let (_dir, mut s) = after_first_run(customers);
    let j = example();
    s.run(insert).unwrap();
    let before = table(&mut s, &j);
    let r = run::run(&mut s, &j, &opts(START + day * DAY)).unwrap();
    assert!(!r.swapped);
    assert!(
        r.violations
            .iter()
            .any(|v| v.class.contains(class) && v.sampled == 1 && v.keys.len() == 1),
        "{:?}",
        r.violations
    );
    assert_eq!(table(&mut s, &j), before, "the old state stays");
}

/// Issue 13, finding 7: nothing stopped `--now` going backwards; a run earlier than the latest
/// stamp in the state is now refused (and changes nothing) unless it is a deliberate backfill.
#[test]
fn regression_a_run_earlier_than_the_last_is_refused_unless_backfill() {
    let (_dir, mut s) = after_first_run(300);
    let j = example();
    let before = table(&mut s, &j);
    match run::run(&mut s, &j, &opts(START + DAY - 1)) {
        Err(run::RunError::Backwards { now_us, last_us }) => {
            assert_eq!((now_us, last_us), (START + DAY - 1, START + DAY));
        }
        other => panic!("a run back in time was not refused: {other:?}"),
    }
    assert_eq!(table(&mut s, &j), before, "a refused run changes nothing");
    // The same time again is allowed (and changes nothing); a backfill is allowed when asked for.
    assert!(run::run(&mut s, &j, &opts(START + DAY)).unwrap().swapped);
    let back = RunOptions {
        allow_backfill: true,
        ..opts(START + DAY - 1)
    };
    assert!(run::run(&mut s, &j, &back).is_ok());
}

#[test]
fn a_failing_check_keeps_the_old_state() {
    // A step without its stage, for a customer who never entered.
    refused(
        2000,
        "INSERT INTO onboarding_state (customer_id, activate__wait_for_the_app) VALUES ('intruder', '2026-01-01 12:00:00')",
        5,
        "predecessor",
    );
    // Out-of-order times.
    refused(
        500,
        "INSERT INTO onboarding_state (customer_id, welcome, welcome__welcome_email) VALUES ('late', '2026-01-03 00:00:00', '2026-01-02 00:00:00')",
        2,
        "out of order",
    );
    // Two branches taken.
    refused(
        100,
        "INSERT INTO onboarding_state (customer_id, welcome, welcome__welcome_email, welcome__let_it_sink_in, welcome__clicked, welcome__clicked__clicked, welcome__clicked__no_click) VALUES ('both', '2026-01-01', '2026-01-01', '2026-01-01', '2026-01-01', '2026-01-01', '2026-01-01')",
        2,
        "branch",
    );
}

#[test]
fn bad_definitions_name_the_line_and_the_problem() {
    let base = include_str!("../../examples/journey.toml");
    let line_of = |needle: &str| base.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let cases: Vec<(String, usize, &str)> = vec![
        (
            base.replace(
                "kind = \"wait\"\nduration = \"2 days\"",
                "kind = \"sleep\"\nduration = \"2 days\"",
            ),
            line_of("duration = \"2 days\"") - 1,
            "unknown step kind \"sleep\"",
        ),
        (
            base.replace("name = \"activate\"", "name = \"welcome\""),
            line_of("name = \"activate\""),
            "duplicate stage name",
        ),
        (
            base.replace("goto = \"convert\"", "goto = \"welcome\""),
            line_of("goto = \"convert\""),
            "cycle",
        ),
        (
            base.replace("goto = \"convert\"", "goto = \"nowhere\""),
            line_of("goto = \"convert\""),
            "unknown stage",
        ),
        (
            base.replace("duration = \"3 days\"", "duration = \"3 fortnights\""),
            line_of("duration = \"3 days\""),
            "unknown unit",
        ),
        (
            base.replace("name = \"tips push\"", "name = \"wait for the app\""),
            line_of("name = \"tips push\""),
            "duplicate step name",
        ),
        (
            base.replace("channel = \"push\"", "chanel = \"push\""),
            line_of("channel = \"push\""),
            "unknown field",
        ),
    ];
    for (src, line, want) in cases {
        let e = def::parse(&src).unwrap_err();
        assert!(e.message.contains(want), "{want:?} not in {e}");
        assert_eq!(e.line, line, "{e}");
    }
    // An empty stage.
    let empty = "name = \"j\"\n[audience]\nwhere = \"a < 1\"\n[[stage]]\nname = \"lonely\"\n";
    let e = def::parse(empty).unwrap_err();
    assert!(e.message.contains("empty"), "{e}");
    assert_eq!(e.line, 5);
    // Unknown columns and tables are found against the database, with the criterion's line.
    let (_dir, mut s) = session();
    for c in journeydb_tools::data::CREATE {
        s.run(c).unwrap();
    }
    let j = def::parse(&base.replace(
        "where = \"churned <= now()\"",
        "where = \"churn_date <= now()\"",
    ))
    .unwrap();
    let e = run::check(&mut s, &j, START).unwrap_err().to_string();
    assert!(
        e.contains(&format!("line {}", line_of("churned <= now()"))) && e.contains("churn_date"),
        "{e}"
    );
    let j = def::parse(&base.replace(
        "table = \"behaviours\"\nwhere = \"purchase",
        "table = \"orders\"\nwhere = \"purchase",
    ))
    .unwrap();
    let e = run::check(&mut s, &j, START).unwrap_err().to_string();
    assert!(e.contains("\"orders\" does not exist"), "{e}");
    assert!(run::check(&mut s, &example(), START).is_ok());
}
