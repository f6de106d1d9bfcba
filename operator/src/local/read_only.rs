//! A local cluster read-only as a whole (`spec.readOnly`, `local read-only on|off`): the
//! decisions, as pure functions; the supervisor carries them out.

/// Whether `up` starts the cluster read-only: as the file says when one is given (`-f`), else
/// as it was left (`read-only on|off` since), else as the kept file says.
pub fn read_only_at_up(from_file: bool, spec_read_only: bool, before: Option<bool>) -> bool {
    match before {
        Some(before) if !from_file => before,
        _ => spec_read_only,
    }
}

/// What `read-only on` or `off` did, given the state before; both are idempotent.
pub fn toggled(cluster: &str, was: bool, now: bool, paused: bool) -> String {
    let later = if paused {
        " once the orchestration is resumed"
    } else {
        ""
    };
    match (was, now) {
        (false, true) => format!(
            "{cluster} made read-only{later}: the primary refuses writes (error 1290, relayed by \
             the proxies at once); reads go on"
        ),
        (true, false) => format!("{cluster} writable again{later}"),
        (true, true) => format!("{cluster} is read-only already"),
        (false, false) => format!("{cluster} is writable already"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_decides_at_up_f_and_the_last_switch_otherwise() {
        assert!(read_only_at_up(true, true, Some(false)));
        assert!(!read_only_at_up(true, false, Some(true)));
        assert!(read_only_at_up(false, false, Some(true)));
        assert!(!read_only_at_up(false, true, Some(false)));
        assert!(read_only_at_up(false, true, None));
    }

    #[test]
    fn on_and_off_say_what_changed() {
        assert!(toggled("shop", false, true, false).starts_with("shop made read-only: "));
        assert!(toggled("shop", false, true, true).contains("once the orchestration is resumed"));
        assert_eq!(toggled("shop", true, false, false), "shop writable again");
        assert!(toggled("shop", true, true, false).ends_with("read-only already"));
        assert!(toggled("shop", false, false, false).ends_with("writable already"));
    }
}
