//! The scheduler against a fake engine whose logits are a function of a slot's last token and
//! position, so that every expected sequence is known without a GPU.

use std::sync::{Arc, Mutex};

use super::*;
use crate::model::FinishReason;
use crate::model::sampling::Sampling;
use crate::serve::request::Finish;

const VOCAB: usize = 50;
const CONTEXT: usize = 64;

/// The token the fake engine makes most likely after `last` at `position`.
fn next(last: u32, position: usize) -> u32 {
    ((last as usize * 7 + position * 3 + 1) % VOCAB) as u32
}

/// Per slot: (tokens in the cache, last token). Records the largest step it ran.
struct Fake {
    slots: Vec<(usize, u32)>,
    widest: Arc<Mutex<usize>>,
    setup: Setup,
}

/// How a test wants the fake engine.
#[derive(Clone, Default)]
struct Setup {
    /// A step holding this token fails.
    fail_on_token: Option<u32>,
    /// Decode steps (one token per entry) wait for this lock: a test holds it to pause them.
    gate: Arc<Mutex<()>>,
    /// Context instead of CONTEXT.
    context: Option<usize>,
}

impl Engine for Fake {
    fn slots(&self) -> usize {
        self.slots.len()
    }
    fn vocab(&self) -> usize {
        VOCAB
    }
    fn context(&self) -> usize {
        self.setup.context.unwrap_or(CONTEXT)
    }
    fn step(&mut self, entries: &[(usize, &[u32])]) -> Result<Vec<Vec<f32>>> {
        if entries.iter().all(|e| e.1.len() == 1) {
            drop(self.setup.gate.lock().unwrap());
        }
        let mut widest = self.widest.lock().unwrap();
        *widest = (*widest).max(entries.len());
        let mut out = Vec::new();
        for (slot, ids) in entries {
            if ids.iter().any(|id| Some(*id) == self.setup.fail_on_token) {
                return Err(Error::input("the fake engine fails on this token"));
            }
            let (position, last) = &mut self.slots[*slot];
            *position += ids.len();
            *last = *ids.last().unwrap();
            let mut logits = vec![0.0; VOCAB];
            logits[next(*last, *position) as usize] = 1.0;
            out.push(logits);
        }
        Ok(out)
    }
    fn reset(&mut self, slot: usize) -> Result<()> {
        self.slots[slot] = (0, 0);
        Ok(())
    }
}

fn text(ids: &[u32]) -> String {
    ids.iter().map(|id| format!("t{id} ")).collect()
}

fn start(slots: usize, queue: usize, setup: Setup) -> (Scheduler, Arc<Mutex<usize>>) {
    let widest = Arc::new(Mutex::new(0));
    let w = widest.clone();
    let s = Scheduler::start(
        SchedulerOptions {
            max_batch: slots,
            queue: Some(queue),
        },
        move || {
            Ok(Fake {
                slots: vec![(0, 0); slots],
                widest: w,
                setup,
            })
        },
        Box::new(|ids| Ok(text(ids))),
    )
    .unwrap();
    (s, widest)
}

fn request(prompt: &[u32], max_tokens: usize) -> Request {
    Request {
        prompt: prompt.to_vec(),
        max_tokens,
        sampling: Sampling::Greedy,
        stop_tokens: vec![],
        stop: vec![],
    }
}

/// The greedy continuation the fake engine gives `prompt`.
fn expected(prompt: &[u32], n: usize) -> Vec<u32> {
    let (mut last, mut position) = (*prompt.last().unwrap(), prompt.len());
    let mut out = Vec::new();
    for _ in 0..n {
        last = next(last, position);
        out.push(last);
        position += 1;
    }
    out
}

fn receiver(a: Admission) -> UnboundedReceiver<Event> {
    match a {
        Admission::Accepted(r) => r,
        Admission::Full => panic!("the queue is full"),
    }
}

/// All text and the finish event of one request.
fn collect(mut r: UnboundedReceiver<Event>) -> (String, Event) {
    let mut text = String::new();
    while let Some(e) = r.blocking_recv() {
        match e {
            Event::Text(t) => text += &t,
            end => return (text, end),
        }
    }
    panic!("the request ended without a last event")
}

fn done(reason: FinishReason, prompt_tokens: usize, completion_tokens: usize) -> Event {
    Event::Done(Finish {
        reason,
        prompt_tokens,
        completion_tokens,
    })
}

#[test]
fn a_greedy_request_gets_the_engine_sequence_and_its_counts() {
    let (s, _) = start(1, 4, Setup::default());
    let r = receiver(s.submit(request(&[3, 4, 5], 6)).unwrap());
    let (t, end) = collect(r);
    assert_eq!(t, text(&expected(&[3, 4, 5], 6)));
    assert_eq!(end, done(FinishReason::Length, 3, 6));
}

