//! `spec.rollbackWindow`: going back to one of the rollout's last revisions is promoted in full
//! (no steps, pauses or analysis steps), as Argo Rollouts fast-tracks it, because that version ran
//! before and the point is to get back to it quickly.
//!
//! Argo's window counts the current revision: with `revisions: 3` and revisions 1 to 5 (5
//! stable), going back to 4 or 3 is inside it, to 2 is not. Sluice counts on the ReplicaSets that
//! still exist, by their revision annotation; only a set older than the stable one is a rollback
//! (a newer one is an update, whatever the window).

use sluice_api::vocab::reason;

use crate::{EventType, Planner};

/// The revision of `hash`'s set when moving to it is a rollback inside the window.
fn within_window(p: &Planner<'_>, hash: &str) -> Option<i64> {
    let revisions = p
        .rollout
        .spec
        .rollback_window
        .as_ref()?
        .revisions
        .filter(|r| *r > 0)?;
    let stable = p.set(&p.existing_stable()?)?;
    let target = p.set(hash)?;
    if target.revision >= stable.revision {
        return None;
    }
    let between = p
        .sets
        .iter()
        .filter(|s| s.revision > target.revision && s.revision < stable.revision)
        .count();
    // The target and the stable revision are two of the window's revisions.
    (between + 2 <= usize::try_from(revisions).unwrap_or(0)).then_some(target.revision)
}

/// At the start of an attempt at `hash`: a rollback inside the window is promoted in full, and
/// says so once.
pub fn fast_track(p: &mut Planner<'_>, hash: &str) {
    let Some(revision) = within_window(p, hash) else {
        return;
    };
    p.status.promote_full = Some(true);
    let revisions = p
        .rollout
        .spec
        .rollback_window
        .as_ref()
        .and_then(|w| w.revisions)
        .unwrap_or_default();
    p.event(
        EventType::Normal,
        reason::ROLLBACK_WITHIN_WINDOW,
        format!(
            "Rolling back to revision {revision}, within the rollback window of {revisions} \
             revisions: promoted at once, its steps and pauses skipped"
        ),
    );
}
