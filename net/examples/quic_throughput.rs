//! One QUIC connection on loopback, one stream, N MiB of 1 MiB frames from client to server:
//! a quick check of the transport tuning. Run with
//! `cargo run --release -p floe-net --example quic_throughput -- [MiB] [loopback|default]`.

use std::time::Instant;

use bytes::Bytes;
use floe_net::{CaCerts, Endpoint, EndpointOptions, Identity};
use floe_protocol::FrameLimits;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(Ok(512), |a| a.parse())?;
    let options = match args.next().as_deref() {
        None | Some("loopback") => EndpointOptions::loopback(),
        Some("default") => EndpointOptions::default(),
        Some(other) => return Err(format!("unknown preset {other}").into()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(mib, options))
}

async fn run(mib: usize, options: EndpointOptions) -> Result<(), Box<dyn std::error::Error>> {
    // Throwaway certificates in memory.
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate()?;
    let cert =
        rcgen::CertificateParams::new(vec!["bench".to_string()])?.signed_by(&key, &issuer)?;
    let identity = Identity::from_der(
        vec![cert.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    );
    let ca = CaCerts::from_der(vec![ca_cert.der().clone()])?;

    let server = Endpoint::client_listener("127.0.0.1:0".parse()?, &identity, &options)?;
    let addr = server.local_addr()?;
    println!("socket buffers: {:?}", server.socket_buffers());
    let receiver = tokio::spawn(async move {
        let incoming = server.accept().await.expect("a connection");
        let conn = server.establish(incoming).await.expect("handshake");
        let recv = conn.accept_uni().await.expect("a stream");
        let mut reader = floe_net::FrameReader::new(recv, FrameLimits::default());
        let mut bytes = 0usize;
        while let Some(frame) = reader.read_frame().await.expect("a frame") {
            bytes += frame.len();
        }
        (bytes, conn.stats())
    });

    let client = Endpoint::client("127.0.0.1:0".parse()?, &ca, &options)?;
    let conn = client.connect(addr, "bench").await?;
    let mut frame = vec![0u8; 1 << 20];
    frame[..4].copy_from_slice(&((1u32 << 20) - 4).to_le_bytes());
    let frame = Bytes::from(frame);
    let start = Instant::now();
    let mut writer = floe_net::open_frame_stream(&conn).await?;
    for _ in 0..mib {
        writer.write_frame(&mut [frame.clone()]).await?;
    }
    writer.finish()?;
    let (bytes, stats) = receiver.await?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{} MiB in {seconds:.2} s: {:.0} MB/s, mtu {}, {} datagrams received, {} lost packets",
        bytes >> 20,
        bytes as f64 / seconds / 1e6,
        stats.path.current_mtu,
        stats.udp_rx.datagrams,
        conn.stats().path.lost_packets,
    );
    Ok(())
}
