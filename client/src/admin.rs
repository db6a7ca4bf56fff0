//! [`Admin`]: create, delete, list and describe topics; describe the cluster.
//!
//! Admin requests go to any broker (it forwards them to the controller) and are retried on
//! retryable errors such as `NotController` with the client's retry settings.

use std::time::Duration;

use floe_protocol::client::{
    AlterPartitionReplicasRequest, ApiKey, ConfigEntry, CreatableTopic, CreateTopicsRequest,
    DeleteTopicsRequest, DescribeClusterRequest, DescribeTopicsRequest, ListTopicsRequest, Request,
    Response, TopicResult,
};

pub use floe_protocol::client::{BrokerInfo, TopicListing};

use crate::client::Client;
use crate::error::{Error, Result};

/// A topic to create.
///
/// ```
/// let t = floe_client::NewTopic::new("orders", 6, 3)
///     .config("retention.ms", "86400000")
///     .config("fsync", "always");
/// assert_eq!(t.configs.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// The topic name.
    pub name: String,
    /// Partition count.
    pub partitions: u32,
    /// Replicas per partition.
    pub replication_factor: u16,
    /// Configuration overrides (`retention.ms`, `retention.bytes`, `fsync`, ...).
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// `partitions` partitions of `replication_factor` replicas each.
    pub fn new(name: impl Into<String>, partitions: u32, replication_factor: u16) -> Self {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor,
            configs: Vec::new(),
        }
    }

    /// Adds a configuration override.
    pub fn config(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((name.into(), value.into()));
        self
    }
}

/// One partition of a described topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: u32,
    /// Leader node, if one is elected.
    pub leader: Option<u64>,
    /// Raft term of the leader.
    pub leader_term: u64,
    /// All replicas (node ids).
    pub replicas: Vec<u64>,
    /// In-sync replicas.
    pub in_sync: Vec<u64>,
}

/// A described topic: partitions, placement and effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// The name.
    pub name: String,
    /// Internal topic (for example consumer offsets).
    pub internal: bool,
    /// Partitions in index order.
    pub partitions: Vec<PartitionInfo>,
    /// Effective configuration (retention, fsync policy, ...).
    pub configs: Vec<(String, String)>,
}

impl TopicDescription {
    /// The replication factor (replicas of the first partition).
    pub fn replication_factor(&self) -> usize {
        self.partitions.first().map_or(0, |p| p.replicas.len())
    }
}

/// The cluster: id, controller leader, brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// The cluster id.
    pub cluster_id: String,
    /// The current controller leader, if known.
    pub controller: Option<u64>,
    /// Registered brokers.
    pub brokers: Vec<BrokerInfo>,
}

/// Topic administration and cluster description; get one with [`Client::admin`].
///
/// ```no_run
/// # async fn demo(client: floe_client::Client) -> floe_client::Result<()> {
/// use floe_client::NewTopic;
/// let admin = client.admin();
/// admin.create_topic(NewTopic::new("orders", 3, 3)).await?;
/// for t in admin.list_topics().await? {
///     println!("{} ({} partitions)", t.name, t.partitions);
/// }
/// let d = &admin.describe_topics(&["orders"]).await?[0];
/// println!("leader of orders/0: {:?}", d.partitions[0].leader);
/// admin.delete_topics(&["orders"]).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
    timeout: Duration,
}

fn unexpected(api: ApiKey) -> Error {
    Error::Broker {
        code: floe_protocol::ErrorCode::UnknownServerError,
        api,
        topic: None,
        partition: None,
        message: None,
    }
}

/// The first failed topic of a create/delete, as an error.
fn first_failure(api: ApiKey, results: Vec<TopicResult>) -> Result<()> {
    for r in results {
        if !r.error.is_ok() {
            return Err(Error::Broker {
                code: r.error,
                api,
                topic: Some(r.name),
                partition: None,
                message: r.message,
            });
        }
    }
    Ok(())
}

impl Admin {
    pub(crate) fn new(client: Client) -> Self {
        let timeout = client.config().request_timeout;
        Admin { client, timeout }
    }

    fn timeout_ms(&self) -> u32 {
        u32::try_from(self.timeout.as_millis()).unwrap_or(u32::MAX)
    }

    /// Creates one topic. Fails with [`Error::Broker`] (code `TopicAlreadyExists`,
    /// `InvalidReplicationFactor`, ...) if the controller refuses it.
    pub async fn create_topic(&self, topic: NewTopic) -> Result<()> {
        self.create_topics(vec![topic]).await
    }

