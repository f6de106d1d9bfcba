//! Seeding for the local runtime: stop the member, replace its data directory with a
//! streamed copy of the donor's (see [`crate::orchestrate::seed`]), start it again.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::orchestrate::act::{SeedOutcome, Seeder};
use crate::orchestrate::observe::Credentials;
use crate::orchestrate::seed::{Donor, seed};
use crate::orchestrate::view::MemberSpec;

use super::LocalError;
use super::mariadb::{self, ServerLayout};
use super::process_table::{Process, Runtime};
use super::shared::{Seeding, SharedState};

/// A failed copy is not tried again for this long: each attempt stops the member and
/// empties it, and the plan asks again on every tick.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Seeds members of one local cluster. The copy runs in a task of its own, so the loop (and
/// with it failure detection) goes on meanwhile: the first `seed` call starts it and fails
/// ("in progress"), the member is down while copied, and once it is back on its copy the plan
/// asks again and gets the copy's position.
pub struct LocalSeeder {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Arc<Runtime>,
    shared: SharedState,
    jobs: Mutex<HashMap<String, Job>>,
}

enum Job {
    Copying,
    Done {
        result: Result<SeedOutcome, String>,
        at: Instant,
    },
}

impl LocalSeeder {
    pub fn new(runtime: Arc<Runtime>, shared: SharedState) -> Self {
        Self {
            inner: Arc::new(Inner {
                runtime,
                shared,
                jobs: Mutex::default(),
            }),
        }
    }
}

impl Seeder for LocalSeeder {
    fn seed<'a>(
        &'a self,
        member: &'a MemberSpec,
        donor: &'a MemberSpec,
    ) -> BoxFuture<'a, Result<SeedOutcome, String>> {
        let result = Inner::start_or_collect(&self.inner, member, donor);
        async move { result }.boxed()
    }
}

impl Inner {
    /// The finished copy's outcome, or starts one (a failed copy is retried after
    /// [`RETRY_AFTER`]).
    fn start_or_collect(
        this: &Arc<Self>,
        member: &MemberSpec,
        donor: &MemberSpec,
    ) -> Result<SeedOutcome, String> {
        let mut jobs = this.jobs.lock().unwrap_or_else(|e| e.into_inner());
        match jobs.remove(&member.name) {
            Some(Job::Copying) => {
                jobs.insert(member.name.clone(), Job::Copying);
                return Err(format!("{} is being copied", member.name));
            }
            Some(Job::Done {
                result: Ok(outcome),
                ..
            }) => return Ok(outcome),
            Some(Job::Done { result: Err(e), at }) if at.elapsed() < RETRY_AFTER => {
                let again = RETRY_AFTER.saturating_sub(at.elapsed()).as_secs();
                jobs.insert(
                    member.name.clone(),
                    Job::Done {
                        result: Err(e.clone()),
                        at,
                    },
                );
                return Err(format!("{e} (trying again in {again} s)"));
            }
            Some(Job::Done { .. }) | None => {}
        }
        jobs.insert(member.name.clone(), Job::Copying);
        drop(jobs);
        let inner = this.clone();
        let (member, donor) = (member.clone(), donor.clone());
        let started = format!(
            "copying {} from {} in the background",
            member.name, donor.name
        );
        tokio::spawn(async move {
            let result = inner.copy(&member, &donor).await.map_err(|e| e.to_string());
            if result.is_ok() {
                inner.shared.lock().last_seeded = Some((member.name.clone(), Instant::now()));
            }
            inner.jobs.lock().unwrap_or_else(|e| e.into_inner()).insert(
                member.name.clone(),
                Job::Done {
                    result,
                    at: Instant::now(),
                },
            );
        });
        Err(started)
    }

    async fn copy(
        &self,
        member: &MemberSpec,
        donor: &MemberSpec,
    ) -> Result<SeedOutcome, LocalError> {
        // `seed` runs these by name from PATH.
        for program in ["mariadb-backup", "mbstream"] {
            mariadb::on_path(program)?;
        }
        let (layout, donor_layout, child) = {
            let mut shared = self.shared.lock();
            let donor_layout = shared
                .processes
                .members
                .get(&donor.name)
                .map(|m| m.layout.clone())
                .ok_or_else(|| LocalError::Other(format!("no donor {}", donor.name)))?;
            let m = shared
                .processes
                .members
                .get_mut(&member.name)
                .ok_or_else(|| LocalError::Other(format!("no member {}", member.name)))?;
            m.process = Process::Seeding;
            (m.layout.clone(), donor_layout, m.child.take())
        };
        if let Some(mut child) = child {
            mariadb::stop_discarding(&mut child).await;
        }
        let copied = self
            .replace_data(member, donor, &layout, &donor_layout)
            .await;
        self.shared.lock().seeding = None;
        // Whatever happened, the member runs again (on the copy, or empty to be seeded later).
        let restarted = self.restart(&layout).await;
        copied.and_then(|outcome| restarted.map(|()| outcome))
    }

    /// Empties the member's data directory and streams the donor's copy into it; on failure
    /// leaves an empty member (a template copy) behind.
    async fn replace_data(
        &self,
        member: &MemberSpec,
        donor: &MemberSpec,
        layout: &ServerLayout,
        donor_layout: &ServerLayout,
    ) -> Result<SeedOutcome, LocalError> {
        let rt = &self.runtime;
        let progress = Arc::new(AtomicU64::new(0));
        self.shared.lock().seeding = Some(Seeding {
            member: member.name.clone(),
            donor: donor.name.clone(),
            bytes: progress.clone(),
            started: Instant::now(),
        });
        let data = layout.data_dir();
        mariadb::remove_dir(&data).await?;
        let source = Donor {
            host: "127.0.0.1".into(),
            port: donor_layout.port,
            datadir: donor_layout.data_dir(),
            tls_ca: rt.tls.as_ref().map(|t| t.ca()),
        };
        let admin = Credentials {
            user: rt.creds.admin_user.clone(),
            password: rt.creds.admin_password.clone(),
        };
        match seed(&source, &admin, &data, progress).await {
            Ok(report) => Ok(SeedOutcome {
                gtid_position: report.gtid_position,
                bytes: report.bytes,
                elapsed: report.elapsed,
            }),
            Err(e) => {
                mariadb::remove_dir(&data).await?;
                mariadb::init_member_data(&rt.dir.template(), layout).await?;
                Err(LocalError::Other(format!("seeding {}: {e}", member.name)))
            }
        }
    }

    /// Starts the member again and waits until it accepts connections. A server that does
    /// not start is left to the supervisor's restarts.
    async fn restart(&self, layout: &ServerLayout) -> Result<(), LocalError> {
        let rt = &self.runtime;
        let spawned = rt.spawn_member(layout);
        let (child, ready) = match spawned {
            Ok(mut child) => {
                let ready =
                    mariadb::wait_ready(&mut child, layout, &rt.creds, rt.tls.as_ref()).await;
                (Some(child), ready)
            }
            Err(e) => (None, Err(e)),
        };
        let mut shared = self.shared.lock();
        if let Some(m) = shared.processes.members.get_mut(&layout.name) {
            match child {
                Some(child) => {
                    m.child = Some(child);
                    // Not answering yet is not a crash: the loop's probes see it come up, and
                    // the reaper sees it exit.
                    m.process = if ready.is_ok() {
                        Process::Running
                    } else {
                        Process::Starting
                    };
                }
                None => m.crashed_now(),
            }
        }
        ready
    }
}
