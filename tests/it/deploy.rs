//! The deployment files are checked like code: every YAML document parses, every `SOP_*`
//! variable they set is a setting the worker reads, and the NATS configurations are accepted
//! by `nats-server -t`. (Stream definitions are checked against the code by a unit test.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use serde::Deserialize;
use vsm_sop::cli::Cli;

fn files(dir: &Path, ext: &[&str], out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, ext, out);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ext.contains(&e))
        {
            out.push(path);
        }
    }
}

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

#[test]
fn every_deploy_yaml_document_parses() {
    let mut yaml = Vec::new();
    files(&deploy(), &["yaml", "yml"], &mut yaml);
    assert!(yaml.len() >= 5, "compose and k8s manifests: {yaml:?}");
    for path in yaml {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut docs = 0;
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            serde_yaml_ng::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            docs += 1;
        }
        assert!(docs > 0, "{} is empty", path.display());
    }
    let mut json = Vec::new();
    files(&deploy(), &["json"], &mut json);
    for path in json {
        let text = std::fs::read_to_string(&path).unwrap();
        serde_json::from_str::<serde_json::Value>(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn deploy_files_set_only_settings_the_worker_reads() {
    // The worker reads the global settings and those of its own subcommand.
    let cli = Cli::command();
    let worker = cli.find_subcommand("worker").expect("sop worker");
    let known: BTreeSet<String> = cli
        .get_arguments()
        .chain(worker.get_arguments())
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    assert!(known.contains("SOP_DATABASE_URL") && known.contains("SOP_STREAM_REPLICAS"));
    // The worker's environment is set in the compose file and the Kubernetes manifests (the
    // NATS configurations read variables of the NATS server's own).
    let mut all = Vec::new();
    files(&deploy(), &["yaml", "yml"], &mut all);
    for path in all {
        let text = std::fs::read_to_string(&path).unwrap();
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            let is_stream = word.ends_with("_SOP_COMMANDS")
                || ["SOP_COMMANDS", "SOP_EVENTS", "SOP_OUTCOMES"].contains(&word);
            if word.starts_with("SOP_") && !is_stream {
                assert!(
                    known.contains(word),
                    "{} sets {word}, which the worker does not read",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn nats_configs_are_accepted_by_nats_server() {
    let mut confs = Vec::new();
    files(&deploy().join("nats"), &["conf"], &mut confs);
    confs.retain(|c| {
        c.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("node-"))
    });
    assert_eq!(
        confs.len(),
        3,
        "one config per cluster node (roles.conf is checked by the security test)"
    );
    for conf in confs {
        if let Err(said) = crate::servers::check_nats_config(&conf) {
            panic!("{}: {said}", conf.display());
        }
    }
}
