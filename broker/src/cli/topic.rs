//! `floe topic create | list | describe | delete | reassign`.

use floe_client::{Admin, NewTopic, TopicDescription};
use serde_json::json;

use super::output::{OutputFormat, Table, ids, print, print_json};
use super::{CliError, ClientArgs};

/// `floe topic` sub-commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum TopicCommand {
    /// Create a topic (the controller places its replicas and spreads the leaders).
    Create {
        /// The topic name.
        name: String,
        /// Number of partitions.
        #[arg(long, value_name = "P", value_parser = clap::value_parser!(u32).range(1..=100_000))]
        partitions: u32,
        /// Replicas per partition (at most the number of brokers).
        #[arg(long, value_name = "R", value_parser = clap::value_parser!(u16).range(1..))]
        replicas: u16,
        /// A topic setting, e.g. retention.ms=86400000 or fsync=always (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List the topics.
    List {
        /// table or json.
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Show a topic's partitions: leader, replicas, in-sync replicas, settings.
    Describe {
        /// The topic name.
        name: String,
        /// table or json.
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Delete a topic and its data.
    Delete {
        /// The topic name.
        name: String,
    },
    /// Move a partition to other brokers: set its replicas (the first is the preferred
    /// leader). Returns once the controller recorded it; the replicas then move online.
    Reassign {
        /// The topic name.
        name: String,
        /// The partition to move.
        #[arg(long, value_name = "P")]
        partition: u32,
        /// The new replicas: broker ids, comma-separated (e.g. 1,2,4).
        #[arg(long, value_name = "IDS", value_delimiter = ',', required = true)]
        replicas: Vec<u64>,
    },
}

/// Runs a `floe topic` sub-command.
pub(crate) fn run(args: &ClientArgs, command: TopicCommand) -> Result<(), CliError> {
    // Settings are checked before anything connects.
    if let TopicCommand::Create { configs, .. } = &command {
        parse_configs(configs)?;
    }
    super::runtime()?.block_on(async {
        let client = args.connect().await?;
        let admin = client.admin();
        let result = match command {
            TopicCommand::Create {
                name,
                partitions,
                replicas,
                configs,
            } => {
                let mut topic = NewTopic::new(&name, partitions, replicas);
                topic.configs = parse_configs(&configs)?;
                admin.create_topic(topic).await.map_err(CliError::from)?;
                print(&format!(
                    "created topic {name}: {partitions} partitions x {replicas} replicas\n"
                ))
            }
            TopicCommand::List { output } => list(&admin, output).await,
            TopicCommand::Describe { name, output } => describe(&admin, &name, output).await,
            TopicCommand::Delete { name } => {
                admin.delete_topics(&[&name]).await?;
                print(&format!("deleted topic {name}\n"))
            }
            TopicCommand::Reassign {
                name,
                partition,
                replicas,
            } => {
                admin
                    .alter_partition_replicas(&name, partition, &replicas)
                    .await?;
                let list: Vec<String> = replicas.iter().map(u64::to_string).collect();
                print(&format!(
                    "reassigning {name}/{partition} to replicas {}\n",
                    list.join(",")
                ))
            }
        };
        client.close().await;
        result
    })
}

/// `KEY=VALUE` entries.
fn parse_configs(configs: &[String]) -> Result<Vec<(String, String)>, CliError> {
    configs
        .iter()
        .map(|c| match c.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(CliError::ConfigEntry(c.clone())),
        })
        .collect()
}

async fn list(admin: &Admin, output: OutputFormat) -> Result<(), CliError> {
    let mut topics = admin.list_topics().await?;
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    match output {
        OutputFormat::Json => print_json(&json!(
            topics
                .iter()
                .map(|t| json!({
                    "name": t.name,
                    "partitions": t.partitions,
                    "replication_factor": t.replication_factor,
                }))
                .collect::<Vec<_>>()
        )),
        OutputFormat::Table => {
            let mut table = Table::new(&["NAME", "PARTITIONS", "REPLICAS"]);
            for t in &topics {
                table.row(vec![
                    t.name.clone(),
                    t.partitions.to_string(),
                    t.replication_factor.to_string(),
                ]);
            }
            print(&table.render())
        }
    }
}

/// A described topic as JSON (also used by `floe cluster status --output json`).
pub(crate) fn description_json(d: &TopicDescription) -> serde_json::Value {
    json!({
        "name": d.name,
        "replication_factor": d.replication_factor(),
        "configs": d.configs.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "partitions": d.partitions.iter().map(|p| json!({
            "partition": p.partition,
            "leader": p.leader,
            "leader_term": p.leader_term,
            "replicas": p.replicas,
            "in_sync": p.in_sync,
        })).collect::<Vec<_>>(),
    })
}

async fn describe(admin: &Admin, name: &str, output: OutputFormat) -> Result<(), CliError> {
    let described = admin.describe_topics(&[name]).await?;
    let d = described
        .into_iter()
        .find(|d| d.name == name)
        .ok_or_else(|| CliError::UnknownTopic(name.to_string()))?;
    match output {
        OutputFormat::Json => print_json(&description_json(&d)),
        OutputFormat::Table => {
            let mut text = format!(
                "topic {}: {} partitions, replication factor {}\n",
                d.name,
                d.partitions.len(),
                d.replication_factor()
            );
            if !d.configs.is_empty() {
                let configs: Vec<String> =
                    d.configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                text.push_str(&format!("config: {}\n", configs.join(" ")));
            }
            let mut table = Table::new(&["PARTITION", "LEADER", "TERM", "REPLICAS", "IN-SYNC"]);
            for p in &d.partitions {
                table.row(vec![
                    p.partition.to_string(),
                    p.leader.map_or("none".to_string(), |l| l.to_string()),
                    p.leader_term.to_string(),
                    ids(&p.replicas),
                    ids(&p.in_sync),
                ]);
            }
            text.push_str(&table.render());
            print(&text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_key_equals_value() {
        let ok = parse_configs(&["retention.ms=1000".into(), "fsync=".into()]).expect("valid");
        assert_eq!(
            ok,
            vec![
                ("retention.ms".to_string(), "1000".to_string()),
                ("fsync".to_string(), String::new())
            ]
        );
        assert!(matches!(
            parse_configs(&["retention.ms".into()]),
            Err(CliError::ConfigEntry(_))
        ));
        assert!(matches!(
            parse_configs(&["=1".into()]),
            Err(CliError::ConfigEntry(_))
        ));
    }
}
