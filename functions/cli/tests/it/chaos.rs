//! Chaos: many seeded rounds of collections killed with SIGKILL at random points, overlapping runs,
//! remove + re-add, reprocessing and faults on every request type, hour by hour or in catch-up spans,
//! against the simulator's ground truth. After every round each stamp holds exactly its ground truth up
//! to its watermark (nothing lost, nothing doubled, no quantity changed); at the end every stamp is
//! complete.
//!
//! Bounded in time (about 2 minutes on two cores): rounds are short, the runs' leases live 1 s.
//! Catch-up spans bring every stamp up to date within about 20 rounds; after that a collection has
//! nothing left to do that a kill could hit, so those rounds reprocess wider ranges instead (which
//! re-pull and replace billed hours: the write path a kill hurts most).

use crate::common::*;
use stamp_sim::{Fault, RequestKind};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// At least this many SIGKILLs must land on a process that was still running: 25 on SQLite (50 took
/// 160-330 s on two cores, the longest test of the suite; 25 still kill inside pulls, commits, spans and
/// reprocesses), 50 on PostgreSQL, the server database, where workers commit concurrently.
fn kills_required(backend: &Backend) -> usize {
    match backend {
        Backend::Postgres { .. } => 50,
        _ => 25,
    }
}
const ROUNDS_MAX: usize = 200;
const LEASE_TTL: &str = "1s";
/// Runs that collect in catch-up spans use this `AZS_USAGE_MAX_SPAN_HOURS`; the others go hour by hour.
const SPAN_HOURS: &str = "6";

/// xorshift64: the same seed gives the same rounds (kill delays, faults, actions).
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The range kill delays are drawn from, adapted to this machine's speed: it shrinks when a round's
/// processes had all finished by themselves and grows when a kill hit one of them, so that about half
/// the rounds end in a kill whatever the load (a fixed range lands too few on a slow or a fast machine).
/// A round counts as one observation: in overlapping runs the ones that find every lease taken end at
/// once, and counting them would shrink the range below what the lease holder needs to commit anything.
struct KillRange {
    millis: u64,
}

impl KillRange {
    fn draw(&self, dice: &mut Dice) -> Duration {
        Duration::from_millis(20 + dice.below(self.millis))
    }

    fn observe(&mut self, outcomes: &[Option<ExitStatus>]) {
        let killed = outcomes.iter().any(Option::is_none);
        self.millis =
            if killed { (self.millis * 11 / 10).min(3_000) } else { (self.millis * 4 / 5).max(100) };
    }
}

#[derive(Default, Debug)]
struct Tally {
    rounds: usize,
    runs_started: usize,
    kills_landed: usize,
    overlapping_rounds: usize,
    re_adds: usize,
    reprocesses: usize,
    reprocesses_killed: usize,
    reprocesses_completed: usize,
    runs_completed: usize,
    /// Collections and reprocesses started with catch-up spans.
    span_runs: usize,
    faults_injected: usize,
    invariant_checks: usize,
    /// Rounds that found every stamp collected up to the horizon, and reprocessed instead.
    rounds_all_current: usize,
}

impl Tally {
    /// The operator's actions were mixed into the runs: removals and re-adds, reprocesses (killed and
    /// completed), overlaps.
    fn mixed(&self) -> bool {
        self.re_adds >= 2
            && self.reprocesses_killed >= 1
            && self.reprocesses_completed >= 1
            && self.overlapping_rounds >= 5
    }
}

/// One fault of each request type, picked by the dice; every one of them is recoverable by a later
/// run (the retry budget, the bounded pull or the next run), none of them changes what the stamp reports.
fn random_fault(dice: &mut Dice) -> Fault {
    let kinds = [
        RequestKind::Metadata,
        RequestKind::OpenId,
        RequestKind::Token,
        RequestKind::Usage,
        RequestKind::Subscriptions,
    ];
    let kind = kinds[dice.below(kinds.len() as u64) as usize];
    match dice.below(7) {
        0 => Fault::Status503 { kind, count: 1 + dice.below(2) as u32 },
        1 => Fault::ConnectionReset { kind, count: 1 },
        2 => Fault::Throttle429 { kind, count: 1, retry_after_secs: 1 },
        3 => Fault::MalformedPage { count: 1 },
        4 => Fault::GatewayTimeout { count: 1 },
        5 => Fault::ExpireTokensAfter { usage_requests: 1 + dice.below(6) as u32 },
        _ => Fault::LoopingNextLink { count: 1 },
    }
}

/// Starts `azs-usage args`, in catch-up spans of up to `span_hours` (`"1"`: hour by hour).
fn spawn(world: &World, args: &[&str], span_hours: &str) -> Child {
    world
        .cli()
        .args(args)
        .env("AZS_USAGE_LEASE_TTL", LEASE_TTL)
        .env("AZS_USAGE_MAX_SPAN_HOURS", span_hours)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("azs-usage starts")
}

