//! Surge and unavailability arithmetic: the next `spec.replicas` of every ReplicaSet of a rollout.
//!
//! PURE: no client, no clock, no I/O. One call is one reconcile: it reads the sets as the
//! cluster reports them and moves each one step toward its target, never past the two limits
//! the user set (`maxSurge`, `maxUnavailable`). Calling it again with what the cluster reports
//! next continues the same movement, so a restarted controller picks up where the last one was.
//!
//! Each call spends two budgets:
//! - scale-downs spend the **availability budget**, the available pods above
//!   `desired - maxUnavailable`. A scale-down is assumed to remove unavailable pods first (the
//!   ReplicaSet controller deletes not-ready pods first), so removing those is free and only
//!   available pods cost. Old sets go first, then the stable, then the canary.
//! - scale-ups spend the **surge room**, `desired + maxSurge` minus the replicas left after the
//!   scale-downs of this call; there is no room at all while the sets already hold more than
//!   that (spec.replicas was lowered). The canary goes first, then the stable.
//!
//! With `maxSurge: 0` this scales down first and fills the freed room; with `maxUnavailable: 0`
//! it scales up first and removes old pods once the new ones are available.

use sluice_api::IntOrPercent;

/// Desired and available pods of one ReplicaSet, as the plan sees it.
///
/// Negative counts are read as 0, and `available` as at most `replicas` (status lags a
/// scale-down, and only `replicas` pods will stay).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetCounts {
    /// `spec.replicas` of the ReplicaSet.
    pub replicas: i32,
    /// `status.availableReplicas` of the ReplicaSet.
    pub available: i32,
}

impl SetCounts {
    /// Replicas, never negative.
    fn spec(self) -> i64 {
        i64::from(self.replicas.max(0))
    }

    /// Available pods the plan may count on: never more than the set keeps.
    fn ready(self) -> i64 {
        i64::from(self.available.max(0)).min(self.spec())
    }
}

/// Surge and unavailability resolved against spec.replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Pods allowed above the desired replicas, summed over all sets.
    pub max_surge: i32,
    /// Available pods allowed below the desired replicas.
    pub max_unavailable: i32,
}

impl Limits {
    /// Resolves `maxSurge` and `maxUnavailable` against `desired`, as Deployments and Argo
    /// Rollouts do: maxSurge percentages round up, maxUnavailable percentages round down.
    ///
    /// When both end up 0 (`0`/`0`, or small percentages of few replicas), maxUnavailable
    /// becomes 1: a rollout allowed neither an extra pod nor a missing one could never move.
    pub fn resolve(
        desired: i32,
        max_surge: &IntOrPercent,
        max_unavailable: &IntOrPercent,
    ) -> Limits {
        let desired = desired.max(0);
        let max_surge = max_surge.resolve(desired, true).max(0);
        let max_unavailable = max_unavailable.resolve(desired, false).max(0);
        let stuck = max_surge == 0 && max_unavailable == 0;
        let max_unavailable = if stuck { 1 } else { max_unavailable };
        Limits {
            max_surge,
            max_unavailable,
        }
    }
}

/// Canary pods for a traffic weight: ceil(weight% of desired), clamped to 0..=desired.
///
/// Rounding up means any weight above 0 gets at least one canary pod to serve it.
pub fn canary_for_weight(desired: i32, weight: i32) -> i32 {
    let desired = i64::from(desired.max(0));
    let weight = i64::from(weight.clamp(0, 100));
    narrow((desired * weight + 99) / 100)
}

/// What one reconcile sees.
///
/// The targets can be reached when `target_canary + target_stable` (the stable counted only when
/// there is one) lies within `desired - max_unavailable ..= desired + max_surge`; outside that
/// range [`next_scale`] still keeps both limits and stops where they bind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaleInput<'a> {
    /// `spec.replicas` of the rollout.
    pub desired: i32,
    /// Surge and unavailability, resolved against `desired`.
    pub limits: Limits,
    /// The ReplicaSet of the current pod template (the "new" one).
    pub canary: SetCounts,
    /// The stable ReplicaSet; `None` on a first deploy or when the canary is the stable.
    pub stable: Option<SetCounts>,
    /// Older ReplicaSets that are neither canary nor stable; they must go to 0.
    pub others: &'a [SetCounts],
    /// Where this step wants the canary, clamped to `0..=desired`.
    pub target_canary: i32,
    /// Where this step wants the stable (normally `desired - target_canary`; `desired` on
    /// abort), clamped to `0..=desired`.
    pub target_stable: i32,
}

