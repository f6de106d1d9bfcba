//! Tenant pools: each tenant's database lives on one of several clusters, a directory in the
//! global cluster says which, and the proxy sends each statement to its tenant's cluster.
//!
//! [`decide`] finds a statement's tenant (pure), [`router::TenantRouter`] maps it to a
//! cluster through a bounded cache in front of the directory, and [`follow`] keeps that cache
//! current from the directory's change log.

pub mod decide;
pub mod follow;
pub mod router;

pub use decide::{Lifecycle, Owner};
pub use router::{Creation, Placed, TenantRouter};