/// Waits for the process to end by itself, up to `limit` (then kills it: `None`).
async fn finish_within(mut child: Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill_after(child, Duration::ZERO).await
}

/// SIGKILL after `after` unless the process ended first: `None` when the kill landed on a running
/// process, else how it ended by itself.
async fn kill_after(mut child: Child, after: Duration) -> Option<ExitStatus> {
    tokio::time::sleep(after).await;
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    let _ = child.kill();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    None
}

/// Switches a registered stamp to per-subscriber queries, through the store (either backend).
async fn per_subscriber(world: &World, stamp: usize) {
    let store = world.store().await;
    let id = azs_core::StampId(world.stamp_ids[stamp].clone());
    let mut s = store.get_stamp(&id).await.unwrap().expect("the stamp is registered");
    s.query_mode = azs_core::stamp::UsageQueryMode::PerSubscriber;
    store.update_stamp(&s).await.unwrap();
}

/// Whatever any run committed is complete and exact up to each stamp's watermark, each row under the
/// window (hour or span) it was committed in.
async fn assert_exact_up_to_watermarks(world: &World, tally: &mut Tally) {
    for i in 0..world.stamp_ids.len() {
        world.assert_exact_to_watermark(i).await;
        tally.invariant_checks += 1;
    }
}

/// The stored windows of stamp `i` longer than an hour: catch-up spans that were committed.
async fn span_windows(world: &World, i: usize) -> usize {
    let windows = world.stored_windows_of(i).await;
    windows.iter().filter(|(start, end)| *end - *start > chrono::Duration::hours(1)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_survive_kills_overlaps_re_adds_reprocessing_and_faults_with_exact_totals() {
    chaos(Backend::Sqlite).await;
}

/// The same rounds with every process committing to one PostgreSQL database: the server path the
/// functions take (many workers, each with its own connections, fenced by leases in the database).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_on_postgres_survive_kills_overlaps_re_adds_reprocessing_and_faults_with_exact_totals() {
    chaos(Backend::fresh_postgres("chaos").await).await;
}

async fn chaos(backend: Backend) {
    let store_name = match &backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres { .. } => "postgres",
    };
    let kills_required = kills_required(&backend);
    // Given four stamps (Azure AD + secret, AD FS + certificate, Azure AD in per-subscriber mode, all
    // three repeating rows across pages, and one that repeats nothing, whose catch-up spans are
    // committed whole), 96 reported hours each, small pages so that every window is a chain of requests
    let started = Instant::now();
    let world = World::start_on(
        backend,
        |cert| vec![spec(0, aad(), 4), spec(1, adfs(cert), 3), spec(2, aad(), 3), plain(3, 3)],
        96,
        9,
    )
    .await;
    per_subscriber(&world, 2).await;
    // (CHAOS_SEED, in hex, replays other rounds; the default is what CI runs)
    let seed = std::env::var("CHAOS_SEED")
        .map(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("CHAOS_SEED is hex"))
        .unwrap_or(0x5eed_c4a0_5a11_d00d);
    let mut dice = Dice(seed);
    let mut tally = Tally::default();
    let mut kill_range = KillRange { millis: 700 };

    // When round after round runs are killed at random points, overlap, and the operator removes and
    // re-adds stamps and reprocesses collected hours, while every request type sees faults; two runs
    // in three collect (or reprocess) in catch-up spans, the others hour by hour
    // (until enough kills landed and the operator's actions were mixed in: on a loaded machine kills
    // land early, watermarks stay low and reprocess rounds find too little collected, so a fixed
    // number of rounds would sometimes test fewer of them)
    while !(tally.kills_landed >= kills_required && tally.mixed()) && tally.rounds < ROUNDS_MAX {
        tally.rounds += 1;
        for i in 0..world.stamp_ids.len() {
            let stamp = world.sim.stamp(i);
            // Slow pages keep runs in flight long enough to be killed inside pulls and commits.
            stamp.inject(Fault::Slow {
                kind: RequestKind::Usage,
                count: 40,
                delay: Duration::from_millis(8),
            });
            for _ in 0..dice.below(3) {
                stamp.inject(random_fault(&mut dice));
                tally.faults_injected += 1;
            }
        }

        // (once every stamp is current a collection has nothing to do that a kill could hit: those
        // rounds reprocess a wider range instead, which re-pulls and replaces hours that were billed)
        let mut all_current = true;
        for i in 0..world.stamp_ids.len() {
            all_current &= world.watermark(i).await == world.horizon();
        }
        tally.rounds_all_current += usize::from(all_current);
        let span_hours = if dice.below(3) == 0 { "1" } else { SPAN_HOURS };
        match (dice.below(10), all_current) {
            // Remove a stamp and register it again: it resumes from its tombstone, same id.
            (0, _) => {
                let i = dice.below(world.stamp_ids.len() as u64) as usize;
                // (registration verifies the stamp; this round's faults are for the collections)
                world.sim.stamp(i).clear_faults();
                let out = world.run(&["stamp", "remove", &world.stamp_ids[i]]).await;
                assert!(out.status.success(), "stamp remove: {}", stderr(&out));
                let id = world.register_again(i).await;
                assert_eq!(id, world.stamp_ids[i], "a re-added stamp keeps its id");
                if i == 2 {
                    per_subscriber(&world, 2).await;
                }
                tally.re_adds += 1;
            }
            // Reprocess a collected range, sometimes killed in the middle.
            (1, _) | (_, true) => {
                let i = dice.below(world.stamp_ids.len() as u64) as usize;
                let watermark = world.watermark(i).await;
                let hours = (watermark - world.collect_from).num_hours();
                if hours >= 2 {
                    let from =
                        world.collect_from + chrono::Duration::hours(dice.below(hours as u64 - 1) as i64);
                    let longest = if all_current { 12 } else { 2 };
                    let to = (from + chrono::Duration::hours(1 + dice.below(longest) as i64)).min(watermark);
                    let (from, to) = (from.to_rfc3339(), to.to_rfc3339());
                    let args = [
                        "reprocess",
                        "--stamp",
                        &world.stamp_ids[i],
                        "--from",
                        &from,
                        "--to",
                        &to,
                        "--reason",
                        "chaos",
                    ];
                    // Some are left to finish (a reprocess that completes must be exact too): half of
                    // them while collections still have work, one in five once they stand in for them.
                    let killed = if all_current { dice.below(5) != 0 } else { dice.below(2) == 0 };
                    let outcome = if killed {
                        let child = spawn(&world, &args, span_hours);
                        let outcome = kill_after(child, kill_range.draw(&mut dice)).await;
                        kill_range.observe(std::slice::from_ref(&outcome));
                        outcome
                    } else {
                        // (its faults served first: one left to finish is expected to succeed)
                        world.sim.stamp(i).clear_faults();
                        let child = spawn(&world, &args, span_hours);
                        let outcome = finish_within(child, Duration::from_secs(120)).await;
                        assert!(outcome.is_some(), "a reprocess left to finish ran for 2 minutes");
                        outcome
                    };
                    match outcome {
                        None => {
                            tally.kills_landed += 1;
                            tally.reprocesses_killed += 1;
                        }
                        Some(status) => tally.reprocesses_completed += usize::from(status.success()),
                    }
                    tally.reprocesses += 1;
                    tally.span_runs += usize::from(span_hours != "1");
                }
            }
            // One to three collections at once, each killed at its own random point (or finished).
            _ => {
                let parallel = 1 + dice.below(3) as usize;
                if parallel > 1 {
                    tally.overlapping_rounds += 1;
                }
                let kills: Vec<_> = (0..parallel)
                    .map(|_| {
                        tally.runs_started += 1;
                        tally.span_runs += usize::from(span_hours != "1");
                        let after = kill_range.draw(&mut dice);
                        tokio::spawn(kill_after(spawn(&world, &["collect"], span_hours), after))
                    })
                    .collect();
                let mut outcomes = Vec::new();
                for kill in kills {
                    let outcome = kill.await.unwrap();
                    match outcome {
                        None => tally.kills_landed += 1,
                        Some(status) => tally.runs_completed += usize::from(status.success()),
                    }
                    outcomes.push(outcome);
                }
                kill_range.observe(&outcomes);
            }
        }

        // Then after every round, each stamp is exact up to its watermark
        assert_exact_up_to_watermarks(&world, &mut tally).await;
        // (the killed runs' leases expire, so that the next round's runs work instead of skipping)
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }

    assert!(
        tally.kills_landed >= kills_required,
        "only {} SIGKILLs hit a running process in {} rounds: the test did not test crashes ({tally:?})",
        tally.kills_landed,
        tally.rounds
    );
    assert!(tally.mixed(), "the rounds did not mix the operator's actions in: {tally:?}");
    // And once the faults are served and a run may finish, every stamp is complete
    for i in 0..world.stamp_ids.len() {
        world.sim.stamp(i).clear_faults();
    }
    let env = [("AZS_USAGE_LEASE_TTL", LEASE_TTL), ("AZS_USAGE_MAX_SPAN_HOURS", SPAN_HOURS)];
    let out = world.run_with(&["collect"], &env).await;
    assert!(out.status.success(), "the final run failed: {}\n{}", stdout(&out), stderr(&out));
    let mut rows = 0;
    for i in 0..world.stamp_ids.len() {
        world.assert_complete_in_windows(i).await;
        rows += world.stored(i).await.len();
    }
    // (spans were committed, not only tried: the stamp without repeats holds some)
    let spans = span_windows(&world, 3).await;
    assert!(spans >= 1, "no catch-up span was committed in {} span runs: {tally:?}", tally.span_runs);
    println!(
        "chaos on {store_name} (seed {seed:#x}): {tally:?}; {spans} spans committed; {rows} rows compared at the end, 0 lost, 0 doubled, \
         0 wrong quantities; {:.1} s",
        started.elapsed().as_secs_f64()
    );
    world.finish().await;
}
