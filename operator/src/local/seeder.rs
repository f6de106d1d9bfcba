//! Seeding for the local runtime: stop the member, replace its data directory with a
//! streamed copy of the donor's (see [`crate::orchestrate::seed`]), start it again.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::orchestrate::act::{SeedOutcome, Seeder};
use crate::orchestrate::observe::Credentials;
use crate::orchestrate::seed::{Donor, seed};
use crate::orchestrate::view::MemberSpec;

use super::mariadb;
use super::supervisor::{Process, Runtime, SharedState};

/// Seeds members of one local cluster.
pub struct LocalSeeder {
    pub runtime: Arc<Runtime>,
    pub shared: SharedState,
}

impl Seeder for LocalSeeder {
    fn seed<'a>(
        &'a self,
        member: &'a MemberSpec,
        donor: &'a MemberSpec,
    ) -> BoxFuture<'a, Result<SeedOutcome, String>> {
        self.copy(member, donor)
            .map(|r| r.map_err(|e| e.to_string()))
            .boxed()
    }
}

impl LocalSeeder {
    async fn copy(
        &self,
        member: &MemberSpec,
        donor: &MemberSpec,
    ) -> Result<SeedOutcome, super::LocalError> {
        mariadb::find("mariadb-backup", "LAGLESS_MARIADB_BACKUP")?;
        let rt = &self.runtime;
        let (layout, donor_layout, child) = {
            let mut shared = self.shared.lock();
            let donor_layout = shared
                .members
                .get(&donor.name)
                .map(|m| m.layout.clone())
                .ok_or_else(|| super::LocalError::Other(format!("no donor {}", donor.name)))?;
            let m = shared
                .members
                .get_mut(&member.name)
                .ok_or_else(|| super::LocalError::Other(format!("no member {}", member.name)))?;
            m.process = Process::Seeding;
            (m.layout.clone(), donor_layout, m.child.take())
        };
        if let Some(mut child) = child {
            mariadb::stop(&mut child, Duration::from_secs(60)).await;
        }
        let progress = Arc::new(AtomicU64::new(0));
        self.shared.lock().seeding = Some(super::supervisor::Seeding {
            member: member.name.clone(),
            donor: donor.name.clone(),
            bytes: progress.clone(),
            started: Instant::now(),
        });
        let data = layout.data_dir();
        if data.exists() {
            std::fs::remove_dir_all(&data).map_err(super::LocalError::io(&data))?;
        }
        let source = Donor {
            host: "127.0.0.1".into(),
            port: donor_layout.port,
            datadir: donor_layout.data_dir(),
        };
        let admin = Credentials {
            user: rt.creds.admin_user.clone(),
            password: rt.creds.admin_password.clone(),
        };
        let copied = seed(&source, &admin, &data, progress).await;
        if copied.is_err() {
            // Start again from an empty member: the plan seeds it again on a later tick.
            let _ = std::fs::remove_dir_all(&data);
            mariadb::init_member_data(&rt.dir.template(), &layout)?;
        }
        self.shared.lock().seeding = None;
        let restarted = self.restart(&layout).await;
        let report = copied.map_err(|e| super::LocalError::Other(format!("seeding: {e}")))?;
        restarted?;
        Ok(SeedOutcome {
            gtid_position: report.gtid_position,
            bytes: report.bytes,
            elapsed: report.elapsed,
        })
    }

    async fn restart(&self, layout: &mariadb::ServerLayout) -> Result<(), super::LocalError> {
        let rt = &self.runtime;
        let mut child = mariadb::spawn(&rt.bins, layout, &rt.server_config, rt.semi_sync)?;
        let ready = mariadb::wait_ready(&mut child, layout, &rt.creds).await;
        let mut shared = self.shared.lock();
        if let Some(m) = shared.members.get_mut(&layout.name) {
            m.process = if ready.is_ok() {
                Process::Running
            } else {
                Process::Crashed
            };
            m.child = Some(child);
        }
        ready
    }
}
