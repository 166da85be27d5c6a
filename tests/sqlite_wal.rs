//! The SQLite write-ahead log stays bounded under writes that never pause.
//!
//! SQLite starts its WAL over only when a write begins after a checkpoint
//! has copied all of it, which a checkpointer running beside a busy writer
//! never sees: without the writer's own tail checkpoint the WAL grew by
//! every page ever written (a gigabyte in twenty seconds of creates),
//! each commit appending to an ever longer file. An operator's disk and
//! every reader's WAL lookups pay for that.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use paylink::clock::ShiftedClock;
use paylink::domain::NewLink;
use paylink::service::{Caller, Service, ServiceSettings};

/// The WAL length at which the writer finishes a checkpoint (16 MiB).
const RESTART_BYTES: u64 = 4096 * 4096;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_starts_over_while_writes_never_pause() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.db");
    let url = format!("sqlite://{}", path.display());
    let store = paylink::store::open(&url, &Default::default())
        .await
        .unwrap();
    let service = Arc::new(Service::new(
        store,
        Arc::new(ShiftedClock::default()),
        ServiceSettings::default(),
    ));
    let issued = service.create_api_key("wal", false).await.unwrap();
    let caller = Arc::new(Caller {
        scope: paylink::store::Scope {
            account_id: issued.account.id.clone(),
            livemode: false,
        },
        key_id: issued.record.id.clone(),
        account_name: "wal".into(),
    });
    // About 15 KB of pages per link (its row, its event's snapshot and
    // the metadata pairs), so the database grows fast enough for a debug
    // build.
    let metadata: BTreeMap<String, String> = (0..10)
        .map(|i| (format!("note_{i}"), "x".repeat(500)))
        .collect();
    let wal = path.with_extension("db-wal");
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let start_size = size(&path);
    // Enough growth that a WAL that never starts over would have to hold
    // three times the restart length: every new page passes through it.
    let target = start_size + 3 * RESTART_BYTES;
    let deadline = Instant::now() + Duration::from_secs(120);

    let writers: Vec<_> = (0..32)
        .map(|_| {
            let (service, caller, metadata, path) = (
                service.clone(),
                caller.clone(),
                metadata.clone(),
                path.clone(),
            );
            tokio::spawn(async move {
                while size(&path) < target && Instant::now() < deadline {
                    service
                        .create_link(
                            &caller,
                            NewLink {
                                amount: Some(1000),
                                currency: Some("EUR".into()),
                                metadata: Some(metadata.clone()),
                                ..Default::default()
                            },
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let mut longest_wal = 0;
    while writers.iter().any(|w| !w.is_finished()) {
        longest_wal = longest_wal.max(size(&wal));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    longest_wal = longest_wal.max(size(&wal));
    assert!(
        size(&path) >= target,
        "the database grew only to {} bytes in two minutes (wanted {target})",
        size(&path)
    );
    assert!(
        longest_wal < 2 * RESTART_BYTES,
        "the WAL reached {longest_wal} bytes while the database grew by {} (it should start over near {RESTART_BYTES})",
        size(&path) - start_size
    );
}
