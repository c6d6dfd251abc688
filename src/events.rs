//! Sluice's event recorder: one Event per step of a rollout instead of one per change, and an
//! event that repeats as a series on one Event.
//!
//! A canary step scales two ReplicaSets and then completes; recorded one by one that is three
//! or four Events, each a request as costly as the scale itself (they were 15 of the 34 writes
//! of a 5-step canary). Here the changes that lead up to a step (ReplicaSets created, scaled,
//! deleted, a Service switched, the rollout updated) wait, for at most [`GATHER_AT_MOST`], and
//! go out in the Event of the step they belong to: its reason is the step's
//! (`RolloutStepCompleted`, `RolloutPaused`, `RolloutCompleted`, …), its note says the step first
//! and then each change that led to it, in order, so nothing a person reads in
//! `kubectl describe` is lost. A Warning never waits.
//!
//! kube-runtime's recorder, used before, counted a repeated event (same object and reason) as a
//! series on the first one and kept its first note: the second `ScalingReplicaSet` of an update
//! said again what the first had. Here a series is only the same note again, and the state kept
//! per object is its last Event's name and a hash of its note, dropped once the series could no
//! longer grow.

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use jiff::Timestamp;
use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
    runtime::events::EventType,
};
use serde_json::json;
use sluice_api::{
    model::{NOTE_LIMIT, cut},
    vocab::reason,
};
use tracing::warn;

use crate::runtime::Note;

/// The longest the changes leading up to a step wait for the step's Event; after it they go out
/// on their own (one Event for all of them), so a step that waits long still shows what it did.
pub const GATHER_AT_MOST: Duration = Duration::from_secs(10);

/// How long after its last occurrence an Event may still grow into a series.
const SERIES_WINDOW: Duration = Duration::from_secs(600);

/// How often the state of objects whose series are over is swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The reasons of the changes that lead up to a step: they wait for the step's Event.
const GATHERED: [&str; 5] = [
    reason::NEW_REPLICA_SET_CREATED,
    reason::SCALING_REPLICA_SET,
    reason::REPLICA_SET_DELETED,
    reason::SWITCH_SERVICE,
    reason::ROLLOUT_UPDATED,
];

/// Whether an event of this reason is a change leading up to a step (it waits for the step's
/// Event), not a step of its own.
pub fn leads_up_to_a_step(reason: &str) -> bool {
    GATHERED.contains(&reason)
}

/// Records Events for every controller of the process.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    controller: String,
    instance: String,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    objects: HashMap<ObjectKey, PerObject>,
    swept: Option<Instant>,
}

/// An object events are about: kind, namespace, name.
type ObjectKey = (String, String, String);

#[derive(Default)]
struct PerObject {
    /// Changes waiting for their step (and, within a reconcile, the steps), oldest first, and
    /// when the first came.
    gathered: Vec<Gathered>,
    since: Option<Instant>,
    /// The last Event written about the object.
    last: Option<Written>,
}

struct Gathered {
    message: String,
    reason: String,
    action: String,
    /// A step (or anything that is not a change leading up to one): it ends the gathering.
    step: bool,
}

struct Written {
    name: String,
    /// The object's uid then: a new object of the same name starts its own Events.
    uid: Option<String>,
    type_: EventType,
    reason: String,
    note: u64,
    count: i32,
    at: Instant,
}

/// One Event to write: a new one, or one more of a series.
enum Write {
    Create(Box<Event>),
    Repeat { name: String, count: i32 },
}

fn note_hash(note: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    note.hash(&mut hasher);
    hasher.finish()
}

fn type_name(type_: EventType) -> &'static str {
    match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

impl Recorder {
    /// A recorder whose Events name Sluice, and the pod it runs in (`POD_NAME`) when it does.
    pub fn new(client: Client) -> Self {
        let controller = "sluice".to_string();
        let instance = std::env::var("POD_NAME").unwrap_or_else(|_| controller.clone());
        Self {
            client,
            controller,
            instance,
            state: Arc::default(),
        }
    }

    /// Records one event at once (with the changes waiting for a step on the same object, if any).
    pub async fn publish(&self, reference: &ObjectReference, note: Note<'_>) {
        self.record(reference, &[note], false).await;
    }

