//! Which tenant a statement belongs to: a pure function of what the statement names, the
//! session's database and the connection's attribute.

use lagless_directory::{InvalidTenant, TenantId, TenantNaming, TenantSource};

use crate::protocol::messages::ErrPacket;
use crate::route::SchemaRefs;

/// Where a statement's data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Databases that belong to no tenant: the global cluster.
    Global,
    Tenant(TenantId),
}

/// What the statement does to a tenant's existence, beyond running on its cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// An ordinary statement.
    Use,
    /// `CREATE DATABASE <tenant database>`: the proxy places the tenant first.
    Create,
    /// `DROP DATABASE <tenant database>`: the directory forgets the tenant once it succeeds.
    Drop,
}

/// Why a statement cannot be routed; each becomes a MySQL error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The statement, or the transaction it is part of, names two tenants (or a tenant and
    /// the global databases).
    CrossTenant(String, String),
    /// A database with a tenant's shape whose id breaks the rule.
    BadDatabase(String, InvalidTenant),
    /// A `lagless tenant=` hint or connection attribute whose id breaks the rule.
    BadTenant(&'static str, InvalidTenant),
}

impl Refusal {
    pub fn to_err(&self) -> ErrPacket {
        match self {
            Self::CrossTenant(a, b) => ErrPacket::new(
                1105,
                "HY000",
                format!(
                    "lagless: the statement touches {a} and {b}; a statement or transaction must \
                     stay within one tenant, as tenants may live on different clusters"
                ),
            ),
            Self::BadDatabase(name, why) => ErrPacket::new(
                1102,
                "42000",
                format!("Incorrect database name '{name}' ({why})"),
            ),
            Self::BadTenant(source, why) => {
                ErrPacket::new(1105, "HY000", format!("lagless: {source}: {why}"))
            }
        }
    }
}

/// Describes an owner in an error message.
pub fn describe(owner: &Owner) -> String {
    match owner {
        Owner::Global => "the global databases".to_string(),
        Owner::Tenant(id) => format!("tenant {id}"),
    }
}

/// A DDL statement on a tenant being moved: the move's replication channel filters
/// statements by their default database, so a DDL could miss the new copy.
pub fn moving_ddl(id: &TenantId) -> ErrPacket {
    ErrPacket::new(
        1105,
        "HY000",
        format!(
            "lagless: tenant {id} is being moved to another cluster; schema changes to it are \
             refused until the move ends"
        ),
    )
}

/// ER_LOCK_WAIT_TIMEOUT, what [`still_frozen`] answers.
pub const STILL_FROZEN: u16 = 1205;

/// A statement held while its tenant was frozen for longer than the hold allows. 1205 (lock
/// wait timeout) is what applications already retry.
pub fn still_frozen(owner: &Owner, held: std::time::Duration) -> ErrPacket {
    ErrPacket::new(
        STILL_FROZEN,
        "HY000",
        format!(
            "Lock wait timeout exceeded; lagless: {} is being moved between clusters and was \
             still frozen after {} ms; try again",
            describe(owner),
            held.as_millis()
        ),
    )
}

/// The inputs besides the statement.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub naming: &'a TenantNaming,
    pub sources: &'a [TenantSource],
    /// The session's default database, or the one this statement switches to (`USE`).
    pub database: Option<&'a str>,
    /// The connection attribute's value, if the client sent one.
    pub attribute: Option<&'a str>,
}

/// Where a statement runs, and what it does to a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub owner: Owner,
    pub lifecycle: Lifecycle,
    /// The statement names no database at all, and the session has none (`SELECT 1`,
    /// `BEGIN`, `SET`): it may run on whichever cluster the session is on.
    pub anywhere: bool,
}

/// The tenant a statement belongs to, and what it does to it.
///
/// Names in the statement come first: the tenants of its schema qualifiers and of
/// `CREATE`/`DROP DATABASE`, with a hint, must all agree. Without them the session's database
/// decides, then the connection attribute, in the pool's order of sources; without any, the
/// statement is the global cluster's. Qualifiers with a tenant's shape but a bad id are left to
/// the server (they may be aliases); a database, hint or attribute with one is refused.
pub fn decide(refs: &SchemaRefs, cx: &Context<'_>) -> Result<Decision, Refusal> {
    let (owner, lifecycle) = owner_of(refs, cx)?;
    let anywhere = owner == Owner::Global
        && !refs.names_others
        && refs.creates.is_none()
        && refs.drops.is_none()
        && cx.database.is_none();
    Ok(Decision {
        owner,
        lifecycle,
        anywhere,
    })
}

