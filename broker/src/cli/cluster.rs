//! `floe cluster status`: nodes (and whether each answers), the controller leader, every
//! partition's leader and replicas, and the under-replicated partitions.

use std::time::Duration;

use floe_client::{BrokerInfo, TopicDescription};
use serde_json::json;

use super::output::{OutputFormat, Table, ids, print, print_json};
use super::topic::description_json;
use super::{CliError, ClientArgs};

/// `floe cluster` sub-commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ClusterCommand {
    /// Nodes, controller leader, partition leaders and replicas, under-replicated partitions.
    Status {
        /// table or json.
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
}

/// Longest wait for one node's own answer (a down node must not stall the whole status).
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a partition needs attention, if it does.
fn trouble(p: &floe_client::PartitionInfo) -> Option<&'static str> {
    if p.leader.is_none() {
        Some("no leader")
    } else if p.in_sync.len() < p.replicas.len() {
        Some("under-replicated")
    } else {
        None
    }
}

/// Runs `floe cluster status`.
pub(crate) fn run(args: &ClientArgs, command: ClusterCommand) -> Result<(), CliError> {
    let ClusterCommand::Status { output } = command;
    super::runtime()?.block_on(async {
        let client = args.connect().await?;
        let admin = client.admin();
        let cluster = admin.describe_cluster().await?;
        let mut names: Vec<String> = admin
            .list_topics()
            .await?
            .into_iter()
            .map(|t| t.name)
            .collect();
        names.sort();
        let topics: Vec<TopicDescription> = if names.is_empty() {
            Vec::new()
        } else {
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            admin.describe_topics(&refs).await?
        };
        let mut brokers = cluster.brokers.clone();
        brokers.sort_by_key(|b| b.node_id);
        let probes = futures_util::future::join_all(brokers.iter().map(|b| probe(args, b))).await;
        client.close().await;

        let troubled: Vec<(String, u32, &'static str)> = topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .filter_map(|p| trouble(p).map(|why| (t.name.clone(), p.partition, why)))
            })
            .collect();
        match output {
            OutputFormat::Json => print_json(&json!({
                "cluster_id": cluster.cluster_id,
                "controller": cluster.controller,
                "nodes": brokers.iter().zip(&probes).map(|(b, up)| json!({
                    "id": b.node_id,
                    "address": address(b),
                    "rack": b.rack,
                    "reachable": up.is_ok(),
                    "error": up.as_ref().err(),
                })).collect::<Vec<_>>(),
                "topics": topics.iter().map(description_json).collect::<Vec<_>>(),
                "under_replicated": troubled.iter().map(|(t, p, why)| json!({
                    "topic": t, "partition": p, "reason": why,
                })).collect::<Vec<_>>(),
            })),
            OutputFormat::Table => {
                let mut text = format!(
                    "cluster {}, controller leader: {}\n\n",
                    cluster.cluster_id,
                    cluster
                        .controller
                        .map_or("unknown".to_string(), |c| format!("node {c}"))
                );
                let mut nodes = Table::new(&["NODE", "ADDRESS", "STATUS"]);
                for (b, up) in brokers.iter().zip(&probes) {
                    nodes.row(vec![
                        b.node_id.to_string(),
                        address(b),
                        match up {
                            Ok(()) => "up".to_string(),
                            Err(e) => format!("DOWN ({e})"),
                        },
                    ]);
                }
                text.push_str(&nodes.render());
                text.push('\n');
                if topics.is_empty() {
                    text.push_str("no topics\n");
                } else {
                    let mut parts =
                        Table::new(&["TOPIC", "PARTITION", "LEADER", "REPLICAS", "IN-SYNC"]);
                    for t in &topics {
                        for p in &t.partitions {
                            parts.row(vec![
                                t.name.clone(),
                                p.partition.to_string(),
                                p.leader.map_or("none".to_string(), |l| l.to_string()),
                                ids(&p.replicas),
                                ids(&p.in_sync),
                            ]);
                        }
                    }
                    text.push_str(&parts.render());
                }
                text.push('\n');
                if troubled.is_empty() {
                    text.push_str("under-replicated partitions: none\n");
                } else {
                    let list: Vec<String> = troubled
                        .iter()
                        .map(|(t, p, why)| format!("{t}/{p} ({why})"))
                        .collect();
                    text.push_str(&format!(
                        "under-replicated partitions: {}\n",
                        list.join(", ")
                    ));
                }
                print(&text)
            }
        }
    })
}

fn address(b: &BrokerInfo) -> String {
    if b.host.contains(':') {
        format!("[{}]:{}", b.host, b.port)
    } else {
        format!("{}:{}", b.host, b.port)
    }
}

/// Whether the node answers on its own (a client bootstrapped from it alone).
async fn probe(args: &ClientArgs, b: &BrokerInfo) -> Result<(), String> {
    let one = ClientArgs {
        brokers: vec![address(b)],
        ca_cert: args.ca_cert.clone(),
        timeout: args.timeout.min(PROBE_TIMEOUT),
    };
    match one.connect().await {
        Ok(client) => {
            client.close().await;
            Ok(())
        }
        Err(CliError::Unreachable { .. }) => Err("no answer".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_without_leader_or_full_isr_are_flagged() {
        let p = |leader, in_sync: Vec<u64>| floe_client::PartitionInfo {
            partition: 0,
            leader,
            leader_term: 1,
            replicas: vec![1, 2, 3],
            in_sync,
        };
        assert_eq!(trouble(&p(Some(1), vec![1, 2, 3])), None);
        assert_eq!(trouble(&p(Some(1), vec![1, 2])), Some("under-replicated"));
        assert_eq!(trouble(&p(None, vec![1, 2, 3])), Some("no leader"));
    }
}
