//! The network nemesis: a userspace UDP proxy on every directed peer link.
//!
//! Node `i` reaches node `j` at the proxy of link `i→j` (its `--voters` say so), which forwards
//! datagrams to `j`'s real peer address and the answers back. Every datagram is judged by the
//! direction it travels (`src→dst` node), so a one-way partition `a↛b` drops `a`'s packets to
//! `b` on both the link `a` dialled and the link `b` dialled. Besides cutting directions, the
//! proxy can drop, duplicate and delay (which reorders) a share of all datagrams: the faults
//! `tc netem` would give, which this machine does not have. QUIC sees real loss and
//! reordering, and the broker's peer connections time out and re-dial as they would.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::rng::Rng;

/// What the network does to datagrams now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Directions `(src, dst)` that drop everything.
    pub cut: BTreeSet<(u64, u64)>,
    /// Share of datagrams dropped (0..1).
    pub drop: f64,
    /// Share of datagrams sent twice.
    pub duplicate: f64,
    /// Datagrams are delayed by up to this many milliseconds (uniform), which reorders them.
    pub delay_max_ms: u64,
}

impl Faults {
    /// Cuts both directions between `a` and every node in `others`.
    pub fn isolate(&mut self, a: u64, others: impl IntoIterator<Item = u64>) {
        for b in others {
            self.cut.insert((a, b));
            self.cut.insert((b, a));
        }
    }
}

struct Shared {
    faults: Faults,
    rng: Rng,
}

/// The proxies of every peer link and the faults they apply.
#[derive(Debug)]
pub struct Network {
    shared: Arc<Mutex<SharedDebug>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// `Shared` behind a Debug that does not print the RNG.
struct SharedDebug(Shared);

impl std::fmt::Debug for SharedDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("faults", &self.0.faults)
            .finish_non_exhaustive()
    }
}

/// What to do with one datagram.
enum Fate {
    Drop,
    Send { copies: usize, delay: Duration },
}

impl Network {
    /// A network with no faults; `seed` drives the random drops, duplicates and delays.
    pub fn new(seed: u64) -> Network {
        Network {
            shared: Arc::new(Mutex::new(SharedDebug(Shared {
                faults: Faults::default(),
                rng: Rng::new(seed ^ 0x006e_6574_776f_726b),
            }))),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// Starts the proxy of link `from→to` (node `from` dialling node `to`, whose real peer
    /// address is `target`) and returns the address `from` should dial. Needs a tokio runtime.
    pub fn link(&self, from: u64, to: u64, target: SocketAddr) -> std::io::Result<SocketAddr> {
        let std_sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
        std_sock.set_nonblocking(true)?;
        let front = Arc::new(UdpSocket::from_std(std_sock)?);
        let addr = front.local_addr()?;
        let shared = self.shared.clone();
        let task = tokio::spawn(run_link(front, from, to, target, shared));
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
        Ok(addr)
    }

    /// Replaces the faults.
    pub fn set(&self, faults: Faults) {
        self.shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .faults = faults;
    }

    /// Heals everything.
    pub fn heal(&self) {
        self.set(Faults::default());
    }

    /// The faults now.
    pub fn faults(&self) -> Faults {
        self.shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .faults
            .clone()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            t.abort();
        }
    }
}

fn fate(shared: &Mutex<SharedDebug>, src: u64, dst: u64) -> Fate {
    let mut g = shared.lock().unwrap_or_else(PoisonError::into_inner);
    let Shared { faults, rng } = &mut g.0;
    if faults.cut.contains(&(src, dst)) || (faults.drop > 0.0 && rng.chance(faults.drop)) {
        return Fate::Drop;
    }
    let copies = if faults.duplicate > 0.0 && rng.chance(faults.duplicate) {
        2
    } else {
        1
    };
    let delay = if faults.delay_max_ms > 0 {
        Duration::from_millis(rng.below(faults.delay_max_ms + 1))
    } else {
        Duration::ZERO
    };
    Fate::Send { copies, delay }
}

/// Sends `data` per its fate: now, or later from a task of its own (so later datagrams may
/// overtake it).
async fn deliver(fate: Fate, sock: &Arc<UdpSocket>, data: &[u8], to: Option<SocketAddr>) {
    let Fate::Send { copies, delay } = fate else {
        return;
    };
    let send = move |sock: Arc<UdpSocket>, data: Vec<u8>| async move {
        for _ in 0..copies {
            // A full socket buffer or an unreachable peer is packet loss: UDP semantics.
            let _ = match to {
                Some(to) => sock.send_to(&data, to).await,
                None => sock.send(&data).await,
            };
        }
    };
    if delay.is_zero() {
        send(sock.clone(), data.to_vec()).await;
    } else {
        let sock = sock.clone();
        let data = data.to_vec();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            send(sock, data).await;
        });
    }
}