/// The next spec.replicas of each set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleOutput {
    /// Next `spec.replicas` of the canary.
    pub canary: i32,
    /// Next `spec.replicas` of the stable, when there is one.
    pub stable: Option<i32>,
    /// Next `spec.replicas` of each older set, in the order of [`ScaleInput::others`].
    pub others: Vec<i32>,
}

/// Moves every set one step toward its target within maxSurge and maxUnavailable.
///
/// Scale-downs go first (old sets to 0, then the stable, then the canary), each as far as the
/// availability budget allows; then scale-ups (canary, then stable) as far as the surge room
/// left after those scale-downs allows. No set moves past its target, and no set grows while
/// the sets already hold more than `desired + max_surge`.
pub fn next_scale(input: &ScaleInput) -> ScaleOutput {
    let (target_canary, target_stable) = targets(input);
    let desired = i64::from(input.desired.max(0));
    let sets = || (input.others.iter().chain(&input.stable)).chain([&input.canary]);
    let total: i64 = sets().map(|set| set.spec()).sum();
    let available: i64 = sets().map(|set| set.ready()).sum();

    let min_available = desired - i64::from(input.limits.max_unavailable.max(0));
    let mut budget = (available - min_available).max(0);
    let others: Vec<i32> = (input.others.iter())
        .map(|set| scale_down(*set, 0, &mut budget))
        .collect();
    let stable = (input.stable).map(|set| scale_down(set, target_stable, &mut budget));
    let canary = scale_down(input.canary, target_canary, &mut budget);

    let max_total = desired + i64::from(input.limits.max_surge.max(0));
    let after_downs: i64 = (others.iter().chain(&stable).chain([&canary]))
        .map(|n| i64::from(*n))
        .sum();
    let mut room = if total > max_total {
        0
    } else {
        (max_total - after_downs).max(0)
    };
    let canary = scale_up(canary, target_canary, &mut room);
    let stable = stable.map(|n| scale_up(n, target_stable, &mut room));
    ScaleOutput {
        canary,
        stable,
        others,
    }
}

/// Whether the sets have reached the targets: canary.replicas == target_canary and
/// canary.available >= target_canary, stable at target_stable with available >= target_stable,
/// others at 0.
///
/// This is when a step's scaling is done and the rollout may go on (pause, analysis, next step).
pub fn reached(input: &ScaleInput) -> bool {
    reached_with(input, Progress::All)
}

/// [`reached`], with the canary's pods counted as `progress` says (`replicaProgressThreshold`):
/// the canary must still hold all its target's replicas, but only that share of them must be
/// available. The stable set and the old sets are held to [`reached`]'s rule.
pub fn reached_with(input: &ScaleInput, progress: Progress) -> bool {
    let (target_canary, target_stable) = targets(input);
    let at = |set: SetCounts, target: i32| set.replicas == target && set.available >= target;
    let canary = input.canary;
    canary.replicas == target_canary
        && progress.met(canary.available, target_canary)
        && input.stable.is_none_or(|set| at(set, target_stable))
        && input.others.iter().all(|set| set.replicas == 0)
}

/// How many of a canary's pods must be available for a step (or the promotion) to be done:
/// `canary.replicaProgressThreshold`, all of them when unset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Progress {
    /// Every pod of the target (no threshold).
    #[default]
    All,
    /// This percentage of the target, rounded up.
    Percent(i32),
    /// This many pods (or the whole target when it is smaller).
    Pods(i32),
}

impl Progress {
    /// The threshold a spec sets; `validate` refuses the ones this reads as [`Progress::All`].
    pub fn of(threshold: Option<&sluice_api::ReplicaProgressThreshold>) -> Self {
        match threshold {
            Some(t) if t.value > 0 && t.type_ == "Percent" => Self::Percent(t.value.min(100)),
            Some(t) if t.value > 0 && t.type_ == "Pods" => Self::Pods(t.value),
            _ => Self::All,
        }
    }

