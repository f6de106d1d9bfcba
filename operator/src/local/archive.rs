//! The local cluster's binary log archive (`spec.backup.archiveBinlogs`): the archiver runs
//! beside the supervisor, told the primary at every orchestration tick, and stopped before
//! the proxies and the servers: what the primary wrote until then is stored, and anything
//! written through the proxies in the moment after is archived at the next start.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lagless_core::topology::Topology;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backup::archive;
use crate::backup::archiver::{ArchiveStatus, Archiver, Source};
use crate::backup::store::Store;
use crate::crd::MySQLCluster;
use crate::orchestrate::observe::Credentials;
use crate::orchestrate::view::{CaSource, ServerTls};

use super::LocalError;
use super::process_table::Runtime;
use super::state::Settings;

/// A running archiver.
pub struct ArchiveTask {
    primary: watch::Sender<Option<Source>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    pub status: Arc<Mutex<ArchiveStatus>>,
}

/// Starts archiving if the spec asks for it.
pub fn start(
    rt: &Runtime,
    cluster: &MySQLCluster,
    settings: &Settings,
) -> Result<Option<ArchiveTask>, LocalError> {
    let Some(backup) = cluster.spec.backup.as_ref().filter(|b| b.archive_binlogs) else {
        return Ok(None);
    };
    let (location, _) = super::backup::s3_args(cluster, settings).store(&backup.destination)?;
    let archive_location = archive::location(&location, &settings.cluster);
    let options = super::backup::s3_args(cluster, settings).options(&location)?;
    let store = Store::open(&archive_location, options.as_ref())?;
    let status = Arc::new(Mutex::new(ArchiveStatus {
        destination: archive_location.to_string(),
        ..ArchiveStatus::default()
    }));
    let archiver = Archiver {
        cluster: settings.cluster.clone(),
        destination: archive_location.to_string(),
        store,
        creds: Credentials {
            user: rt.creds.admin_user.clone(),
            password: rt.creds.admin_password.clone(),
        },
        tls: rt.tls.as_ref().map(|files| ServerTls {
            ca: CaSource::File(files.ca()),
            member_ca_path: files.ca().display().to_string(),
            watch: None,
        }),
        // Above any member's (at most 9 of them): a replica registering with a member's id
        // would disconnect that member's replication.
        reader_server_id: settings.server_id_base.saturating_add(1000),
        spool: rt.dir.root().join("archive-spool"),
        status: status.clone(),
        caught_up: std::sync::Mutex::new(std::time::Instant::now()),
    };
    let (primary, primary_rx) = watch::channel(None);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(archiver.run(primary_rx, stop_rx));
    Ok(Some(ArchiveTask {
        primary,
        stop,
        task,
        status,
    }))
}

impl ArchiveTask {
    /// The primary now published (none while there is none).
    pub fn follow(&self, published: Option<&Topology>) {
        let source = published.and_then(|t| t.primary.as_ref()).map(|p| Source {
            member: p.name.clone(),
            host: p.host.clone(),
            port: p.port,
        });
        self.primary.send_if_modified(|current| {
            let changed = *current != source;
            *current = source;
            changed
        });
    }

    pub fn status(&self) -> ArchiveStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stores what was read and stops.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(30), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}
