//! [`Client`]: connections to the brokers, the metadata cache, routing, retries.
//!
//! One `Client` owns one QUIC endpoint and at most one connection per broker address. It is
//! cheap to clone (an `Arc`); [`Producer`](crate::Producer), [`Consumer`](crate::Consumer) and
//! [`Admin`](crate::Admin) each hold a clone.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use floe_net::quinn::Connection;
use floe_net::{CaCerts, Endpoint, EndpointOptions};
use floe_protocol::ErrorCode;
use floe_protocol::FrameLimits;
use floe_protocol::client::{
    ApiKey, ApiVersionRange, ApiVersionsRequest, MetadataRequest, MetadataResponse, Request,
    Response, api_version_ranges,
};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::metadata::{BrokerAddr, MetadataCache};
use crate::record::TopicPartition;

/// Where the trusted CA certificates come from.
#[derive(Debug, Clone)]
enum CaSource {
    File(PathBuf),
    Pem(Vec<u8>),
    Certs(CaCerts),
}

/// Settings for a [`Client`]; see [`Client::builder`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    brokers: Vec<String>,
    ca: Option<CaSource>,
    server_name: Option<String>,
    client_id: Option<String>,
    config: Config,
    endpoint: EndpointOptions,
    idle_timeout: Duration,
}

/// Default of [`ClientBuilder::idle_timeout`]: a third of QUIC's usual 30 s, still far above
/// any pause of a live broker (keep-alives go out every quarter of it).
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The settings every request uses.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) request_timeout: Duration,
    pub(crate) metadata_max_age: Duration,
    pub(crate) reconnect_backoff: Duration,
    pub(crate) reconnect_backoff_max: Duration,
    pub(crate) retry_backoff: Duration,
    pub(crate) retries: u32,
    pub(crate) limits: FrameLimits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            request_timeout: Duration::from_secs(30),
            metadata_max_age: Duration::from_secs(60),
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(2),
            retry_backoff: Duration::from_millis(100),
            retries: 10,
            limits: FrameLimits::default(),
        }
    }
}

impl Config {
    /// Exponential backoff: `base * 2^attempt`, capped at `max`.
    pub(crate) fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
        base.saturating_mul(1u32 << attempt.min(16)).min(max)
    }
}

impl ClientBuilder {
    /// Bootstrap brokers, `host:port` each (any one reachable broker is enough; the client
    /// learns the others from metadata).
    pub fn brokers<I, S>(mut self, brokers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.brokers = brokers.into_iter().map(Into::into).collect();
        self
    }

