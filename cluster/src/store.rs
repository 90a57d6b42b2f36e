//! The configured ScyllaDB store: its settings from `[storage.scylla]` plus the credentials
//! from the environment or files (never the TOML), opening it with the schema check, and
//! `protonn migrate`.

use std::path::Path;
use std::time::Duration;

use protonn_storage::{
    ClientCert, MigrationReport, Replication, ScyllaConfig, ScyllaStore, StorageError, TlsConfig,
};

use crate::ConfigError;
use crate::config::{Config, SCYLLA_PASSWORD_ENV, SCYLLA_USERNAME_ENV, ScyllaSection, process_env};

/// The storage crate's settings for `[storage.scylla]`; `env` looks up a variable (the
/// process environment, or a map in tests).
pub(crate) fn scylla_config(
    section: &ScyllaSection,
    env: impl Fn(&str) -> Option<String>,
) -> Result<ScyllaConfig, ConfigError> {
    let mut config = ScyllaConfig::new(section.contact_points.clone(), section.keyspace.clone());
    config.replication = Replication::NetworkTopology(
        section
            .replication
            .iter()
            .map(|(dc, factor)| (dc.clone(), *factor))
            .collect(),
    );
    config.local_datacenter = section.local_dc.clone();
    config.connection_timeout = Duration::from_millis(section.connection_timeout_ms);
    config.request_timeout = Duration::from_millis(section.request_timeout_ms);
    config.tls = section.tls.as_ref().map(|tls| TlsConfig {
        ca_file: tls.ca.clone(),
        client_cert: match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => Some(ClientCert {
                cert_file: cert.clone(),
                key_file: key.clone(),
            }),
            _ => None,
        },
    });
    config.credentials = credentials(section, env)?;
    Ok(config)
}

fn credentials(
    section: &ScyllaSection,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<(String, String)>, ConfigError> {
    match (env(SCYLLA_USERNAME_ENV), env(SCYLLA_PASSWORD_ENV)) {
        (Some(user), Some(password)) => return Ok(Some((user, password))),
        (None, None) => {}
        _ => {
            return Err(ConfigError::Invalid {
                field: "storage.scylla",
                message: format!(
                    "set both {SCYLLA_USERNAME_ENV} and {SCYLLA_PASSWORD_ENV}, or neither"
                ),
            });
        }
    }
    let (Some(user_file), Some(password_file)) = (&section.username_file, &section.password_file)
    else {
        return Ok(None);
    };
    let read = |field: &'static str, path: &Path| {
        std::fs::read_to_string(path)
            .map(|text| text.trim_end_matches(['\r', '\n']).to_owned())
            .map_err(|err| ConfigError::Invalid {
                field,
                message: format!("cannot read {}: {err}", path.display()),
            })
    };
    Ok(Some((
        read("storage.scylla.username_file", user_file)?,
        read("storage.scylla.password_file", password_file)?,
    )))
}

/// Connects to the configured cluster and refuses a schema older than this build.
pub(crate) async fn open_scylla(config: &Config) -> anyhow::Result<ScyllaStore> {
    let mut settings = scylla_config(&config.storage.scylla, process_env)?;
    settings.retention = config.retention.retention();
    let store = ScyllaStore::connect(&settings).await?;
    store.check_schema().await?;
    tracing::info!(keyspace = store.keyspace(), "storage: scylla");
    Ok(store)
}

/// `protonn migrate [--dry-run]`: applies the schema to the configured cluster, or says
/// what it would apply.
pub(crate) async fn migrate(config: &Config, dry_run: bool) -> anyhow::Result<()> {
    if config.storage.backend != crate::config::StorageBackend::Scylla {
        anyhow::bail!(
            "storage.backend is \"embedded\": its tables are created when it opens, there is \
             nothing to migrate"
        );
    }
    let settings = scylla_config(&config.storage.scylla, process_env)?;
    let store = ScyllaStore::connect(&settings).await?;
    // Who holds the lock, for an operator reading `schema_lock` during a stuck deploy.
    let holder = format!(
        "{}:{}",
        process_env(crate::config::NODE_NAME_ENV).unwrap_or_else(|| "protonn".to_owned()),
        std::process::id()
    );
    let report = store
        .migrate_with(&settings.replication, &holder, dry_run)
        .await
        .map_err(|err| match err {
            StorageError::MigrationChanged { .. } | StorageError::MigrationLocked { .. } => {
                anyhow::anyhow!(err)
            }
            other => anyhow::anyhow!(other).context("migrating"),
        })?;
    print!("{}", describe(store.keyspace(), &report));
    Ok(())
}

