use super::*;

#[test]
fn lwt_results_parse_from_scylla_and_cassandra_shapes() {
    let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    // ScyllaDB: [applied] followed by the row, whether applied or not.
    let scylla = lwt_from_row(
        &names(&["[applied]", "guild_id", "version"]),
        Row {
            columns: vec![
                Some(CqlValue::Boolean(false)),
                Some(CqlValue::BigInt(7)),
                Some(CqlValue::BigInt(3)),
            ],
        },
    )
    .unwrap();
    assert!(!scylla.applied);
    assert_eq!(scylla.bigint("version"), Some(3));
    // Cassandra: only [applied] when the write applied.
    let cassandra = lwt_from_row(
        &names(&["[applied]"]),
        Row {
            columns: vec![Some(CqlValue::Boolean(true))],
        },
    )
    .unwrap();
    assert!(cassandra.applied);
    assert_eq!(cassandra.bigint("version"), None);
    // Nulls in the returned row (a row that did not exist) are skipped.
    let missing = lwt_from_row(
        &names(&["[applied]", "version"]),
        Row {
            columns: vec![Some(CqlValue::Boolean(false)), None],
        },
    )
    .unwrap();
    assert_eq!(missing.bigint("version"), None);
    assert!(
        lwt_from_row(
            &names(&["x"]),
            Row {
                columns: vec![Some(CqlValue::Int(1))]
            }
        )
        .is_err()
    );
}

#[test]
fn schema_files_split_into_statements() {
    let statements = migrate::cql_statements(migrate::MIGRATIONS[0].2);
    assert_eq!(statements.len(), 17);
    assert!(
        statements
            .iter()
            .all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS {ks}."))
    );
    assert!(statements.iter().any(|s| s.contains("counter")));
    assert!(
        statements
            .iter()
            .filter(|s| s.contains("TimeWindowCompactionStrategy"))
            .count()
            == 2
    );
}

#[test]
fn ttls_bind_as_i32_and_skip_expired_rows() {
    let now = Timestamp::now();
    assert_eq!(ttl(now.saturating_sub(Duration::from_secs(1))), None);
    let day = ttl(now.saturating_add(Duration::from_secs(86_400))).unwrap();
    assert!((86_390..=86_400).contains(&day), "{day}");
    assert_eq!(rust_id(db_id(u64::MAX - 1)), u64::MAX - 1);
}

#[test]
fn ttls_are_clamped_to_scyllas_twenty_year_maximum() {
    let now = Timestamp(1_800_000_000_000);
    let max = i32::try_from(MAX_TTL_SECS).unwrap();
    assert_eq!(max, 630_720_000, "ScyllaDB's max_ttl");
    assert_eq!(ttl_from(now, Timestamp(u64::MAX)), Some(max));
    let thirty_years = now.saturating_add(Duration::from_secs(30 * 365 * 86_400));
    assert_eq!(ttl_from(now, thirty_years), Some(max));
    let ten_years = Duration::from_secs(10 * 365 * 86_400);
    assert_eq!(
        ttl_from(now, now.saturating_add(ten_years)),
        Some(i32::try_from(ten_years.as_secs()).unwrap())
    );
    assert_eq!(ttl_from(now, now), None);
}

#[test]
fn an_audit_listing_reads_only_partitions_inside_the_retention_window() {
    use super::records::{AUDIT_BUCKET_MS, audit_buckets};
    let now = Timestamp(1_800_000_000_000);
    let year = Duration::from_secs(365 * 86_400);
    let window = 2 * year.as_millis() as u64 / AUDIT_BUCKET_MS + 2;
    for (from, to) in [
        (Timestamp(0), Timestamp(u64::MAX)),
        (Timestamp(0), Timestamp(u64::MAX / 2)),
        (now, Timestamp(u64::MAX)),
    ] {
        let (first, last) = audit_buckets(now, year, from, to);
        assert!(first <= last);
        let read = u64::try_from(last - first + 1).unwrap();
        assert!(read <= window, "{from:?}..{to:?} reads {read} partitions");
    }
    // An empty or inverted range, or one wholly outside the window, reads nothing.
    for (from, to) in [
        (now, now),
        (Timestamp(10), Timestamp(5)),
        (Timestamp(0), now.saturating_sub(2 * year)),
    ] {
        let (first, last) = audit_buckets(now, year, from, to);
        assert!(first > last, "{from:?}..{to:?}");
    }
}

#[test]
fn migrations_are_checksummed_and_keyspaces_disable_tablets() {
    let sums: Vec<String> = migrate::MIGRATIONS
        .iter()
        .map(|(_, _, text)| migrate::checksum(text))
        .collect();
    // Every file of schema/ is a migration, listed once.
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/schema"))
        .unwrap()
        .filter(|entry| {
            entry.as_ref().unwrap().path().extension() == Some(std::ffi::OsStr::new("cql"))
        })
        .count();
    assert_eq!(sums.len(), files);
    assert!(sums.iter().all(|s| s.len() == 16));
    assert_ne!(sums[0], sums[1]);
    assert_ne!(
        migrate::checksum("CREATE TABLE a (x int PRIMARY KEY);"),
        migrate::checksum("CREATE TABLE a (x int PRIMARY KEY); ")
    );
    let versions: Vec<i32> = migrate::MIGRATIONS.iter().map(|m| m.0).collect();
    assert_eq!(
        versions,
        (1..=files as i32).collect::<Vec<_>>(),
        "versions run in file order, with no gaps"
    );
    for (version, name, _) in migrate::MIGRATIONS {
        assert!(name.starts_with(&format!("{version:03}_")), "{name}");
    }

    let nts = migrate::keyspace_options(&Replication::NetworkTopology(vec![
        ("eu-west".into(), 3),
        ("us_east".into(), 2),
    ]))
    .unwrap();
    assert_eq!(
        nts,
        "replication = {'class': 'NetworkTopologyStrategy', 'eu-west': 3, 'us_east': 2} \
         AND tablets = {'enabled': false}"
    );
    assert!(
        !migrate::keyspace_options(&Replication::Simple(1))
            .unwrap()
            .contains("tablets")
    );
    for bad in [
        Replication::Simple(0),
        Replication::NetworkTopology(vec![]),
        Replication::NetworkTopology(vec![("dc1".into(), 0)]),
        Replication::NetworkTopology(vec![("dc'1".into(), 3)]),
    ] {
        assert!(matches!(
            migrate::keyspace_options(&bad),
            Err(StorageError::Invalid(_))
        ));
    }
}

#[test]
fn keyspace_names_are_checked_and_secrets_redacted() {
    assert!(valid_keyspace("protonn_1"));
    assert!(!valid_keyspace("Protonn"));
    assert!(!valid_keyspace("a; DROP"));
    assert!(!valid_keyspace("1abc"));
    let mut config = ScyllaConfig::new(vec!["127.0.0.1:9042".into()], "protonn".into());
    config.credentials = Some(("bot".into(), "hunter2".into()));
    let shown = format!("{config:?}");
    assert!(
        shown.contains("bot") && !shown.contains("hunter2"),
        "{shown}"
    );
}