    /// Trust the CA certificate(s) in this PEM file (`floe cert init` writes `ca.pem`).
    pub fn ca_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca = Some(CaSource::File(path.into()));
        self
    }

    /// Trust the CA certificate(s) in this PEM text.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca = Some(CaSource::Pem(pem.into()));
        self
    }

    /// Trust these already-loaded CA certificates.
    pub fn ca_certs(mut self, ca: CaCerts) -> Self {
        self.ca = Some(CaSource::Certs(ca));
        self
    }

    /// The name every broker certificate must carry. By default each broker is verified
    /// against its own host (the host of its address: a DNS name or an IP address).
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// A client id for the brokers' logs.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// How long one request may take, connection set-up included (default 30 s). A request
    /// that times out is retryable.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// Refresh cached metadata at least this often (default 60 s). It is also refreshed
    /// (after the retry backoff, from another broker) when a broker says a leader moved or a
    /// partition is unknown, and when a partition leader cannot be reached, loses the
    /// connection or does not answer within the request timeout.
    pub fn metadata_max_age(mut self, age: Duration) -> Self {
        self.config.metadata_max_age = age;
        self
    }

    /// Wait this long before reconnecting to a broker after a failed attempt, doubling per
    /// further failure up to `max` (defaults 50 ms and 2 s).
    pub fn reconnect_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.config.reconnect_backoff = base;
        self.config.reconnect_backoff_max = max;
        self
    }

    /// Retries of a retryable metadata or admin request (default 10), and the first backoff
    /// between them (default 100 ms, doubling, capped at the reconnect backoff maximum).
    pub fn retries(mut self, retries: u32, backoff: Duration) -> Self {
        self.config.retries = retries;
        self.config.retry_backoff = backoff;
        self
    }

    /// QUIC and socket settings (for example [`EndpointOptions::loopback`], or a smaller
    /// `stream_receive_window` to bound what a subscription may have in flight). Their
    /// keep-alive and idle timeout are replaced by [`idle_timeout`](Self::idle_timeout).
    pub fn endpoint_options(mut self, options: EndpointOptions) -> Self {
        self.endpoint = options;
        self
    }

    /// How long a broker connection may stay silent before the client declares the broker
    /// gone (default 10 s). Keep-alives go out every quarter of it, so a live broker always
    /// answers in time; a broker that died without closing its connections (a crash, a
    /// power cut, a network partition) is noticed after this long even when nothing else is
    /// waiting on it: an idle subscription then moves to the partition's new leader. Lower
    /// it to fail over faster, at the risk of dropping connections to a broker that is
    /// merely stalled.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Resolves the bootstrap brokers, creates the QUIC endpoint and loads the first
    /// metadata (so a wrong address or CA fails here, not at the first send).
    pub async fn build(self) -> Result<Client> {
        if self.brokers.is_empty() {
            return Err(Error::Config {
                field: "brokers",
                reason: "at least one broker is needed",
            });
        }
        if self.config.request_timeout.is_zero() {
            return Err(Error::Config {
                field: "request_timeout",
                reason: "must be above zero",
            });
        }
        if self.idle_timeout < Duration::from_millis(100) {
            return Err(Error::Config {
                field: "idle_timeout",
                reason: "must be at least 100 ms",
            });
        }
        let ca = match self.ca {
            Some(CaSource::File(path)) => CaCerts::from_pem_file(path)?,
            Some(CaSource::Pem(pem)) => parse_ca_pem(&pem)?,
            Some(CaSource::Certs(ca)) => ca,
            None => {
                return Err(Error::Config {
                    field: "ca_cert",
                    reason: "a CA certificate is needed (floe always uses TLS)",
                });
            }
        };
        let mut bootstrap = Vec::new();
        for b in &self.brokers {
            let (host, addrs) = resolve(b).await?;
            let server_name = self.server_name.clone().unwrap_or(host);
            for addr in addrs {
                bootstrap.push(BrokerAddr {
                    addr,
                    server_name: server_name.clone(),
                });
            }
        }
        let bind: SocketAddr = if bootstrap.iter().all(|b| b.addr.is_ipv6()) {
            "[::]:0".parse().expect("valid address")
        } else {
            "0.0.0.0:0".parse().expect("valid address")
        };
        let mut options = self.endpoint;
        options.transport.idle_timeout = self.idle_timeout;
        options.transport.keep_alive = Some(self.idle_timeout / 4);
        let endpoint = Endpoint::client(bind, &ca, &options)?;
        let inner = Arc::new(Inner {
            endpoint,
            config: self.config,
            server_name: self.server_name,
            client_id: self.client_id,
            bootstrap,
            slots: Mutex::new(HashMap::new()),
            metadata: RwLock::new(MetadataCache::default()),
            refresh: tokio::sync::Mutex::new(LastRefresh::default()),
            refresh_tickets: AtomicU64::new(0),
            unreachable: Mutex::new(HashSet::new()),
            next_correlation_id: AtomicU32::new(1),
            closed: AtomicBool::new(false),
            refresher: Mutex::new(None),
        });
        let client = Client { inner };
        // Brokers and the cluster id only; topics are loaded as they are used.
        client.refresh_metadata(Some(Vec::new())).await?;
        let task = tokio::spawn(refresh_periodically(Arc::downgrade(&client.inner)));
        *lock(&client.inner.refresher) = Some(task);
        Ok(client)
    }
}

