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
    let statements = cql_statements(MIGRATIONS[0].2);
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
    assert_eq!(ttl(Timestamp(u64::MAX)), Some(i32::MAX));
    assert_eq!(rust_id(db_id(u64::MAX - 1)), u64::MAX - 1);
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