    /// Creates topics; the first refused topic is returned as the error (the others may
    /// have been created).
    pub async fn create_topics(&self, topics: Vec<NewTopic>) -> Result<()> {
        let request = Request::from(CreateTopicsRequest {
            topics: topics
                .into_iter()
                .map(|t| CreatableTopic {
                    name: t.name,
                    partitions: t.partitions,
                    replication_factor: t.replication_factor,
                    configs: t
                        .configs
                        .into_iter()
                        .map(|(name, value)| ConfigEntry { name, value })
                        .collect(),
                })
                .collect(),
            timeout_ms: self.timeout_ms(),
            validate_only: false,
        });
        match self.call(&request).await? {
            Response::CreateTopics(r) => first_failure(ApiKey::CreateTopics, r.results),
            _ => Err(unexpected(ApiKey::CreateTopics)),
        }
    }

    /// Deletes topics; the first refused topic is returned as the error.
    pub async fn delete_topics(&self, names: &[&str]) -> Result<()> {
        let request = Request::from(DeleteTopicsRequest {
            names: names.iter().map(|n| n.to_string()).collect(),
            timeout_ms: self.timeout_ms(),
        });
        match self.call(&request).await? {
            Response::DeleteTopics(r) => first_failure(ApiKey::DeleteTopics, r.results),
            _ => Err(unexpected(ApiKey::DeleteTopics)),
        }
    }