/// The apis this client needs every broker to support.
const USED_APIS: &[ApiKey] = &[
    ApiKey::ApiVersions,
    ApiKey::Metadata,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::ListTopics,
    ApiKey::DescribeTopics,
    ApiKey::Produce,
    ApiKey::ListOffsets,
    ApiKey::InitProducerId,
    ApiKey::DescribeCluster,
];

/// Consumers read with server-pushed subscriptions when a broker has them, else with fetch
/// long-polls: a broker needs one of the two.
const SUBSCRIBE_APIS: &[ApiKey] = &[ApiKey::Subscribe, ApiKey::SubscribeCredit];

/// Whether the broker's ranges share a version of `api` with ours (the protocol forbids
/// calling it otherwise).
fn supports(broker: &[ApiVersionRange], api: ApiKey) -> bool {
    let (min, max) = api.versions();
    broker
        .iter()
        .any(|r| r.api_key == api as u16 && r.min_version <= max && min <= r.max_version)
}

/// The first api this client needs that the broker lacks (for reading: subscribe or, when
/// that is missing, fetch).
fn unsupported_api(broker: &[ApiVersionRange]) -> Option<ApiKey> {
    if let Some(api) = USED_APIS.iter().copied().find(|a| !supports(broker, *a)) {
        return Some(api);
    }
    if !subscribe_supported(broker) && !supports(broker, ApiKey::Fetch) {
        return Some(ApiKey::Subscribe);
    }
    None
}

/// Whether the broker can serve subscriptions (else consumers fetch).
fn subscribe_supported(broker: &[ApiVersionRange]) -> bool {
    SUBSCRIBE_APIS.iter().all(|a| supports(broker, *a))
}

/// Parses CA certificates from PEM text.
fn parse_ca_pem(pem: &[u8]) -> Result<CaCerts> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Config {
            field: "ca_pem",
            reason: "not valid PEM certificates",
        })?;
    if certs.is_empty() {
        return Err(Error::Config {
            field: "ca_pem",
            reason: "no certificate in the PEM text",
        });
    }
    Ok(CaCerts::from_der(certs)?)
}

/// Splits `host:port` and resolves it.
async fn resolve(address: &str) -> Result<(String, Vec<SocketAddr>)> {
    let bad = |reason| Error::Resolve {
        address: address.to_string(),
        reason,
    };
    if let Ok(addr) = address.parse::<SocketAddr>() {
        return Ok((addr.ip().to_string(), vec![addr]));
    }
    let (host, port) = address.rsplit_once(':').ok_or_else(|| bad(None))?;
    let port: u16 = port.parse().map_err(|_| bad(None))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad(None));
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| bad(Some(e.kind())))?
        .collect();
    if addrs.is_empty() {
        return Err(bad(None));
    }
    Ok((host.to_string(), addrs))
}

/// A std mutex lock that ignores poisoning (the guarded state stays consistent: every
/// critical section here is a few assignments).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A handle to a floe cluster: connections, metadata, routing. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> floe_client::Result<()> {
/// use std::time::Duration;
/// let client = floe_client::Client::builder()
///     .brokers(["127.0.0.1:9092"])
///     .ca_cert("certs/ca.pem")
///     .request_timeout(Duration::from_secs(10))
///     .build()
///     .await?;
/// println!("{:?}", client.admin().list_topics().await?);
/// client.close().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