    /// Records what one reconcile did, in order. With `gather`, the changes that lead up to a
    /// step wait for it (see the module); the answer is then how long until they are due
    /// anyway: the caller looks again by then, and a record without notes sends them.
    pub async fn record(
        &self,
        reference: &ObjectReference,
        notes: &[Note<'_>],
        gather: bool,
    ) -> Option<Duration> {
        let (writes, due) = self.plan(reference, notes, gather, Instant::now());
        for write in writes {
            self.write(reference, write).await;
        }
        due
    }

    /// Decides the Events to write for `notes` and updates the state as if they were written.
    fn plan(
        &self,
        reference: &ObjectReference,
        notes: &[Note<'_>],
        gather: bool,
        now: Instant,
    ) -> (Vec<Write>, Option<Duration>) {
        let key = (
            reference.kind.clone().unwrap_or_default(),
            reference.namespace.clone().unwrap_or_default(),
            reference.name.clone().unwrap_or_default(),
        );
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.sweep(now);
        if notes.is_empty() && !state.objects.contains_key(&key) {
            return (Vec::new(), None);
        }
        let object = state.objects.entry(key).or_default();
        let mut writes = Vec::new();
        for note in notes {
            if matches!(note.type_, EventType::Warning) {
                // A Warning stands alone; what waited goes out first, in its own Event.
                writes.extend(self.flush(object, reference, now));
                let note_text = cut(note.message, NOTE_LIMIT);
                writes.push(self.one(object, reference, note, note_text, now));
                continue;
            }
            object.since.get_or_insert(now);
            object.gathered.push(Gathered {
                message: note.message.to_string(),
                reason: note.reason.to_string(),
                action: note.action.to_string(),
                step: !gather || !leads_up_to_a_step(note.reason),
            });
        }
        // The last step of this reconcile goes out with everything before it; the changes after
        // it (the next step's) wait.
        if let Some(last) = object.gathered.iter().rposition(|g| g.step) {
            let rest = object.gathered.split_off(last + 1);
            let mut before = std::mem::replace(&mut object.gathered, rest);
            let step = before.pop().expect("the step is there");
            let mut text = step.message.clone();
            if !before.is_empty() {
                text.push_str("; before it: ");
                let messages: Vec<&str> = before.iter().map(|g| g.message.as_str()).collect();
                text.push_str(&messages.join("; "));
            }
            let note = Note {
                type_: EventType::Normal,
                reason: &step.reason,
                message: &text,
                action: &step.action,
            };
            let note_text = cut(&text, NOTE_LIMIT);
            writes.push(self.one(object, reference, &note, note_text, now));
            if object.gathered.is_empty() {
                object.since = None;
            } else {
                object.since = Some(now);
            }
        }
        let due = object
            .since
            .map(|since| GATHER_AT_MOST.saturating_sub(now.duration_since(since)));
        if due == Some(Duration::ZERO) {
            writes.extend(self.flush(object, reference, now));
            return (writes, None);
        }
        (writes, due)
    }

    /// The changes that waited, as one Event of the last one's reason.
    fn flush(
        &self,
        object: &mut PerObject,
        reference: &ObjectReference,
        now: Instant,
    ) -> Option<Write> {
        object.since = None;
        let gathered = std::mem::take(&mut object.gathered);
        let last = gathered.last()?;
        let text = gathered
            .iter()
            .map(|g| g.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        let note = Note {
            type_: EventType::Normal,
            reason: &last.reason,
            message: &text,
            action: &last.action,
        };
        let note_text = cut(&text, NOTE_LIMIT);
        Some(self.one(object, reference, &note, note_text, now))
    }

    /// One Event with `note_text`: more of the last one's series when it says the same again.
    fn one(
        &self,
        object: &mut PerObject,
        reference: &ObjectReference,
        note: &Note<'_>,
        note_text: String,
        now: Instant,
    ) -> Write {
        let hash = note_hash(&note_text);
        if let Some(last) = object.last.as_mut().filter(|l| {
            l.note == hash
                && l.reason == note.reason
                && l.type_ == note.type_
                && l.uid == reference.uid
                && now.duration_since(l.at) < SERIES_WINDOW
        }) {
            last.count += 1;
            last.at = now;
            return Write::Repeat {
                name: last.name.clone(),
                count: last.count,
            };
        }
        let event = self.event(reference, note, note_text);
        object.last = Some(Written {
            name: event.metadata.name.clone().unwrap_or_default(),
            uid: reference.uid.clone(),
            type_: note.type_,
            reason: note.reason.to_string(),
            note: hash,
            count: 1,
            at: now,
        });
        Write::Create(Box::new(event))
    }

    fn event(&self, reference: &ObjectReference, note: &Note<'_>, note_text: String) -> Event {
        let now = Timestamp::now();
        let name = format!(
            "{}.{:x}",
            reference.name.as_deref().unwrap_or(&self.controller),
            now.as_nanosecond()
        );
        Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: reference.namespace.clone(),
                ..ObjectMeta::default()
            },
            action: Some(note.action.to_string()),
            reason: Some(note.reason.to_string()),
            note: Some(note_text),
            type_: Some(type_name(note.type_).into()),
            event_time: Some(MicroTime(now)),
            regarding: Some(reference.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        }
    }

    /// Writes one Event; a failure is logged, never a failed reconcile. A series whose Event is
    /// gone (the API server keeps Events an hour) starts again as a new one.
    async fn write(&self, reference: &ObjectReference, write: Write) {
        let namespace = reference.namespace.as_deref().unwrap_or("default");
        let events: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let result = match write {
            Write::Create(event) => events
                .create(&PostParams::default(), &event)
                .await
                .map(drop),
            Write::Repeat { name, count } => {
                let patch = json!({ "series": {
                    "count": count,
                    "lastObservedTime": MicroTime(Timestamp::now()),
                } });
                events
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(drop)
            }
        };
        if let Err(e) = result {
            warn!(
                namespace,
                name = reference.name.as_deref(),
                error = %e,
                "could not record an event"
            );
            if let kube::Error::Api(status) = &e
                && status.code == 404
            {
                self.forget_last(reference);
            }
        }
    }

    /// Forgets the last Event about the object, so the next one is created anew.
    fn forget_last(&self, reference: &ObjectReference) {
        let key = (
            reference.kind.clone().unwrap_or_default(),
            reference.namespace.clone().unwrap_or_default(),
            reference.name.clone().unwrap_or_default(),
        );
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(object) = state.objects.get_mut(&key) {
            object.last = None;
        }
    }

    /// Drops what is kept about an object that is gone.
    pub fn forget(&self, kind: &str, namespace: &str, name: &str) {
        let key = (kind.to_owned(), namespace.to_owned(), name.to_owned());
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.objects.remove(&key);
    }

    /// How many objects the recorder keeps state for (for tests and the bench's reading).
    #[cfg(test)]
    fn objects(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .objects
            .len()
    }
}

impl State {
    /// Drops, at most once a [`SWEEP_EVERY`], the objects with nothing waiting whose last Event
    /// can no longer grow a series: the state stays as large as the recent Events.
    fn sweep(&mut self, now: Instant) {
        if self
            .swept
            .is_some_and(|at| now.duration_since(at) < SWEEP_EVERY)
        {
            return;
        }
        self.swept = Some(now);
        self.objects.retain(|_, o| {
            // Gathered changes wait for a reconcile that sends them; an object that never
            // reconciles again (deleted meanwhile) does not keep them for ever.
            o.since
                .is_some_and(|since| now.duration_since(since) < SERIES_WINDOW)
                || o.last
                    .as_ref()
                    .is_some_and(|l| now.duration_since(l.at) < SERIES_WINDOW)
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A recorder whose client points nowhere: for tests that never let it send.
    pub(crate) fn recorder() -> Recorder {
        // Never used to send: `plan` decides, `write` sends.
        let config = kube::Config::new("http://127.0.0.1:1".parse().expect("a URL"));
        let client = Client::try_from(config).expect("a client");
        Recorder::new(client)
    }

    fn rollout() -> ObjectReference {
        ObjectReference {
            kind: Some("Rollout".into()),
            namespace: Some("shop".into()),
            name: Some("web".into()),
            uid: Some("u-1".into()),
            ..ObjectReference::default()
        }
    }

    fn note<'a>(reason: &'a str, message: &'a str) -> Note<'a> {
        Note {
            type_: EventType::Normal,
            reason,
            message,
            action: "Reconcile",
        }
    }

    fn created(writes: &[Write]) -> Vec<(String, String)> {
        writes
            .iter()
            .map(|w| match w {
                Write::Create(e) => (
                    e.reason.clone().unwrap_or_default(),
                    e.note.clone().unwrap_or_default(),
                ),
                Write::Repeat { name, count } => (format!("repeat {name}"), count.to_string()),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_step_s_changes_go_out_in_the_step_s_one_event_in_order() {
        let r = recorder();
        let t0 = Instant::now();
        let scaled = [
            note(
                reason::SCALING_REPLICA_SET,
                "Scaled up ReplicaSet web-2 from 0 to 1",
            ),
            note(
                reason::SCALING_REPLICA_SET,
                "Scaled down ReplicaSet web-1 from 5 to 4",
            ),
        ];
        let (writes, due) = r.plan(&rollout(), &scaled, true, t0);
        assert!(writes.is_empty(), "the scaling waits for its step");
        assert_eq!(due, Some(GATHER_AT_MOST));
        let step = [note(
            reason::ROLLOUT_STEP_COMPLETED,
            "Rollout step 1/5 completed",
        )];
        let (writes, due) = r.plan(&rollout(), &step, true, t0 + Duration::from_secs(2));
        assert_eq!(due, None);
        assert_eq!(
            created(&writes),
            [(
                "RolloutStepCompleted".to_string(),
                "Rollout step 1/5 completed; before it: Scaled up ReplicaSet web-2 from 0 to 1; \
                 Scaled down ReplicaSet web-1 from 5 to 4"
                    .to_string()
            )]
        );
    }

    #[tokio::test]
    async fn steps_done_in_one_reconcile_share_one_event_and_the_next_step_s_changes_wait() {
        let r = recorder();
        let t0 = Instant::now();
        let notes = [
            note(
                reason::SCALING_REPLICA_SET,
                "Scaled down ReplicaSet web-1 from 5 to 4",
            ),
            note(reason::ROLLOUT_STEP_COMPLETED, "Rollout step 1/5 completed"),
            note(reason::ROLLOUT_STEP_COMPLETED, "Rollout step 2/5 completed"),
            note(
                reason::SCALING_REPLICA_SET,
                "Scaled up ReplicaSet web-2 from 1 to 3",
            ),
        ];
        let (writes, due) = r.plan(&rollout(), &notes, true, t0);
        assert_eq!(
            created(&writes),
            [(
                "RolloutStepCompleted".to_string(),
                "Rollout step 2/5 completed; before it: Scaled down ReplicaSet web-1 from 5 to 4; \
                 Rollout step 1/5 completed"
                    .to_string()
            )]
        );
        assert_eq!(
            due,
            Some(GATHER_AT_MOST),
            "step 3's scaling waits for step 3"
        );
    }

    #[tokio::test]
    async fn changes_whose_step_takes_long_go_out_on_their_own_when_due() {
        let r = recorder();
        let t0 = Instant::now();
        let created_set = [note(
            reason::NEW_REPLICA_SET_CREATED,
            "Created ReplicaSet web-2",
        )];
        let (writes, _) = r.plan(&rollout(), &created_set, true, t0);
        assert!(writes.is_empty());
        let (writes, due) = r.plan(&rollout(), &[], true, t0 + Duration::from_secs(4));
        assert!(writes.is_empty());
        assert_eq!(
            due,
            Some(Duration::from_secs(6)),
            "the caller looks again then"
        );
        let (writes, due) = r.plan(&rollout(), &[], true, t0 + GATHER_AT_MOST);
        assert_eq!(
            created(&writes),
            [(
                "NewReplicaSetCreated".to_string(),
                "Created ReplicaSet web-2".to_string()
            )]
        );
        assert_eq!(due, None);
    }

    #[tokio::test]
    async fn a_warning_never_waits_and_what_waited_goes_out_before_it() {
        let r = recorder();
        let t0 = Instant::now();
        let notes = [
            note(
                reason::SCALING_REPLICA_SET,
                "Scaled up ReplicaSet web-2 from 0 to 1",
            ),
            Note {
                type_: EventType::Warning,
                ..note(reason::ROLLOUT_ABORTED, "Rollout aborted")
            },
        ];
        let (writes, due) = r.plan(&rollout(), &notes, true, t0);
        assert_eq!(
            created(&writes),
            [
                (
                    "ScalingReplicaSet".to_string(),
                    "Scaled up ReplicaSet web-2 from 0 to 1".to_string()
                ),
                ("RolloutAborted".to_string(), "Rollout aborted".to_string()),
            ]
        );
        assert_eq!(due, None);
        // Without gathering (other controllers), nothing waits.
        let (writes, _) = r.plan(&rollout(), &notes[..1], false, t0);
        assert_eq!(writes.len(), 1);
    }

    #[tokio::test]
    async fn the_same_note_again_is_a_series_and_a_new_note_a_new_event() {
        let r = recorder();
        let t0 = Instant::now();
        let warn = |message| Note {
            type_: EventType::Warning,
            ..note("ReplicaSetCreateError", message)
        };
        let (first, _) = r.plan(&rollout(), &[warn("quota exceeded")], true, t0);
        let Write::Create(event) = &first[0] else {
            panic!("a new Event first")
        };
        let name = event.metadata.name.clone().unwrap_or_default();
        let (again, _) = r.plan(&rollout(), &[warn("quota exceeded")], true, t0);
        assert_eq!(
            created(&again),
            [(format!("repeat {name}"), "2".to_string())]
        );
        let (other, _) = r.plan(&rollout(), &[warn("quota exceeded: pods")], true, t0);
        assert!(
            matches!(&other[0], Write::Create(_)),
            "a different note is never folded into the first one's series"
        );
        // A new object of the same name starts its own Events.
        let mut recreated = rollout();
        recreated.uid = Some("u-2".into());
        let (fresh, _) = r.plan(&recreated, &[warn("quota exceeded: pods")], true, t0);
        assert!(matches!(&fresh[0], Write::Create(_)));
        // Past the series window, the state is swept.
        let later = t0 + SERIES_WINDOW + SWEEP_EVERY;
        let (_, _) = r.plan(
            &ObjectReference {
                name: Some("other".into()),
                ..rollout()
            },
            &[warn("quota exceeded")],
            true,
            later,
        );
        assert_eq!(r.objects(), 1, "only the object just seen is kept");
    }
}
