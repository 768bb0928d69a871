use super::*;
use clap::{CommandFactory, FromArgMatches, Parser};

/// The shape of `sop`'s command line: global connection flags, worker flags on `worker`.
#[derive(Parser)]
struct Probe {
    #[command(flatten)]
    connection: ConnectionSettings,
    #[command(subcommand)]
    cmd: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    Worker(WorkerSettings),
    Other,
}

fn try_parse(args: &[&str]) -> Result<Settings, ConfigError> {
    let matches = Probe::command().get_matches_from(args);
    let probe = Probe::from_arg_matches(&matches).unwrap();
    let worker = match probe.cmd {
        Sub::Worker(worker) => Some(worker),
        Sub::Other => None,
    };
    Settings::resolve(probe.connection, worker, &matches)
}

fn parse(args: &[&str]) -> Settings {
    try_parse(args).unwrap()
}

#[test]
fn a_config_file_fills_defaults_but_flags_win() {
    let dir = std::env::temp_dir().join(format!("sop-config-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sop.yaml");
    std::fs::write(
        &file,
        "concurrency: 6\nstream_replicas: 3\nsubject_prefix: acme\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let s = parse(&["sop", "--config", f, "worker", "--subject-prefix", "flag"]);
    assert_eq!((s.worker.concurrency, s.worker.stream_replicas), (6, 3));
    assert_eq!(s.connection.subject_prefix, "flag");
    assert!(!s.is_default("concurrency") && !s.is_default("subject_prefix"));
    assert!(s.is_default("nats_url") && s.is_default("database_url"));
    // A subcommand without worker flags still takes the file's worker settings.
    let s = parse(&["sop", "--config", f, "other"]);
    assert_eq!((s.worker.concurrency, s.worker.stream_replicas), (6, 3));
    assert_eq!(s.connection.subject_prefix, "acme");
    assert!(!s.is_default("concurrency") && s.is_default("database_url"));
    std::fs::write(&file, "concurency: 4\n").unwrap();
    for sub in ["worker", "other"] {
        assert!(matches!(
            try_parse(&["sop", "--config", f, sub]),
            Err(ConfigError::File { .. })
        ));
    }
    // A value of the wrong type names its setting.
    std::fs::write(&file, "concurrency: many\n").unwrap();
    match try_parse(&["sop", "--config", f, "other"]) {
        Err(ConfigError::File { message, .. }) => {
            assert!(message.starts_with("concurrency:"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn worker_flags_follow_the_subcommands_that_take_them() {
    let s = parse(&[
        "sop",
        "worker",
        "--batch-max",
        "8",
        "--nats-url",
        "nats://n:4222",
    ]);
    assert_eq!(
        (s.worker.batch_max, s.connection.nats_url.as_str()),
        (8, "nats://n:4222")
    );
    assert!(!s.is_default("batch_max") && !s.is_default("nats_url"));
    assert!(s.is_default("concurrency") && s.is_default("database_url"));
    let s = parse(&["sop", "other"]);
    assert_eq!(
        serde_json::to_value(&s).unwrap(),
        serde_json::to_value(Settings::local()).unwrap()
    );
    assert!(s.sources.values().all(|from| *from == Source::Default));
    assert_eq!(s.sources.len(), names().len());
    // The settings are the flags, by name.
    let value = serde_json::to_value(Settings::local()).unwrap();
    let mut fields: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    let mut flags = names();
    fields.sort();
    flags.sort();
    assert_eq!(fields, flags);
    let refused = |args: &[&str]| Probe::command().try_get_matches_from(args).is_err();
    assert!(refused(&["sop", "other", "--batch-max", "8"]));
    assert!(refused(&["sop", "--batch-max", "8", "worker"]));
}

#[test]
fn invalid_settings_are_refused_by_name() {
    let check = |f: fn(&mut Settings)| {
        let mut s = Settings::local();
        f(&mut s);
        match s.validate() {
            Err(ConfigError::Invalid { setting, .. }) => setting,
            other => panic!("expected a refusal, got {other:?}"),
        }
    };
    assert_eq!(
        check(|s| s.worker.database_url = "mysql://x".into()),
        "database_url"
    );
    assert_eq!(
        check(|s| s.connection.nats_url = "http://x".into()),
        "nats_url"
    );
    assert_eq!(check(|s| s.worker.concurrency = 0), "concurrency");
    assert_eq!(check(|s| s.worker.batch_max = 0), "batch_max");
    assert_eq!(check(|s| s.worker.stream_replicas = 7), "stream_replicas");
    assert_eq!(
        check(|s| s.worker.http_addr = "nowhere".into()),
        "http_addr"
    );
    assert_eq!(
        check(|s| s.connection.nats_user = Some("u".into())),
        "nats_user"
    );
    assert_eq!(
        check(|s| s.connection.subject_prefix = "a.*".into()),
        "subject_prefix"
    );
    assert!(Settings::local().validate().is_ok());
}

#[test]
fn secrets_are_redacted() {
    let mut s = Settings::local();
    s.worker.database_url = "postgres://sop:hunter2@db/sop".into();
    s.connection.nats_user = Some("worker".into());
    s.connection.nats_password = Some("hunter3".into());
    let shown = s.redacted().to_string();
    assert!(
        !shown.contains("hunter2") && !shown.contains("hunter3"),
        "{shown}"
    );
    assert!(shown.contains("postgres://sop:***@db/sop"));
}
