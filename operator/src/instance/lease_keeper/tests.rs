use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use super::*;
use crate::lease::LeaseError;

fn clock() -> impl Fn() -> u64 {
    let origin = Instant::now();
    move || origin.elapsed().as_millis() as u64
}

#[tokio::test]
async fn a_renewal_that_never_answers_is_abandoned_at_the_deadline() {
    // a node cut off from the API server: the request hangs on TCP timeouts (about 30 s in the
    // three-node e2e before this rule), so the fence must not wait for its answer
    let now = clock();
    let started = Instant::now();
    let r = renew_before(300, &now, |_| {
        std::future::pending::<Result<bool, LeaseError>>()
    })
    .await;
    let took = started.elapsed().as_millis();
    assert!(
        matches!(r, Renewal::TooLate(ref why) if why.contains("did not answer")),
        "{r:?}"
    );
    assert!(
        (250..1_000).contains(&took),
        "gave up after {took} ms, deadline 300 ms"
    );
}

#[tokio::test]
async fn a_failed_renewal_is_tried_again_before_the_deadline() {
    let now = clock();
    let calls = AtomicU32::new(0);
    let r = renew_before(5_000, &now, |_| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if n < 2 {
                Err(LeaseError::EmptyHolder)
            } else {
                Ok(true)
            }
        }
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    match r {
        // two pauses of RETRY_MS before the third attempt, well before the 5 s deadline
        Renewal::Renewed { sent_mono_ms } => {
            assert!(
                (2 * RETRY_MS..2_000).contains(&sent_mono_ms),
                "{sent_mono_ms}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn failures_until_the_deadline_end_in_too_late_with_the_last_error() {
    let now = clock();
    let started = Instant::now();
    let r = renew_before(600, &now, |_| async { Err(LeaseError::ZeroDuration) }).await;
    let took = started.elapsed().as_millis();
    assert_eq!(
        r,
        Renewal::TooLate(LeaseError::ZeroDuration.to_string()),
        "the last error is the reason"
    );
    assert!(
        (550..1_200).contains(&took),
        "fenced after {took} ms, deadline 600 ms"
    );
}

#[tokio::test]
async fn table_of_single_answers() {
    // (answer of the store, deadline ahead in ms, outcome)
    let table: [(Option<bool>, u64, &str); 4] = [
        (Some(true), 1_000, "renewed"),
        (Some(false), 1_000, "lost"),
        (None, 1_000, "too late"),   // hangs
        (Some(true), 0, "too late"), // no time left: not even tried
    ];
    for (answer, ahead, want) in table {
        let now = clock();
        let deadline = now() + ahead;
        let r = renew_before(deadline, &now, |_| async move {
            match answer {
                Some(a) => Ok(a),
                None => std::future::pending().await,
            }
        })
        .await;
        let got = match r {
            Renewal::Renewed { .. } => "renewed",
            Renewal::Lost => "lost",
            Renewal::TooLate(_) => "too late",
        };
        assert_eq!(got, want, "answer {answer:?}, {ahead} ms ahead");
    }
}