/// The owner alone; see [`decide`].
pub fn owner_of(refs: &SchemaRefs, cx: &Context<'_>) -> Result<(Owner, Lifecycle), Refusal> {
    let mut named: Option<TenantId> = None;
    let mut add = |id: TenantId| -> Result<(), Refusal> {
        match &named {
            Some(first) if *first != id => Err(Refusal::CrossTenant(
                format!("tenant {first}"),
                format!("tenant {id}"),
            )),
            _ => {
                named = Some(id);
                Ok(())
            }
        }
    };
    let mut lifecycle = Lifecycle::Use;
    for (name, what) in [
        (&refs.creates, Lifecycle::Create),
        (&refs.drops, Lifecycle::Drop),
    ] {
        if let Some(name) = name {
            match cx.naming.tenant_of(name) {
                Some(Ok(id)) => {
                    add(id)?;
                    lifecycle = what;
                }
                Some(Err(why)) => return Err(Refusal::BadDatabase(name.clone(), why)),
                None => {}
            }
        }
    }
    for name in &refs.qualified {
        if let Some(Ok(id)) = cx.naming.tenant_of(name) {
            add(id)?;
        }
    }
    if cx.sources.contains(&TenantSource::Hint)
        && let Some(hint) = &refs.tenant_hint
    {
        let id = TenantId::parse(hint).map_err(|e| Refusal::BadTenant("hint", e))?;
        add(id)?;
    }
    if let Some(id) = named {
        return Ok((Owner::Tenant(id), lifecycle));
    }
    for source in cx.sources {
        match source {
            TenantSource::Database => {
                match cx.database.and_then(|d| Some((d, cx.naming.tenant_of(d)?))) {
                    Some((_, Ok(id))) => return Ok((Owner::Tenant(id), lifecycle)),
                    Some((db, Err(why))) => return Err(Refusal::BadDatabase(db.to_string(), why)),
                    None => {}
                }
            }
            TenantSource::Attribute => {
                if let Some(value) = cx.attribute {
                    let id = TenantId::parse(value)
                        .map_err(|e| Refusal::BadTenant("connection attribute", e))?;
                    return Ok((Owner::Tenant(id), lifecycle));
                }
            }
            TenantSource::Hint => {}
        }
    }
    Ok((Owner::Global, lifecycle))
}

