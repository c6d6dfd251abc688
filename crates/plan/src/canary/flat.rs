//! A canary's steps as the planner walks them: every action of a step with several (Argo's own
//! examples write `setCanaryScale` and `setHeaderRoute` in one step) is a step of its own, the
//! actions that set traffic or pods first and those that wait (a pause, an analysis) after, so
//! that a step's waiting starts once all its settings hold. The status keeps Argo's index: the
//! step as written, reached once every one of its actions is done.

use sluice_api::{CanaryStep, CanarySteps, StepKind};

/// The actions in walking order, with the written step each one belongs to.
#[derive(Clone, Debug, Default)]
pub struct FlatSteps {
    /// Every action, a step's settings before its waits.
    pub actions: Vec<CanaryStep>,
    /// The written step of each action.
    origin: Vec<i32>,
    /// The first action of each written step.
    first: Vec<i32>,
}

/// Whether an action sets traffic or pods (done once they hold) rather than waits.
pub fn sets_something(step: &CanaryStep) -> bool {
    matches!(
        step.kind(),
        StepKind::SetWeight
            | StepKind::SetCanaryScale
            | StepKind::SetHeaderRoute
            | StepKind::SetMirrorRoute
    )
}

impl FlatSteps {
    /// The walking order of `steps`.
    pub fn of(steps: &CanarySteps) -> Self {
        let mut flat = Self::default();
        for index in 0..steps.len() {
            let mut actions = steps.actions(index);
            // Stable: a step's settings keep their written order, and so do its waits.
            actions.sort_by_key(|a| !sets_something(a));
            flat.first.push(flat.len());
            for action in actions {
                flat.actions.push(action.clone());
                flat.origin.push(i32::try_from(index).unwrap_or(i32::MAX));
            }
        }
        flat
    }

    /// How many actions there are; an index this high stands past the last step.
    pub fn len(&self) -> i32 {
        i32::try_from(self.actions.len()).unwrap_or(i32::MAX)
    }

    /// Whether there are no steps.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// The first action of the written step `step` (past the end for a step past the last).
    pub fn first_of(&self, step: i32) -> i32 {
        usize::try_from(step)
            .ok()
            .and_then(|s| self.first.get(s))
            .copied()
            .unwrap_or_else(|| self.len())
    }

    /// The written step of the action at `index` (the number of steps past the last action).
    pub fn step_of(&self, index: i32) -> i32 {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.origin.get(i))
            .copied()
            .unwrap_or_else(|| i32::try_from(self.first.len()).unwrap_or(i32::MAX))
    }

    /// Whether the action at `index` is the last of its written step.
    pub fn ends_step(&self, index: i32) -> bool {
        self.step_of(index) != self.step_of(index + 1)
    }

    /// The kinds of the actions of the written step of the action at `index`, as written in a
    /// message: `setCanaryScale, setHeaderRoute`.
    pub fn kinds_of_step(&self, index: i32) -> String {
        let step = self.step_of(index);
        self.origin
            .iter()
            .zip(&self.actions)
            .filter(|(o, _)| **o == step)
            .map(|(_, a)| a.kind().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(json: serde_json::Value) -> CanarySteps {
        serde_json::from_value(json).expect("steps")
    }

    #[test]
    fn a_step_of_several_actions_sets_before_it_waits_and_keeps_its_written_index() {
        let flat = FlatSteps::of(&steps(serde_json::json!([
            { "setWeight": 10 },
            { "pause": {}, "setWeight": 40, "setHeaderRoute": { "name": "beta" } },
            { "analysis": { "templates": [{ "templateName": "t" }] } },
        ])));
        let kinds: Vec<_> = flat.actions.iter().map(CanaryStep::kind).collect();
        assert_eq!(
            kinds,
            [
                StepKind::SetWeight,
                StepKind::SetWeight,
                StepKind::SetHeaderRoute,
                StepKind::Pause,
                StepKind::Analysis
            ]
        );
        assert_eq!(flat.len(), 5);
        assert_eq!(
            (0..=5).map(|i| flat.step_of(i)).collect::<Vec<_>>(),
            [0, 1, 1, 1, 2, 3]
        );
        assert_eq!(
            (0..=3).map(|s| flat.first_of(s)).collect::<Vec<_>>(),
            [0, 1, 4, 5]
        );
        assert_eq!(
            (0..5).map(|i| flat.ends_step(i)).collect::<Vec<_>>(),
            [true, false, false, true, true]
        );
        assert_eq!(flat.kinds_of_step(2), "setWeight, setHeaderRoute, pause");
    }

    #[test]
    fn steps_of_one_action_walk_as_written() {
        let written = steps(serde_json::json!([{ "pause": {} }, { "setWeight": 50 }]));
        let flat = FlatSteps::of(&written);
        assert_eq!(flat.actions, *written);
        assert_eq!((flat.first_of(1), flat.step_of(1)), (1, 1));
    }
}