async fn run_link(
    front: Arc<UdpSocket>,
    from: u64,
    to: u64,
    target: SocketAddr,
    shared: Arc<Mutex<SharedDebug>>,
) {
    // One upstream socket per source address (a restarted node keeps its peer port, so this
    // is one in practice), each with a task carrying the answers back.
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut back_tasks = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, src)) = front.recv_from(&mut buf).await else {
            // ICMP errors surface as recv errors on some systems; keep serving.
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let up = match upstreams.get(&src) {
            Some(up) => up.clone(),
            None => {
                let Ok(sock) = UdpSocket::bind("127.0.0.1:0").await else {
                    continue;
                };
                if sock.connect(target).await.is_err() {
                    continue;
                }
                let up = Arc::new(sock);
                upstreams.insert(src, up.clone());
                let (front, up2, shared) = (front.clone(), up.clone(), shared.clone());
                back_tasks.push(AbortOnDrop(tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        match up2.recv(&mut buf).await {
                            Ok(n) => {
                                let f = fate(&shared, to, from);
                                deliver(f, &front, &buf[..n], Some(src)).await;
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                        }
                    }
                })));
                up
            }
        };
        let f = fate(&shared, from, to);
        deliver(f, &up, &buf[..n], None).await;
    }
}

/// Aborts the task when the link's task ends (or is aborted).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> (SocketAddr, JoinHandle<()>) {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = sock.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let _ = sock.send_to(&buf[..n], from).await;
            }
        });
        (addr, task)
    }

    async fn ping_within(
        client: &UdpSocket,
        to: SocketAddr,
        msg: &[u8],
        wait: Duration,
    ) -> Option<Vec<u8>> {
        client.send_to(msg, to).await.expect("send");
        let mut buf = [0u8; 1500];
        match tokio::time::timeout(wait, client.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
            _ => None,
        }
    }

    /// A cut link: nothing comes back (waiting long enough for a working one to answer).
    async fn ping(client: &UdpSocket, to: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
        ping_within(client, to, msg, Duration::from_millis(300)).await
    }

    /// A working link answers, on a loaded machine too: a few tries, generous waits, and
    /// stale answers to earlier pings skipped.
    async fn answered(client: &UdpSocket, to: SocketAddr, msg: &[u8]) -> bool {
        for _ in 0..10 {
            if ping_within(client, to, msg, Duration::from_secs(2))
                .await
                .as_deref()
                == Some(msg)
            {
                return true;
            }
        }
        false
    }

    #[tokio::test]
    async fn forwards_both_ways_and_cuts_one_direction_at_a_time() {
        let (server, task) = echo_server().await;
        let net = Network::new(1);
        let proxy = net.link(1, 2, server).expect("link");
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        assert_eq!(
            ping(&client, proxy, b"hi").await.as_deref(),
            Some(&b"hi"[..])
        );

        // 2↛1: requests arrive, answers are lost.
        let mut f = Faults::default();
        f.cut.insert((2, 1));
        net.set(f);
        assert_eq!(ping(&client, proxy, b"lost answer").await, None);
        // 1↛2: requests are lost.
        let mut f = Faults::default();
        f.cut.insert((1, 2));
        net.set(f);
        assert_eq!(ping(&client, proxy, b"lost request").await, None);

        net.heal();
        assert!(
            answered(&client, proxy, b"again").await,
            "a healed link forwards again"
        );
        task.abort();
    }

    #[tokio::test]
    async fn duplicates_when_told() {
        let (server, task) = echo_server().await;
        let net = Network::new(2);
        let proxy = net.link(1, 2, server).expect("link");
        net.set(Faults {
            duplicate: 1.0,
            ..Faults::default()
        });
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        client.send_to(b"x", proxy).await.expect("send");
        // Duplicated on the way there and back: four copies (however slowly they come), and
        // no fifth.
        let mut got = 0;
        let mut buf = [0u8; 16];
        while got < 4 {
            tokio::time::timeout(Duration::from_secs(10), client.recv_from(&mut buf))
                .await
                .expect("a copy within 10 s")
                .expect("recv");
            got += 1;
        }
        let fifth =
            tokio::time::timeout(Duration::from_millis(300), client.recv_from(&mut buf)).await;
        assert!(fifth.is_err(), "exactly four copies");
        task.abort();
    }
}