    /// Whether `available` pods are enough of `target`: always when they are all of it.
    pub fn met(self, available: i32, target: i32) -> bool {
        if available >= target {
            return true;
        }
        match self {
            Self::All => false,
            Self::Percent(share) => {
                i64::from(available.max(0)) * 100 >= i64::from(share) * i64::from(target)
            }
            Self::Pods(pods) => available >= pods,
        }
    }
}

/// The targets clamped to `0..=desired`, the same for [`next_scale`] and [`reached`].
fn targets(input: &ScaleInput) -> (i32, i32) {
    let desired = input.desired.max(0);
    (
        input.target_canary.clamp(0, desired),
        input.target_stable.clamp(0, desired),
    )
}

/// Scales `set` down toward `target`: its unavailable pods go for free, each available pod
/// costs one from `budget`. A set at or below its target keeps its replicas.
fn scale_down(set: SetCounts, target: i32, budget: &mut i64) -> i32 {
    let (current, target) = (set.spec(), i64::from(target));
    if current <= target {
        return narrow(current);
    }
    // Down to here only unavailable pods go.
    let free_floor = set.ready().max(target);
    let next = (free_floor - *budget).max(target);
    *budget -= free_floor - next;
    narrow(next)
}

/// Scales `current` up toward `target`, spending `room`.
fn scale_up(current: i32, target: i32, room: &mut i64) -> i32 {
    let added = i64::from(target - current).min(*room).max(0);
    *room -= added;
    narrow(i64::from(current) + added)
}

/// An `i64` that lies between two `i32` values by construction, back as `i32`.
fn narrow(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(if value < 0 { 0 } else { i32::MAX })
}

#[cfg(test)]
mod tests {
    use proptest::{collection::vec, option, prelude::*};

    use super::*;
    use sluice_api::IntOrPercent::{Int, Percent};

    fn set(replicas: i32, available: i32) -> SetCounts {
        SetCounts {
            replicas,
            available,
        }
    }

    fn limits(desired: i32, surge: IntOrPercent, unavailable: IntOrPercent) -> Limits {
        Limits::resolve(desired, &surge, &unavailable)
    }

