#!/usr/bin/env bash
# A local three-node floe cluster on loopback, on defaults, in one command (until `floe dev`
# exists). Builds floe, makes a cluster CA and node certificates, writes a static topic table
# (topic "orders": 3 partitions x 3 replicas), starts three `floe serve` nodes and prints how to
# reach them. Ctrl-C stops the nodes (gracefully). Data and certificates stay in --data-dir.
#   bash scripts/dev-cluster.sh [--data-dir DIR]     (default: /tmp/floe-dev)
set -euo pipefail
cd "$(dirname "$0")/.."

dir=/tmp/floe-dev
if [[ "${1:-}" == "--data-dir" && -n "${2:-}" ]]; then dir="$2"; fi
mkdir -p "$dir"
cargo build --release --quiet -p floe-broker -p floe-client --bins --examples
floe=target/release/floe

if [[ ! -f "$dir/ca/ca.pem" ]]; then
  "$floe" cert init --out "$dir/ca" >/dev/null
  for n in 1 2 3; do
    "$floe" cert issue --ca "$dir/ca" --name "node-$n" --out "$dir/ca" --ip 127.0.0.1 >/dev/null
  done
fi

cat > "$dir/topics.toml" <<'TOML'
[[broker]]
id = 1
client-addr = "127.0.0.1:7410"
[[broker]]
id = 2
client-addr = "127.0.0.1:7420"
[[broker]]
id = 3
client-addr = "127.0.0.1:7430"

[[topic]]
name = "orders"
partitions = 3
replication-factor = 3
TOML

pids=()
stop() {
  trap - INT TERM EXIT
  echo "stopping the nodes..."
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

for n in 1 2 3; do
  "$floe" serve --node-id "$n" --data-dir "$dir/node-$n" \
    --client-addr "127.0.0.1:74${n}0" --peer-addr "127.0.0.1:74${n}1" --metrics-addr "127.0.0.1:74${n}2" \
    --voters 1@127.0.0.1:7411,2@127.0.0.1:7421,3@127.0.0.1:7431 \
    --tls-cert "$dir/ca/node-$n.pem" --tls-key "$dir/ca/node-$n.key" --ca-cert "$dir/ca/ca.pem" \
    --topics "$dir/topics.toml" >"$dir/node-$n.log" 2>&1 &
  pids+=("$!")
done

sleep 1
for n in 1 2 3; do
  if ! kill -0 "${pids[$((n - 1))]}" 2>/dev/null; then
    echo "node $n failed to start:" >&2
    cat "$dir/node-$n.log" >&2
    exit 1
  fi
done

cat <<INFO
floe: 3 nodes up (logs in $dir/node-N.log, data in $dir/node-N)
  brokers:  127.0.0.1:7410,127.0.0.1:7420,127.0.0.1:7430
  CA:       $dir/ca/ca.pem
  topic:    orders (3 partitions x 3 replicas, acks=all, fsync always)
try, in another shell:
  export FLOE_BROKERS=127.0.0.1:7410,127.0.0.1:7420,127.0.0.1:7430 FLOE_CA_CERT=$dir/ca/ca.pem
  target/release/examples/producer orders 100000
  target/release/examples/consumer orders 100000
Ctrl-C stops the cluster.
INFO
wait "${pids[@]}"