    /// Moves partition `partition` of `topic` to the brokers `replicas` (node ids; the first
    /// becomes the preferred leader): Kafka's partition reassignment. Returns once the
    /// controller recorded the new replica set; the move itself then runs online in the
    /// partition's Raft group (new replicas catch up as learners before they vote, removed
    /// ones leave last, a leader being moved away hands its leadership over first), and
    /// [`Admin::describe_topics`] shows the new replicas at once. Fails with
    /// [`Error::Broker`]: `InvalidReplicationFactor` (no replicas, or more than 16),
    /// `InvalidRequest` (a broker named twice), `BrokerNotAvailable` (a broker unknown or
    /// fenced), `UnknownTopicOrPartition`.
    ///
    /// ```no_run
    /// # async fn demo(client: floe_client::Client) -> floe_client::Result<()> {
    /// // Replace broker 3 with the newly added broker 4 in orders/0's replica set.
    /// client.admin().alter_partition_replicas("orders", 0, &[1, 2, 4]).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn alter_partition_replicas(
        &self,
        topic: &str,
        partition: u32,
        replicas: &[u64],
    ) -> Result<()> {
        let request = Request::from(AlterPartitionReplicasRequest {
            topic: topic.to_string(),
            partition,
            replicas: replicas.to_vec(),
            timeout_ms: self.timeout_ms(),
        });
        match self.call(&request).await? {
            Response::AlterPartitionReplicas(r) if r.error.is_ok() => Ok(()),
            Response::AlterPartitionReplicas(r) => Err(Error::Broker {
                code: r.error,
                api: ApiKey::AlterPartitionReplicas,
                topic: Some(topic.to_string()),
                partition: Some(partition),
                message: r.message,
            }),
            _ => Err(unexpected(ApiKey::AlterPartitionReplicas)),
        }
    }

    /// Lists the topics (not internal ones).
    pub async fn list_topics(&self) -> Result<Vec<TopicListing>> {
        let request = Request::from(ListTopicsRequest {
            include_internal: false,
        });
        match self.call(&request).await? {
            Response::ListTopics(r) if r.error.is_ok() => Ok(r.topics),
            Response::ListTopics(r) => Err(Error::broker(ApiKey::ListTopics, r.error)),
            _ => Err(unexpected(ApiKey::ListTopics)),
        }
    }

    /// Describes topics; an unknown topic is an error naming it. A partition's leader is
    /// asked of its replicas when the broker that answered hosts none of them (and so
    /// cannot tell); it stays `None` while none of them knows one either (an election).
    pub async fn describe_topics(&self, names: &[&str]) -> Result<Vec<TopicDescription>> {
        let request = Request::from(DescribeTopicsRequest {
            names: names.iter().map(|n| n.to_string()).collect(),
        });
        let (from, response) = self.call_from(&request).await?;
        let Response::DescribeTopics(r) = response else {
            return Err(unexpected(ApiKey::DescribeTopics));
        };
        let mut topics = r.topics;
        // Which replica to ask for each leaderless partition: the first at another address.
        let mut ask: Vec<(crate::metadata::BrokerAddr, Vec<String>)> = Vec::new();
        for t in topics.iter().filter(|t| t.error.is_ok()) {
            for p in t.partitions.iter().filter(|p| p.leader.is_none()) {
                let Some(broker) = p
                    .replicas
                    .iter()
                    .filter_map(|r| self.client.broker_addr(*r))
                    .find(|b| b.addr != from.addr)
                else {
                    continue;
                };
                match ask.iter_mut().find(|(b, _)| b.addr == broker.addr) {
                    Some((_, ts)) if !ts.contains(&t.name) => ts.push(t.name.clone()),
                    Some(_) => {}
                    None => ask.push((broker, vec![t.name.clone()])),
                }
            }
        }
        for (broker, names) in ask {
            let request = Request::from(DescribeTopicsRequest { names });
            let Ok(Response::DescribeTopics(r)) = self.client.call(&broker, &request).await else {
                continue;
            };
            for known in r.topics.iter().filter(|t| t.error.is_ok()) {
                let Some(t) = topics.iter_mut().find(|t| t.name == known.name) else {
                    continue;
                };
                for kp in known.partitions.iter().filter(|p| p.leader.is_some()) {
                    if let Some(p) = t
                        .partitions
                        .iter_mut()
                        .find(|p| p.partition == kp.partition && p.leader.is_none())
                    {
                        p.error = kp.error;
                        p.leader = kp.leader;
                        p.leader_term = kp.leader_term;
                        p.in_sync = kp.in_sync.clone();
                    }
                }
            }
        }
        topics
            .into_iter()
            .map(|t| {
                Client::check_code(ApiKey::DescribeTopics, t.error, &t.name, None)?;
                let mut partitions: Vec<PartitionInfo> = t
                    .partitions
                    .into_iter()
                    .map(|p| PartitionInfo {
                        partition: p.partition,
                        leader: p.leader,
                        leader_term: p.leader_term,
                        replicas: p.replicas,
                        in_sync: p.in_sync,
                    })
                    .collect();
                partitions.sort_by_key(|p| p.partition);
                Ok(TopicDescription {
                    name: t.name,
                    internal: t.internal,
                    partitions,
                    configs: t.configs.into_iter().map(|c| (c.name, c.value)).collect(),
                })
            })
            .collect()
    }

    /// The cluster id, controller leader and brokers.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        let request = Request::from(DescribeClusterRequest {});
        match self.call(&request).await? {
            Response::DescribeCluster(r) if r.error.is_ok() => Ok(ClusterDescription {
                cluster_id: r.cluster_id,
                controller: r.controller_id,
                brokers: r.brokers,
            }),
            Response::DescribeCluster(r) => Err(Error::broker(ApiKey::DescribeCluster, r.error)),
            _ => Err(unexpected(ApiKey::DescribeCluster)),
        }
    }

    /// One admin call with retries; a response whose top-level error is retryable
    /// (`NotController`, ...) is retried like a transport error.
    async fn call(&self, request: &Request) -> Result<Response> {
        self.call_from(request).await.map(|(_, r)| r)
    }

    /// [`call`](Self::call), and which broker answered.
    async fn call_from(
        &self,
        request: &Request,
    ) -> Result<(crate::metadata::BrokerAddr, Response)> {
        self.client
            .with_retries(|| async {
                let (from, response) = self.client.call_any_once_from(request).await?;
                let retryable = match &response {
                    Response::CreateTopics(r) => r.results.iter().find(|t| t.error.is_retryable()),
                    Response::DeleteTopics(r) => r.results.iter().find(|t| t.error.is_retryable()),
                    _ => None,
                };
                if let Some(t) = retryable {
                    return Err(Error::Broker {
                        code: t.error,
                        api: request.api_key(),
                        topic: Some(t.name.clone()),
                        partition: None,
                        message: t.message.clone(),
                    });
                }
                match &response {
                    Response::ListTopics(r) if r.error.is_retryable() => {
                        Err(Error::broker(request.api_key(), r.error))
                    }
                    Response::DescribeCluster(r) if r.error.is_retryable() => {
                        Err(Error::broker(request.api_key(), r.error))
                    }
                    _ => Ok((from, response)),
                }
            })
            .await
    }
}