    /// One reconcile's view with no old sets; `targets` is (canary, stable).
    fn input(
        desired: i32,
        limits: Limits,
        canary: SetCounts,
        stable: Option<SetCounts>,
        targets: (i32, i32),
    ) -> ScaleInput<'static> {
        let (target_canary, target_stable) = targets;
        ScaleInput {
            desired,
            limits,
            canary,
            stable,
            others: &[],
            target_canary,
            target_stable,
        }
    }

    /// The invariants of one step: surge (rule 1), availability (rule 2), bounds (rule 5).
    fn check(input: &ScaleInput, out: &ScaleOutput) -> Result<(), String> {
        let (tc, ts) = targets(input);
        let ins: Vec<_> = (input.others.iter().chain(&input.stable))
            .chain([&input.canary])
            .collect();
        let outs: Vec<_> = (out.others.iter().chain(&out.stable))
            .chain([&out.canary])
            .map(|n| i64::from(*n))
            .collect();
        let fail = |what: &str| Err(format!("{what}: {input:?} -> {out:?}"));
        if ins.len() != outs.len() || input.stable.is_some() != out.stable.is_some() {
            return fail("shape changed");
        }
        let pairs = || ins.iter().zip(&outs);
        let max_total = i64::from(input.desired) + i64::from(input.limits.max_surge);
        let total_in: i64 = ins.iter().map(|s| s.spec()).sum();
        if outs.iter().sum::<i64>() > total_in.max(max_total) {
            return fail("above surge");
        }
        if total_in > max_total && pairs().any(|(s, n)| *n > s.spec()) {
            return fail("grew while above surge");
        }
        let min_available = i64::from(input.desired) - i64::from(input.limits.max_unavailable);
        let available_in: i64 = ins.iter().map(|s| s.ready()).sum();
        let available_out: i64 = pairs().map(|(s, n)| s.ready().min(*n)).sum();
        if available_out < available_in.min(min_available) {
            return fail("below min available");
        }
        if outs.iter().any(|n| *n < 0)
            || out.canary > tc.max(input.canary.replicas)
            || (input.stable.zip(out.stable)).is_some_and(|(s, n)| n > ts.max(s.replicas))
            || (input.others.iter().zip(&out.others)).any(|(s, n)| *n > s.replicas)
        {
            return fail("negative or above what is needed");
        }
        Ok(())
    }

    /// Applies `next_scale` until `reached`, checking every step; pods become available at
    /// once, or when `delay` one round after they were created. Returns each round's output.
    fn run(start: &ScaleInput, delay: bool, max_rounds: usize) -> Result<Vec<ScaleOutput>, String> {
        let (mut canary, mut stable) = (start.canary, start.stable);
        let mut others = start.others.to_vec();
        let mut rounds = Vec::new();
        loop {
            let now = ScaleInput {
                canary,
                stable,
                others: &others,
                ..*start
            };
            if reached(&now) {
                return Ok(rounds);
            }
            if rounds.len() == max_rounds {
                return Err(format!("not reached in {max_rounds} rounds: {now:?}"));
            }
            let out = next_scale(&now);
            check(&now, &out)?;
            let settle = |s: SetCounts, n: i32| set(n, if delay { n.min(s.replicas) } else { n });
            canary = settle(canary, out.canary);
            stable = stable.zip(out.stable).map(|(s, n)| settle(s, n));
            for (s, n) in others.iter_mut().zip(&out.others) {
                *s = settle(*s, *n);
            }
            rounds.push(out);
        }
    }

    /// The (canary, stable) of each round until reached, with instant availability.
    fn walk(start: &ScaleInput) -> Vec<(i32, Option<i32>)> {
        let rounds = run(start, false, 50).unwrap();
        rounds.iter().map(|o| (o.canary, o.stable)).collect()
    }

    #[test]
    fn canary_for_weight_rounds_up_within_desired() {
        for (desired, weight, pods) in [
            (5, 20, 1),
            (5, 25, 2),
            (10, 33, 4),
            (3, 100, 3),
            (0, 50, 0),
            (4, 0, 0),
            (4, 150, 4),
            (4, -10, 0),
            (-3, 50, 0),
        ] {
            let got = canary_for_weight(desired, weight);
            assert_eq!(got, pods, "{desired} at {weight}%");
        }
    }

    #[test]
    fn limits_round_surge_up_and_unavailable_down() {
        for (desired, surge, unavailable, want) in [
            (4, Percent(25), Percent(25), (1, 1)),
            (1, Percent(25), Percent(25), (1, 0)),
            (5, Int(0), Int(0), (0, 1)),
            (0, Percent(25), Percent(25), (0, 1)),
            (3, Percent(100), Int(0), (3, 0)),
            (10, Int(0), Int(2), (0, 2)),
        ] {
            let got = limits(desired, surge, unavailable);
            let got = (got.max_surge, got.max_unavailable);
            assert_eq!(got, want, "{desired} {surge}/{unavailable}");
        }
    }

    #[test]
    fn five_replicas_step_20_40_100() {
        let l = limits(5, Percent(25), Percent(25)); // surge 2, unavailable 1
        let step = |c, s, targets| walk(&input(5, l, c, Some(s), targets));
        assert_eq!(step(set(0, 0), set(5, 5), (1, 4)), [(1, Some(4))]);
        assert_eq!(step(set(1, 1), set(4, 4), (2, 3)), [(2, Some(3))]);
        assert_eq!(
            step(set(2, 2), set(3, 3), (5, 0)),
            [(5, Some(2)), (5, Some(0))]
        );
    }

    #[test]
    fn one_replica_surges_then_waits_for_the_new_pod() {
        let l = limits(1, Int(1), Int(0));
        let scale = |c| next_scale(&input(1, l, c, Some(set(1, 1)), (1, 0)));
        assert_eq!(
            (scale(set(0, 0)).canary, scale(set(0, 0)).stable),
            (1, Some(1))
        );
        assert_eq!(
            scale(set(1, 0)).stable,
            Some(1),
            "the only available pod stays"
        );
        assert_eq!(scale(set(1, 1)).stable, Some(0));
    }

    #[test]
    fn no_surge_scales_down_first_then_fills_the_room() {
        let l = limits(10, Int(0), Int(2));
        let start = input(10, l, set(0, 0), Some(set(10, 10)), (10, 0));
        let want = [(2, 8), (4, 6), (6, 4), (8, 2), (10, 0)].map(|(c, s)| (c, Some(s)));
        assert_eq!(walk(&start), want);
        // The two new pods are not available yet: nothing moves.
        let waiting = next_scale(&input(10, l, set(2, 0), Some(set(8, 8)), (10, 0)));
        assert_eq!((waiting.canary, waiting.stable), (2, Some(8)));
    }

    #[test]
    fn abort_restores_the_stable_while_keeping_min_available() {
        let l = limits(10, Percent(25), Percent(25)); // surge 3, unavailable 2
        let abort = input(10, l, set(4, 4), Some(set(6, 6)), (0, 10));
        assert_eq!(walk(&abort), [(2, Some(10)), (0, Some(10))]);
        // New stable pods not ready yet: the canary keeps its available pods.
        let waiting = input(10, l, set(2, 2), Some(set(10, 6)), (0, 10));
        assert_eq!(next_scale(&waiting).canary, 2);
    }

    #[test]
    fn weight_lowered_moves_pods_back_to_the_stable() {
        let l = limits(10, Percent(25), Percent(25));
        let lowered = input(10, l, set(6, 6), Some(set(4, 4)), (2, 8));
        assert_eq!(walk(&lowered), [(4, Some(8)), (2, Some(8))]);
    }

    #[test]
    fn an_old_third_set_goes_first() {
        let l = limits(10, Percent(25), Percent(25));
        let old = [set(3, 3)];
        let start = ScaleInput {
            others: &old,
            ..input(10, l, set(0, 0), Some(set(7, 7)), (1, 9))
        };
        let rounds = run(&start, false, 10).unwrap();
        assert_eq!(rounds[0].others, [1], "old pods go before any stable pod");
        assert_eq!((rounds[0].canary, rounds[0].stable), (1, Some(9)));
        assert_eq!(rounds[1].others, [0]);
        assert_eq!(rounds.len(), 2);
    }

    #[test]
    fn plain_rolling_update() {
        let l = limits(4, Percent(25), Percent(25)); // surge 1, unavailable 1
        let start = input(4, l, set(0, 0), Some(set(4, 4)), (4, 0));
        assert_eq!(walk(&start), [(2, Some(3)), (4, Some(1)), (4, Some(0))]);
        // A first deploy has no stable: the canary simply scales up.
        assert_eq!(walk(&input(4, l, set(0, 0), None, (4, 0))), [(4, None)]);
    }

    #[test]
    fn unavailable_stable_pods_go_first_and_free() {
        let l = limits(10, Percent(25), Percent(25)); // min available 8
        let stable_after = |s, targets| next_scale(&input(10, l, set(0, 0), Some(s), targets));
        let out = stable_after(set(10, 7), (2, 8));
        assert_eq!((out.canary, out.stable), (2, Some(8)));
        // Below min available: unavailable pods may go, never an available one.
        assert_eq!(stable_after(set(10, 5), (5, 5)).stable, Some(5));
        assert_eq!(stable_after(set(6, 6), (5, 5)).stable, Some(6));
        // Status lagging a scale-down: no more available pods than replicas are counted.
        assert_eq!(stable_after(set(8, 10), (5, 5)).stable, Some(8));
    }

    #[test]
    fn replicas_lowered_by_the_user_only_scales_down() {
        let l = limits(5, Percent(25), Percent(25)); // surge 2, unavailable 1
        let lowered = input(5, l, set(1, 1), Some(set(8, 8)), (2, 3));
        // The canary waits for the stable to shrink below desired + surge.
        assert_eq!(walk(&lowered), [(1, Some(3)), (2, Some(3))]);
    }

    #[test]
    fn a_progress_threshold_lets_the_canary_go_on_with_a_share_of_its_pods_available() {
        let l = limits(10, Percent(25), Percent(25));
        let at = |canary, progress| {
            reached_with(&input(10, l, canary, Some(set(3, 3)), (7, 3)), progress)
        };
        assert!(!at(set(7, 4), Progress::All));
        assert!(at(set(7, 7), Progress::All));
        // 70 % of 7 pods is 4.9: five must be available.
        assert!(!at(set(7, 4), Progress::Percent(70)));
        assert!(at(set(7, 5), Progress::Percent(70)));
        assert!(at(set(7, 3), Progress::Pods(3)));
        assert!(!at(set(7, 2), Progress::Pods(3)));
        // The canary still has to hold all its replicas, and the stable set all its pods.
        assert!(!at(set(6, 6), Progress::Pods(1)));
        assert!(!reached_with(
            &input(10, l, set(7, 7), Some(set(3, 2)), (7, 3)),
            Progress::Pods(1)
        ));
        // A threshold above a small target asks for the target, no more.
        assert!(Progress::Pods(5).met(2, 2));
        assert!(Progress::Percent(50).met(0, 0));
    }

    #[test]
    fn reached_needs_replicas_and_availability() {
        let l = limits(4, Percent(25), Percent(25));
        let at = |c, s| reached(&input(4, l, c, Some(s), (2, 2)));
        assert!(at(set(2, 2), set(2, 3)));
        assert!(!at(set(2, 1), set(2, 2)));
        assert!(!at(set(2, 2), set(3, 3)));
        let old = [set(1, 1)];
        let with_old = input(4, l, set(2, 2), Some(set(2, 2)), (2, 2));
        assert!(!reached(&ScaleInput {
            others: &old,
            ..with_old
        }));
        assert!(reached(&input(4, l, set(4, 4), None, (4, 0))));
    }

    /// A random reconcile's sets and limits, with raw picks for the targets.
    #[derive(Clone, Debug)]
    struct Case {
        desired: i32,
        limits: Limits,
        canary: SetCounts,
        stable: Option<SetCounts>,
        others: Vec<SetCounts>,
        picks: (i32, i32),
    }

    impl Case {
        fn input(&self, target_canary: i32, target_stable: i32) -> ScaleInput<'_> {
            let targets = (target_canary, target_stable);
            let (d, l) = (self.desired, self.limits);
            ScaleInput {
                others: &self.others,
                ..input(d, l, self.canary, self.stable, targets)
            }
        }
    }

    fn int_or_percent(max_percent: u32) -> impl Strategy<Value = IntOrPercent> {
        prop_oneof![
            (0..=10u32).prop_map(Int),
            (0..=max_percent).prop_map(Percent)
        ]
    }

    fn counts() -> impl Strategy<Value = SetCounts> {
        (0..=60i32, any::<u16>()).prop_map(|(r, a)| set(r, i32::from(a) % (r + 1)))
    }

    prop_compose! {
        fn case()(
            desired in 0..=50i32,
            surge in int_or_percent(150),
            unavailable in int_or_percent(100),
            (canary, stable, others) in (counts(), option::of(counts()), vec(counts(), 0..=3)),
            picks in (0..=60i32, prop_oneof![Just(0), -60..=60i32]),
        ) -> Case {
            let limits = limits(desired, surge, unavailable);
            Case { desired, limits, canary, stable, others, picks }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Rules 1, 2 and 5 for any targets, reachable or not; a reached state stays put.
        #[test]
        fn every_step_keeps_the_limits(case in case(), ts in 0..=60i32) {
            let span = case.desired + 1;
            let now = case.input(case.picks.0 % span, ts % span);
            let out = next_scale(&now);
            prop_assert_eq!(check(&now, &out), Ok(()));
            prop_assert_eq!(&out, &next_scale(&now), "deterministic");
            if reached(&now) {
                let stay: Vec<_> = case.others.iter().map(|s| s.replicas).collect();
                let stable = case.stable.map(|s| s.replicas);
                prop_assert_eq!(out, ScaleOutput { canary: case.canary.replicas, stable, others: stay });
            }
        }

        /// Rule 4: reachable targets are reached, with instant or one-round-late availability.
        #[test]
        fn reachable_targets_are_reached(case in case()) {
            let (d, l) = (case.desired, case.limits);
            let mut tc = case.picks.0 % (d + 1);
            if case.stable.is_none() {
                tc = tc.max(d - l.max_unavailable);
            }
            // The total of the targets within desired - max_unavailable ..= desired + max_surge.
            let shift = case.picks.1.clamp(-l.max_unavailable, l.max_surge);
            let start = case.input(tc, (d - tc + shift).clamp(0, d));
            let max_rounds = usize::try_from(4 * d + 10).unwrap();
            for delay in [false, true] {
                let outcome = run(&start, delay, max_rounds).map(|_| ());
                prop_assert_eq!(outcome, Ok(()), "delay: {}", delay);
            }
        }
    }
}