fn describe(keyspace: &str, report: &MigrationReport) -> String {
    let mut out = String::new();
    for name in &report.already_applied {
        out.push_str(&format!("applied   {name}\n"));
    }
    let verb = if report.dry_run {
        "would apply"
    } else {
        "applied now"
    };
    for step in &report.pending {
        out.push_str(&format!(
            "{verb} {} ({} statements)\n",
            step.name,
            step.statements.len()
        ));
        if report.dry_run {
            for statement in &step.statements {
                let one_line = statement.split_whitespace().collect::<Vec<_>>().join(" ");
                out.push_str(&format!("    {};\n", one_line.replace("{ks}", keyspace)));
            }
        }
    }
    if report.pending.is_empty() {
        out.push_str(&format!("keyspace {keyspace} is up to date\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn section() -> ScyllaSection {
        let config = Config::parse(
            r#"
            [storage]
            backend = "scylla"
            [storage.scylla]
            contact_points = ["10.0.0.5:9042"]
            local_dc = "dc1"
            replication = { dc1 = 3, dc2 = 2 }
            "#,
        )
        .unwrap();
        config.storage.scylla
    }

    #[test]
    fn replication_and_credentials_come_from_the_section_and_the_environment() {
        let env: HashMap<&str, &str> = HashMap::from([
            (SCYLLA_USERNAME_ENV, "bot"),
            (SCYLLA_PASSWORD_ENV, "hunter2"),
        ]);
        let config =
            scylla_config(&section(), |name| env.get(name).map(|v| (*v).to_owned())).unwrap();
        assert_eq!(
            config.replication,
            Replication::NetworkTopology(vec![("dc1".into(), 3), ("dc2".into(), 2)]),
            "the configured replication, never a default factor"
        );
        assert_eq!(config.local_datacenter.as_deref(), Some("dc1"));
        assert_eq!(config.credentials, Some(("bot".into(), "hunter2".into())));
        assert!(!format!("{config:?}").contains("hunter2"));

        let none = scylla_config(&section(), |_| None).unwrap();
        assert_eq!(none.credentials, None);
        let half = scylla_config(&section(), |name| {
            (name == SCYLLA_USERNAME_ENV).then(|| "bot".to_owned())
        });
        assert!(matches!(half, Err(ConfigError::Invalid { .. })));
    }

    #[test]
    fn credentials_can_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("username");
        let password = dir.path().join("password");
        std::fs::write(&user, "bot\n").unwrap();
        std::fs::write(&password, "s3cret\n").unwrap();
        let mut section = section();
        section.username_file = Some(user);
        section.password_file = Some(password.clone());
        let config = scylla_config(&section, |_| None).unwrap();
        assert_eq!(config.credentials, Some(("bot".into(), "s3cret".into())));
        std::fs::remove_file(&password).unwrap();
        match scylla_config(&section, |_| None) {
            Err(ConfigError::Invalid { field, .. }) => {
                assert_eq!(field, "storage.scylla.password_file");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_dry_run_lists_each_statement_it_would_apply() {
        let report = MigrationReport {
            already_applied: vec!["001_tables.cql"],
            pending: vec![protonn_storage::MigrationStep {
                version: 2,
                name: "002_guild_departures.cql",
                checksum: "00".into(),
                statements: vec![
                    "CREATE TABLE IF NOT EXISTS {ks}.x (\n  a int PRIMARY KEY\n)".into(),
                ],
            }],
            dry_run: true,
        };
        assert_eq!(
            describe("prod", &report),
            "applied   001_tables.cql\nwould apply 002_guild_departures.cql (1 statements)\n    \
             CREATE TABLE IF NOT EXISTS prod.x ( a int PRIMARY KEY );\n"
        );
    }
}
