//! Cordoning local members out of read routing (`spec.cordoned`, `local cordon`,
//! `local uncordon`): the decisions, as pure functions; the supervisor carries them out.

/// The members cordoned at `up`: as the file says when one is given (`-f`), else as they were
/// left (`cordon` / `uncordon` since), else as the kept file says.
pub fn cordoned_at_up(from_file: bool, spec: &[String], before: Option<&[String]>) -> Vec<String> {
    let mut cordoned = match before {
        Some(before) if !from_file => before.to_vec(),
        _ => spec.to_vec(),
    };
    cordoned.sort_unstable();
    cordoned.dedup();
    cordoned
}

/// The cordoned members after `cordon` (`on`) or `uncordon` of `member`, and what to say;
/// both are idempotent. `members`: the cluster's members now. A primary may be cordoned: the
/// cordon takes effect once it is a replica (after a switchover), and the answer says so.
pub fn cordon(
    cordoned: &[String],
    member: &str,
    on: bool,
    members: &[String],
    primary: Option<&str>,
) -> Result<(Vec<String>, String), String> {
    if !members.iter().any(|m| m == member) {
        return Err(format!(
            "no member {member} (the members are {})",
            members.join(", ")
        ));
    }
    let was = cordoned.iter().any(|m| m == member);
    let mut now: Vec<String> = cordoned.iter().filter(|m| *m != member).cloned().collect();
    if on {
        now.push(member.to_string());
        now.sort_unstable();
    }
    let message = match (was, on) {
        (false, true) if primary == Some(member) => format!(
            "{member} cordoned: it is the primary, so it takes writes and reads as before; it \
             gets no reads once it is a replica"
        ),
        (false, true) => format!(
            "{member} cordoned: no reads are routed to it from the next topology on; it keeps \
             replicating"
        ),
        (true, true) => format!("{member} is cordoned already"),
        (true, false) => format!("{member} uncordoned: reads are routed to it again"),
        (false, false) => format!("{member} is not cordoned"),
    };
    Ok((now, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn the_file_decides_at_up_f_and_the_last_cordon_otherwise() {
        let file = names(&["s-2", "s-1", "s-2"]);
        let kept = names(&["s-0"]);
        assert_eq!(
            cordoned_at_up(true, &file, Some(&kept)),
            names(&["s-1", "s-2"])
        );
        assert_eq!(cordoned_at_up(false, &file, Some(&kept)), kept);
        assert_eq!(cordoned_at_up(false, &file, None), names(&["s-1", "s-2"]));
        assert!(cordoned_at_up(true, &[], Some(&kept)).is_empty());
    }

    #[test]
    fn cordon_and_uncordon_change_the_list_and_say_so() {
        let members = names(&["s-0", "s-1", "s-2"]);
        let (now, said) = cordon(&[], "s-1", true, &members, Some("s-0")).unwrap();
        assert_eq!(now, names(&["s-1"]));
        assert!(said.starts_with("s-1 cordoned: no reads"), "{said}");
        let (again, said) = cordon(&now, "s-1", true, &members, Some("s-0")).unwrap();
        assert_eq!(again, now);
        assert!(said.ends_with("cordoned already"), "{said}");
        let (back, said) = cordon(&now, "s-1", false, &members, Some("s-0")).unwrap();
        assert!(back.is_empty());
        assert!(said.starts_with("s-1 uncordoned"), "{said}");
        let (_, said) = cordon(&back, "s-1", false, &members, Some("s-0")).unwrap();
        assert!(said.ends_with("is not cordoned"), "{said}");
    }

    #[test]
    fn a_primary_may_be_cordoned_for_later_and_an_unknown_member_is_refused() {
        let members = names(&["s-0", "s-1"]);
        let (now, said) = cordon(&[], "s-0", true, &members, Some("s-0")).unwrap();
        assert_eq!(now, names(&["s-0"]));
        assert!(said.contains("it is the primary"), "{said}");
        let refused = cordon(&[], "s-7", true, &members, Some("s-0")).unwrap_err();
        assert!(refused.starts_with("no member s-7"), "{refused}");
    }
}
