//! Pausing a local cluster's orchestration (`spec.paused`, `local pause`, `local resume`):
//! the decisions, as pure functions; the supervisor carries them out.

/// Whether `up` starts the cluster paused: as the file says when one is given (`-f`), else as
/// it was left (`pause` / `resume` since), else as the kept file says. A cluster never
/// bootstrapped cannot start paused: there is no primary to keep, and nothing would make one.
pub fn paused_at_up(
    from_file: bool,
    spec_paused: bool,
    before: Option<bool>,
    bootstrapped: bool,
) -> Result<bool, String> {
    let paused = match before {
        Some(before) if !from_file => before,
        _ => spec_paused,
    };
    if paused && !bootstrapped {
        return Err(
            "spec.paused: this cluster was never bootstrapped, so there is nothing to keep as \
             it is; start it without spec.paused and pause it with `lagless-operator local pause`"
                .to_string(),
        );
    }
    Ok(paused)
}

/// The refusal of a request that needs orchestration (switchover, scale, re-seed) while
/// paused.
pub fn refused_while_paused(paused: bool, what: &str) -> Option<String> {
    paused.then(|| {
        format!("orchestration is paused: no {what} until `lagless-operator local resume`")
    })
}

/// What `pause` or `resume` did (`Ok`), given the state before; both are idempotent.
pub fn toggled(cluster: &str, was: bool, now: bool) -> String {
    match (was, now) {
        (false, true) => format!(
            "orchestration of {cluster} paused: its members are observed and reported, nothing \
             is changed on them (no failover, switchover or repair) until `resume`"
        ),
        (true, false) => {
            format!("orchestration of {cluster} resumed: what waited is planned again now")
        }
        (true, true) => format!("orchestration of {cluster} is paused already"),
        (false, false) => format!("orchestration of {cluster} is running already"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_decides_at_up_f_and_the_last_pause_or_resume_otherwise() {
        assert_eq!(paused_at_up(true, true, Some(false), true), Ok(true));
        assert_eq!(paused_at_up(true, false, Some(true), true), Ok(false));
        assert_eq!(paused_at_up(false, false, Some(true), true), Ok(true));
        assert_eq!(paused_at_up(false, true, Some(false), true), Ok(false));
        assert_eq!(paused_at_up(false, true, None, true), Ok(true));
        assert_eq!(paused_at_up(true, false, None, false), Ok(false));
    }

    #[test]
    fn a_new_cluster_cannot_start_paused() {
        let refused = paused_at_up(true, true, None, false).unwrap_err();
        assert!(refused.contains("never bootstrapped"), "{refused}");
        assert!(paused_at_up(false, false, Some(true), false).is_err());
    }

    #[test]
    fn requests_that_orchestrate_are_refused_while_paused() {
        assert_eq!(refused_while_paused(false, "switchover"), None);
        assert_eq!(
            refused_while_paused(true, "switchover").as_deref(),
            Some("orchestration is paused: no switchover until `lagless-operator local resume`")
        );
    }

    #[test]
    fn pause_and_resume_say_what_changed() {
        assert!(toggled("shop", false, true).starts_with("orchestration of shop paused"));
        assert!(toggled("shop", true, false).starts_with("orchestration of shop resumed"));
        assert!(toggled("shop", true, true).ends_with("paused already"));
        assert!(toggled("shop", false, false).ends_with("running already"));
    }
}