#[test]
fn stop_tokens_and_stop_strings_end_the_request_early() {
    let (s, _) = start(1, 4, Setup::default());
    let seq = expected(&[3, 4, 5], 6);
    let mut r = request(&[3, 4, 5], 6);
    r.stop_tokens = vec![seq[2]];
    let (t, end) = collect(receiver(s.submit(r).unwrap()));
    assert_eq!(t, text(&seq[..2]));
    assert_eq!(end, done(FinishReason::Stop, 3, 2));

    let mut r = request(&[3, 4, 5], 6);
    r.stop = vec![format!("t{} ", seq[3])];
    let (t, end) = collect(receiver(s.submit(r).unwrap()));
    assert_eq!(t, text(&seq[..3]));
    assert_eq!(end, done(FinishReason::Stop, 3, 4));
}

#[test]
fn a_full_cache_ends_the_request() {
    let (s, _) = start(1, 4, Setup::default());
    let prompt = vec![1; CONTEXT - 2];
    let (t, end) = collect(receiver(s.submit(request(&prompt, 10)).unwrap()));
    assert_eq!(t, text(&expected(&prompt, 3)));
    assert_eq!(end, done(FinishReason::Context, CONTEXT - 2, 3));
}

#[test]
fn concurrent_requests_decode_together_and_each_gets_its_own_sequence() {
    let (s, widest) = start(4, 16, Setup::default());
    let prompts: Vec<Vec<u32>> = (0..6).map(|i| vec![i, i + 1, 2 * i]).collect();
    let receivers: Vec<_> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| receiver(s.submit(request(p, 5 + i)).unwrap()))
        .collect();
    for ((i, p), r) in prompts.iter().enumerate().zip(receivers) {
        let (t, end) = collect(r);
        assert_eq!(t, text(&expected(p, 5 + i)), "request {i}");
        assert_eq!(end, done(FinishReason::Length, 3, 5 + i));
    }
    assert_eq!(*widest.lock().unwrap(), 4);
}

#[test]
fn requests_beyond_the_queue_are_refused_and_bad_requests_are_errors() {
    let setup = Setup::default();
    let (s, _) = start(1, 1, setup.clone());
    let pause = setup.gate.lock().unwrap();
    let mut first = receiver(s.submit(request(&[1, 1], 40)).unwrap());
    // The worker holds the first request once its text arrives; then one more can wait.
    assert!(matches!(first.blocking_recv(), Some(Event::Text(_))));
    let _waiting = receiver(s.submit(request(&[2], 40)).unwrap());
    assert!(matches!(
        s.submit(request(&[3], 1)).unwrap(),
        Admission::Full
    ));
    drop(pause);
    drop((first, _waiting));

    // Without a queue, a free slot still takes a request.
    let (s, _) = start(1, 0, Setup::default());
    let (t, _) = collect(receiver(s.submit(request(&[2], 2)).unwrap()));
    assert_eq!(t, text(&expected(&[2], 2)));

    let too_long = vec![1; CONTEXT + 1];
    for (bad, what) in [
        (request(&[], 4), "empty"),
        (request(&too_long, 4), "context"),
        (request(&[VOCAB as u32], 4), "out of range"),
        (request(&[1], 0), "max_tokens"),
    ] {
        let e = s.submit(bad).unwrap_err().to_string();
        assert!(e.contains(what), "{e}");
    }
    let mut hot = request(&[1], 4);
    hot.sampling = Sampling::Random {
        temperature: 0.0,
        top_k: None,
        top_p: None,
        seed: 1,
    };
    assert!(
        s.submit(hot)
            .unwrap_err()
            .to_string()
            .contains("temperature")
    );
}

#[test]
fn a_request_whose_receiver_is_dropped_frees_its_slot() {
    // Without the slot freed, the long request would run for a million steps.
    let setup = Setup {
        context: Some(1 << 20),
        ..Setup::default()
    };
    let (s, _) = start(1, 2, setup);
    let mut long = receiver(s.submit(request(&[1], 1 << 20)).unwrap());
    assert!(matches!(long.blocking_recv(), Some(Event::Text(_))));
    drop(long);
    let (t, end) = collect(receiver(s.submit(request(&[2, 3], 3)).unwrap()));
    assert_eq!(t, text(&expected(&[2, 3], 3)));
    assert_eq!(end, done(FinishReason::Length, 2, 3));
}

#[test]
fn a_failed_step_fails_its_requests_and_the_next_ones_are_served() {
    let setup = Setup {
        fail_on_token: Some(49),
        ..Setup::default()
    };
    let (s, _) = start(1, 2, setup);
    let (_, end) = collect(receiver(s.submit(request(&[49], 3)).unwrap()));
    assert!(matches!(end, Event::Failed(m) if m.contains("fails on this token")));
    let (t, _) = collect(receiver(s.submit(request(&[2], 2)).unwrap()));
    assert_eq!(t, text(&expected(&[2], 2)));
}
