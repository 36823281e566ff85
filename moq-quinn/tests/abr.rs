//! Adaptive bitrate end to end: the `abr` example's player, on a link that steps
//! 10 → 3 → 10 Mbit/s every 4 s, settles on the highest rendition that fits within 3 s of
//! each step and never stalls longer than one group.

#![allow(clippy::disallowed_methods)]

#[allow(unreachable_pub)]
#[path = "../examples/abr.rs"]
mod abr;

use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn the_player_settles_on_the_rendition_that_fits_after_each_step() {
    let step = Duration::from_secs(4);
    let schedule = abr::demo_schedule(step);
    let duration = step * 3;
    let outcome = abr::run(schedule.clone(), duration, false).await;
    match abr::check(&outcome, &schedule, duration, Duration::from_secs(3)) {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
        }
        Err(failures) => panic!(
            "the player did not adapt:\n{failures}\ntimeline: {:?}",
            outcome
                .timeline
                .iter()
                .map(|p| (p.at.as_millis(), abr::RENDITIONS[p.rendition].0, p.estimate))
                .collect::<Vec<_>>()
        ),
    }
    // It went up to the top, down, and back up: the probe drove both directions.
    assert!(
        outcome.played >= 20,
        "played only {} groups",
        outcome.played
    );
}