/// One broker address's connection and its reconnect state.
#[derive(Debug, Default)]
struct Slot {
    conn: Option<Connection>,
    /// Whether the broker serves subscriptions (from its handshake, or cleared when it
    /// refused one); consumers fall back to fetch long-polls when it does not.
    subscribe: bool,
    failures: u32,
    retry_at: Option<Instant>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    endpoint: Endpoint,
    pub(crate) config: Config,
    server_name: Option<String>,
    client_id: Option<String>,
    bootstrap: Vec<BrokerAddr>,
    slots: Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<Slot>>>>,
    metadata: RwLock<MetadataCache>,
    /// Held while a metadata request is in flight, so concurrent refreshes coalesce: a
    /// caller that waited for it skips its own request when a refresh that began after it
    /// started waiting has covered its topics.
    refresh: tokio::sync::Mutex<LastRefresh>,
    /// Tickets of refreshes, taken when one gets the `refresh` lock.
    refresh_tickets: AtomicU64,
    /// Brokers whose last call failed at the connection level or timed out: cluster-wide
    /// requests (metadata above all) try them last.
    unreachable: Mutex<HashSet<SocketAddr>>,
    next_correlation_id: AtomicU32,
    closed: AtomicBool,
    refresher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The last completed metadata refresh.
#[derive(Debug, Default)]
struct LastRefresh {
    ticket: u64,
    topics: Option<Vec<String>>,
}

impl LastRefresh {
    /// Whether that refresh asked for every topic of `topics` (`None` = all).
    fn covers(&self, topics: &Option<Vec<String>>) -> bool {
        match (&self.topics, topics) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(done), Some(want)) => want.iter().all(|t| done.contains(t)),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.refresher).take() {
            task.abort();
        }
    }
}

async fn refresh_periodically(inner: Weak<Inner>) {
    loop {
        let Some(age) = inner.upgrade().map(|i| i.config.metadata_max_age) else {
            return;
        };
        tokio::time::sleep(age).await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        let client = Client { inner };
        let topics = client.cached_topics();
        if let Err(e) = client.refresh_metadata(Some(topics)).await {
            tracing::debug!(error = %e, "periodic metadata refresh failed");
        }
    }
}

impl Client {
    /// Starts configuring a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            brokers: Vec::new(),
            ca: None,
            server_name: None,
            client_id: None,
            config: Config::default(),
            endpoint: EndpointOptions::default(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }

    /// Topic administration and cluster description.
    pub fn admin(&self) -> crate::Admin {
        crate::Admin::new(self.clone())
    }

    /// The cluster id from the last metadata.
    pub fn cluster_id(&self) -> String {
        self.read_metadata().cluster_id.clone()
    }

    /// Partition count of `topic`, from the cache or fresh metadata.
    pub async fn partition_count(&self, topic: &str) -> Result<u32> {
        if let Some(n) = self.read_metadata().partition_count(topic) {
            return Ok(n);
        }
        self.refresh_metadata(Some(vec![topic.to_string()])).await?;
        self.read_metadata()
            .partition_count(topic)
            .ok_or_else(|| Error::UnknownTopic {
                topic: topic.to_string(),
            })
    }

    /// The node id of `tp`'s leader, as cached (after a refresh if unknown).
    pub async fn leader(&self, tp: &TopicPartition) -> Result<u64> {
        self.leader_addr(tp).await.map(|(node, _)| node)
    }

