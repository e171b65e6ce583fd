//! Readiness means durable.

use std::time::Duration;

use pgreplica_e2e::faults::case::{Case, OrFail};
use pgreplica_e2e::faults::load::sql;
use pgreplica_e2e::faults::table::Row;
use pgreplica_e2e::faults::Spec;

use super::run;

/// A cluster reported ready with Required durability already has a synchronous standby.
#[test]
fn ready_means_durable() {
    run(|| async {
        let case = Case::up("ready_means_durable", Spec::three_sync_required());
        let primary = case.primary().or_fail(&case);
        let port = case.port(&primary).or_fail(&case);
        let rows = sql(
            port,
            &case.password,
            "SELECT application_name::text, sync_state::text, state::text \
             FROM pg_stat_replication ORDER BY 1",
            Duration::from_secs(10),
        )
        .await
        .or_fail(&case);
        let states: Vec<(String, String, String)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        case.say(format!(
            "right after up: pg_stat_replication on {primary}: {states:?}"
        ));
        let mut failures = Vec::new();
        if !states.iter().any(|(_, sync, _)| sync == "sync") {
            failures.push(format!(
                "ready, but no standby is in sync_state 'sync' on {primary}: {states:?}"
            ));
        }
        case.conclude_row(Row::default(), failures);
    });
}