/// A transaction stays with the owner of its first statement.
pub fn check_transaction(open: Option<&Owner>, next: &Owner) -> Result<(), Refusal> {
    match open {
        Some(owner) if owner != next => Err(Refusal::CrossTenant(describe(owner), describe(next))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{SqlMode, schema_refs};

    const ALL: &[TenantSource] = &[
        TenantSource::Database,
        TenantSource::Hint,
        TenantSource::Attribute,
    ];

    fn owner(
        sql: &str,
        database: Option<&str>,
        attribute: Option<&str>,
    ) -> Result<(Owner, Lifecycle), Refusal> {
        let naming = TenantNaming::default();
        let refs = schema_refs(sql.as_bytes(), SqlMode::default());
        owner_of(
            &refs,
            &Context {
                naming: &naming,
                sources: ALL,
                database,
                attribute,
            },
        )
    }

    fn tenant(id: &str) -> Owner {
        Owner::Tenant(TenantId::parse(id).expect("valid id"))
    }

    #[test]
    fn the_database_the_hint_or_the_attribute_name_the_tenant() {
        assert_eq!(
            owner("SELECT * FROM x", Some("t_1"), None),
            Ok((tenant("1"), Lifecycle::Use))
        );
        assert_eq!(
            owner("/* lagless tenant=7 */ SELECT 1", None, None),
            Ok((tenant("7"), Lifecycle::Use))
        );
        assert_eq!(
            owner("SELECT 1", None, Some("9")),
            Ok((tenant("9"), Lifecycle::Use))
        );
        assert_eq!(
            owner("SELECT 1", Some("app"), None),
            Ok((Owner::Global, Lifecycle::Use))
        );
        // The session's database comes before the attribute.
        assert_eq!(
            owner("SELECT 1", Some("t_2"), Some("9")),
            Ok((tenant("2"), Lifecycle::Use))
        );
    }

    #[test]
    fn names_in_the_statement_win_and_must_agree() {
        assert_eq!(
            owner("SELECT * FROM t_3.x", Some("t_1"), None),
            Ok((tenant("3"), Lifecycle::Use))
        );
        assert!(matches!(
            owner("SELECT * FROM t_3.x JOIN t_4.y", None, None),
            Err(Refusal::CrossTenant(..))
        ));
        assert!(matches!(
            owner("/* lagless tenant=5 */ SELECT * FROM t_3.x", None, None),
            Err(Refusal::CrossTenant(..))
        ));
        // Aliases and other databases are not tenants.
        assert_eq!(
            owner("SELECT u.id FROM users u JOIN app.z", Some("t_1"), None),
            Ok((tenant("1"), Lifecycle::Use))
        );
    }

    #[test]
    fn create_and_drop_of_tenant_databases() {
        assert_eq!(
            owner("CREATE DATABASE t_42", None, None),
            Ok((tenant("42"), Lifecycle::Create))
        );
        assert_eq!(
            owner("DROP DATABASE IF EXISTS t_42", Some("t_1"), None),
            Ok((tenant("42"), Lifecycle::Drop))
        );
        assert_eq!(
            owner("CREATE DATABASE app2", None, None),
            Ok((Owner::Global, Lifecycle::Use))
        );
    }

    #[test]
    fn bad_ids_are_refused_with_their_source() {
        assert!(matches!(
            owner("CREATE DATABASE t_Bad", None, None),
            Err(Refusal::BadDatabase(..))
        ));
        assert!(matches!(
            owner("SELECT 1", Some("t_"), None),
            Err(Refusal::BadDatabase(..))
        ));
        assert!(matches!(
            owner("/* lagless tenant= */ SELECT 1", None, None),
            Err(Refusal::BadTenant("hint", _))
        ));
        assert!(matches!(
            owner("SELECT 1", None, Some("no way")),
            Err(Refusal::BadTenant("connection attribute", _))
        ));
        let err = owner("/* lagless tenant=A */ SELECT 1", None, None)
            .expect_err("uppercase is refused")
            .to_err();
        assert_eq!(err.code, 1105);
    }

    #[test]
    fn only_the_configured_sources_count() {
        let naming = TenantNaming::default();
        let refs = schema_refs(b"/* lagless tenant=7 */ SELECT 1", SqlMode::default());
        let cx = Context {
            naming: &naming,
            sources: &[TenantSource::Database],
            database: None,
            attribute: Some("8"),
        };
        assert_eq!(owner_of(&refs, &cx), Ok((Owner::Global, Lifecycle::Use)));
    }

    #[test]
    fn statements_that_name_no_database_may_run_anywhere() {
        let naming = TenantNaming::default();
        let anywhere = |sql: &str, database: Option<&str>| {
            let refs = crate::route::schema_refs_where(sql.as_bytes(), SqlMode::default(), |n| {
                naming.tenant_of(n).is_some()
            });
            let cx = Context {
                naming: &naming,
                sources: ALL,
                database,
                attribute: None,
            };
            decide(&refs, &cx).expect("routable").anywhere
        };
        assert!(anywhere("SELECT 1", None));
        assert!(anywhere("BEGIN", None));
        assert!(!anywhere("SELECT 1", Some("app")));
        assert!(!anywhere("SELECT * FROM app.users", None));
        assert!(!anywhere("SELECT u.id FROM users u", None));
        assert!(!anywhere("CREATE DATABASE app2", None));
        assert!(!anywhere("SELECT * FROM t_1.x", None));
    }

    #[test]
    fn a_transaction_keeps_its_owner() {
        assert!(check_transaction(None, &tenant("1")).is_ok());
        assert!(check_transaction(Some(&tenant("1")), &tenant("1")).is_ok());
        assert!(check_transaction(Some(&tenant("1")), &tenant("2")).is_err());
        assert!(check_transaction(Some(&Owner::Global), &tenant("2")).is_err());
    }
}