    /// Closes every connection and the endpoint. Requests in flight fail; later requests get
    /// [`Error::Closed`]. Waits (at most a second) for the closes to reach the brokers.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        if let Some(task) = lock(&self.inner.refresher).take() {
            task.abort();
        }
        let slots: Vec<_> = lock(&self.inner.slots).values().cloned().collect();
        for slot in slots {
            if let Some(conn) = slot.lock().await.conn.take() {
                conn.close(0u32.into(), b"client closed");
            }
        }
        self.inner.endpoint.close(0, b"client closed");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.endpoint.wait_idle()).await;
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    pub(crate) fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn read_metadata(&self) -> std::sync::RwLockReadGuard<'_, MetadataCache> {
        self.inner
            .metadata
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn write_metadata(&self) -> std::sync::RwLockWriteGuard<'_, MetadataCache> {
        self.inner
            .metadata
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn cached_topics(&self) -> Vec<String> {
        self.read_metadata().topic_names()
    }

    fn correlation_id(&self) -> u32 {
        self.inner
            .next_correlation_id
            .fetch_add(1, Ordering::Relaxed)
    }

    fn slot(&self, addr: SocketAddr) -> Arc<tokio::sync::Mutex<Slot>> {
        lock(&self.inner.slots).entry(addr).or_default().clone()
    }

    /// The live connection to `broker`, connecting (after the backoff of earlier failures)
    /// if there is none.
    pub(crate) async fn connection(&self, broker: &BrokerAddr) -> Result<Connection> {
        self.connection_and_subscribe(broker).await.map(|(c, _)| c)
    }

    /// Remembers that the broker at `addr` refused a subscription as unsupported, so its
    /// consumers fetch instead (until a new connection's handshake says otherwise).
    pub(crate) async fn subscribe_refused(&self, addr: SocketAddr) {
        self.slot(addr).lock().await.subscribe = false;
    }

    /// [`connection`](Self::connection), and whether the broker serves subscriptions.
    pub(crate) async fn connection_and_subscribe(
        &self,
        broker: &BrokerAddr,
    ) -> Result<(Connection, bool)> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let slot = self.slot(broker.addr);
        let mut slot = slot.lock().await;
        if let Some(conn) = &slot.conn {
            if conn.close_reason().is_none() {
                return Ok((conn.clone(), slot.subscribe));
            }
            slot.conn = None;
        }
        if let Some(at) = slot.retry_at {
            tokio::time::sleep_until(at).await;
        }
        let after = self.config().request_timeout;
        let connected = match tokio::time::timeout(after, self.connect(broker)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                api: ApiKey::ApiVersions,
                addr: broker.addr,
                after,
            }),
        };
        match connected {
            Ok((conn, subscribe)) => {
                slot.failures = 0;
                slot.retry_at = None;
                slot.conn = Some(conn.clone());
                slot.subscribe = subscribe;
                Ok((conn, subscribe))
            }
            Err(e) => {
                let cfg = self.config();
                let wait = Config::backoff(
                    cfg.reconnect_backoff,
                    cfg.reconnect_backoff_max,
                    slot.failures,
                );
                slot.failures = slot.failures.saturating_add(1);
                slot.retry_at = Some(Instant::now() + wait);
                Err(e)
            }
        }
    }

    /// Dials and handshakes (`ApiVersions`); also says whether the broker serves
    /// subscriptions.
    async fn connect(&self, broker: &BrokerAddr) -> Result<(Connection, bool)> {
        let addr = broker.addr;
        let conn = self
            .inner
            .endpoint
            .connect(addr, &broker.server_name)
            .await
            .map_err(|e| Error::Connect {
                addr,
                source: Arc::new(e),
            })?;
        let request = Request::from(ApiVersionsRequest {
            client_name: "floe-client".into(),
            client_version: env!("CARGO_PKG_VERSION").into(),
            client_id: self.inner.client_id.clone(),
            apis: api_version_ranges(ApiKey::ALL),
        });
        match self.call_on(&conn, addr, &request).await? {
            Response::ApiVersions(r) if r.error.is_ok() => match unsupported_api(&r.apis) {
                None => Ok((conn, subscribe_supported(&r.apis))),
                Some(api) => {
                    conn.close(0u32.into(), b"no common api version");
                    Err(Error::broker(api, ErrorCode::UnsupportedVersion))
                }
            },
            Response::ApiVersions(r) => {
                conn.close(0u32.into(), b"handshake refused");
                Err(Error::broker(ApiKey::ApiVersions, r.error))
            }
            _ => Err(Error::UnexpectedResponse {
                api: ApiKey::ApiVersions,
                addr,
            }),
        }
    }

    /// One call on an established connection, under the request timeout.
    async fn call_on(
        &self,
        conn: &Connection,
        addr: SocketAddr,
        request: &Request,
    ) -> Result<Response> {
        let api = request.api_key();
        let after = self.config().request_timeout;
        let call =
            floe_net::call_client(conn, request, self.correlation_id(), self.config().limits);
        match tokio::time::timeout(after, call).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(floe_net::CallError::Refused(code))) => Err(Error::broker(api, code)),
            Ok(Err(e)) => Err(Error::Call {
                addr,
                source: Arc::new(e),
            }),
            Err(_) => Err(Error::Timeout { api, addr, after }),
        }
    }

    /// One call to `broker` (connecting if needed); no retries.
    pub(crate) async fn call(&self, broker: &BrokerAddr, request: &Request) -> Result<Response> {
        let result = match self.connection(broker).await {
            Ok(conn) => {
                let result = self.call_on(&conn, broker.addr, request).await;
                if let Err(Error::Call { source, .. }) = &result
                    && source.is_retryable()
                    && conn.close_reason().is_some()
                {
                    self.drop_connection(broker.addr, &conn).await;
                }
                result
            }
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => self.broker_answered(broker.addr),
            Err(e) => self.note_failure(e),
        }
        result
    }

    /// Remembers that the broker behind `e` may be gone (if `e` says so), so cluster-wide
    /// requests try the other brokers first.
    pub(crate) fn note_failure(&self, e: &Error) {
        if let Some(addr) = e.unreachable_addr() {
            lock(&self.inner.unreachable).insert(addr);
        }
    }

    /// Forgets an earlier failure of the broker at `addr`.
    pub(crate) fn broker_answered(&self, addr: SocketAddr) {
        let mut unreachable = lock(&self.inner.unreachable);
        if !unreachable.is_empty() {
            unreachable.remove(&addr);
        }
    }

    async fn drop_connection(&self, addr: SocketAddr, conn: &Connection) {
        let slot = self.slot(addr);
        let mut slot = slot.lock().await;
        if slot
            .conn
            .as_ref()
            .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            slot.conn = None;
        }
    }

    /// Every broker address worth trying for a cluster-wide request: known brokers first,
    /// then the bootstrap list; brokers whose last call failed (connection lost, timed out)
    /// after all the others.
    fn any_brokers(&self) -> Vec<BrokerAddr> {
        let mut all = self.read_metadata().broker_addrs();
        for b in &self.inner.bootstrap {
            if !all.iter().any(|a| a.addr == b.addr) {
                all.push(b.clone());
            }
        }
        let unreachable = lock(&self.inner.unreachable);
        all.sort_by_key(|b| unreachable.contains(&b.addr));
        all
    }

    /// One call to any reachable broker: each known address in turn until one answers.
    pub(crate) async fn call_any_once(&self, request: &Request) -> Result<Response> {
        self.call_any_once_from(request).await.map(|(_, r)| r)
    }

    /// [`call_any_once`](Self::call_any_once), and which broker answered.
    pub(crate) async fn call_any_once_from(
        &self,
        request: &Request,
    ) -> Result<(BrokerAddr, Response)> {
        let brokers = self.any_brokers();
        let tried = brokers.len();
        let mut last = None;
        for broker in brokers {
            match self.call(&broker, request).await {
                Ok(r) => return Ok((broker, r)),
                Err(e) if e.is_retryable() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(Error::NoBrokerAvailable { tried }))
    }

    /// Runs `op` until it succeeds, fails fatally, or the configured retries run out,
    /// sleeping an exponential backoff between attempts and refreshing metadata when the
    /// error says it is stale.
    pub(crate) async fn with_retries<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut attempt = 0u32;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt < self.config().retries => {
                    tracing::debug!(error = %e, attempt, "retrying");
                    let cfg = self.config();
                    let wait =
                        Config::backoff(cfg.retry_backoff, cfg.reconnect_backoff_max, attempt);
                    tokio::time::sleep(wait).await;
                    if e.needs_metadata() {
                        let topics = self.cached_topics();
                        let _ = self.refresh_metadata(Some(topics)).await;
                    }
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A cluster-wide request (metadata, admin) with retries.
    pub(crate) async fn call_any(&self, request: &Request) -> Result<Response> {
        self.with_retries(|| self.call_any_once(request)).await
    }

    /// Fetches metadata for `topics` (`None` = all) and updates the cache. Concurrent
    /// refreshes share one request.
    pub(crate) async fn refresh_metadata(&self, topics: Option<Vec<String>>) -> Result<()> {
        let waiting_since = self.inner.refresh_tickets.load(Ordering::Acquire);
        let mut last = self.inner.refresh.lock().await;
        if last.ticket > waiting_since && last.covers(&topics) {
            // A refresh that began after this caller asked has just covered its topics.
            return Ok(());
        }
        let ticket = self.inner.refresh_tickets.fetch_add(1, Ordering::AcqRel) + 1;
        let request = Request::from(MetadataRequest {
            topics: topics.clone(),
        });
        let (from, response) = self.call_any_once_from(&request).await?;
        let Response::Metadata(response) = response else {
            return Err(Error::UnexpectedResponse {
                api: ApiKey::Metadata,
                addr: from.addr,
            });
        };
        self.apply_metadata(response).await;
        self.ask_replicas_for_leaders(topics.as_deref(), from.addr)
            .await;
        *last = LastRefresh { ticket, topics };
        Ok(())
    }

    /// A broker that hosts no replica of a partition cannot tell who leads it (until the
    /// controller tracks leaders, each broker knows only the partitions it hosts): ask the
    /// partition's replicas instead, once each, and take the leaders they know.
    async fn ask_replicas_for_leaders(&self, topics: Option<&[String]>, asked: SocketAddr) {
        let ask = self.read_metadata().replicas_to_ask(topics, asked);
        for (broker, topics) in ask {
            let request = Request::from(MetadataRequest {
                topics: Some(topics),
            });
            match self.call(&broker, &request).await {
                Ok(Response::Metadata(m)) => self.write_metadata().merge_leaders(&m),
                Ok(_) => {}
                Err(e) => tracing::debug!(addr = %broker.addr, error = %e, "replica metadata"),
            }
        }
    }

    /// Broker `id`'s address, if the metadata knows it.
    pub(crate) fn broker_addr(&self, id: u64) -> Option<BrokerAddr> {
        self.read_metadata().broker(id)
    }

    async fn apply_metadata(&self, response: MetadataResponse) {
        let mut brokers = HashMap::new();
        for b in &response.brokers {
            let address = if b.host.contains(':') {
                format!("[{}]:{}", b.host, b.port)
            } else {
                format!("{}:{}", b.host, b.port)
            };
            match resolve(&address).await {
                Ok((host, addrs)) => {
                    let server_name = self.inner.server_name.clone().unwrap_or(host);
                    brokers.insert(
                        b.node_id,
                        BrokerAddr {
                            addr: addrs[0],
                            server_name,
                        },
                    );
                }
                Err(e) => tracing::warn!(node = b.node_id, error = %e, "broker address"),
            }
        }
        self.write_metadata().apply(response, brokers);
    }

    /// `tp`'s leader and its address, refreshing metadata once if it is not cached.
    pub(crate) async fn leader_addr(&self, tp: &TopicPartition) -> Result<(u64, BrokerAddr)> {
        if let Some(found) = self.read_metadata().leader(&tp.topic, tp.partition) {
            return Ok(found);
        }
        self.refresh_metadata(Some(vec![tp.topic.clone()])).await?;
        let meta = self.read_metadata();
        match meta.partition_count(&tp.topic) {
            None => Err(Error::UnknownTopic {
                topic: tp.topic.clone(),
            }),
            Some(n) if tp.partition >= n => Err(Error::UnknownPartition {
                topic: tp.topic.clone(),
                partition: tp.partition,
                partitions: n,
            }),
            Some(_) => {
                meta.leader(&tp.topic, tp.partition)
                    .ok_or_else(|| Error::LeaderNotAvailable {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                    })
            }
        }
    }

    /// The cached leader of `tp`, without any I/O.
    pub(crate) fn cached_leader(&self, topic: &str, partition: u32) -> Option<(u64, BrokerAddr)> {
        self.read_metadata().leader(topic, partition)
    }

    /// Forgets `tp`'s leader after a `NotLeader` answer; `hint` is the new leader the broker
    /// named, if any.
    pub(crate) fn leader_moved(&self, topic: &str, partition: u32, hint: Option<u64>) {
        self.write_metadata().leader_moved(topic, partition, hint);
    }

    /// Sends `request` for one partition to its leader, retrying (with fresh metadata) on
    /// retryable errors. `check` turns a response into the result or the partition's error.
    pub(crate) async fn call_leader<T>(
        &self,
        tp: &TopicPartition,
        request: &Request,
        check: impl Fn(Response) -> Result<T>,
    ) -> Result<T> {
        self.with_retries(|| async {
            let (_, broker) = self.leader_addr(tp).await?;
            let result = self.call(&broker, request).await.and_then(&check);
            if let Err(e) = &result
                && e.needs_leader_refresh()
            {
                // The leader moved or may be gone: forget it, so the next attempt (after
                // the backoff) asks another broker for fresh metadata.
                self.leader_moved(&tp.topic, tp.partition, None);
            }
            result
        })
        .await
    }

    /// Turns a per-item error code into a result.
    pub(crate) fn check_code(
        api: ApiKey,
        code: ErrorCode,
        topic: &str,
        partition: Option<u32>,
    ) -> Result<()> {
        if code.is_ok() {
            Ok(())
        } else {
            Err(Error::Broker {
                code,
                api,
                topic: Some(topic.to_string()),
                partition,
                message: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = |n| Config::backoff(Duration::from_millis(50), Duration::from_secs(2), n);
        assert_eq!(b(0), Duration::from_millis(50));
        assert_eq!(b(1), Duration::from_millis(100));
        assert_eq!(b(3), Duration::from_millis(400));
        assert_eq!(b(10), Duration::from_secs(2));
        assert_eq!(b(u32::MAX), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn resolve_accepts_ip_and_names() {
        let (host, addrs) = resolve("127.0.0.1:9092").await.unwrap();
        assert_eq!((host.as_str(), addrs[0].port()), ("127.0.0.1", 9092));
        let (host, addrs) = resolve("localhost:9093").await.unwrap();
        assert_eq!((host.as_str(), addrs[0].port()), ("localhost", 9093));
        assert!(matches!(
            resolve("no-port").await,
            Err(Error::Resolve { reason: None, .. })
        ));
        assert!(matches!(
            resolve("host:notaport").await,
            Err(Error::Resolve { .. })
        ));
    }

    #[test]
    fn every_used_api_needs_a_common_version() {
        let all: Vec<ApiVersionRange> = ApiKey::ALL
            .iter()
            .map(|k| ApiVersionRange {
                api_key: *k as u16,
                min_version: 1,
                max_version: 3,
            })
            .collect();
        assert_eq!(unsupported_api(&all), None);
        assert!(subscribe_supported(&all));
        let mut without_produce = all.clone();
        without_produce.retain(|r| r.api_key != ApiKey::Produce as u16);
        assert_eq!(unsupported_api(&without_produce), Some(ApiKey::Produce));
        // Without subscriptions, fetch will do; without both, nothing can read.
        let mut without_subscribe = all.clone();
        without_subscribe.retain(|r| r.api_key != ApiKey::SubscribeCredit as u16);
        assert_eq!(unsupported_api(&without_subscribe), None);
        assert!(!subscribe_supported(&without_subscribe));
        without_subscribe.retain(|r| r.api_key != ApiKey::Fetch as u16);
        assert_eq!(unsupported_api(&without_subscribe), Some(ApiKey::Subscribe));
        let mut too_new = all;
        too_new[ApiKey::Metadata as usize].min_version = 2;
        assert_eq!(unsupported_api(&too_new), Some(ApiKey::Metadata));
    }

    #[test]
    fn ca_pem_rejects_garbage() {
        assert!(matches!(
            parse_ca_pem(b"not pem"),
            Err(Error::Config {
                field: "ca_pem",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn builder_needs_brokers_and_ca() {
        let e = Client::builder().build().await.unwrap_err();
        assert!(matches!(
            e,
            Error::Config {
                field: "brokers",
                ..
            }
        ));
        let e = Client::builder()
            .brokers(["127.0.0.1:1"])
            .build()
            .await
            .unwrap_err();
        assert!(matches!(
            e,
            Error::Config {
                field: "ca_cert",
                ..
            }
        ));
    }
}
