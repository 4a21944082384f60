#!/usr/bin/env bash
# cluster.sh starts a local three-node Backplane cluster for trying it out:
#
#   node1  http 127.0.0.1:8080  raft 127.0.0.1:7000  (bootstraps the cluster)
#   node2  http 127.0.0.1:8081  raft 127.0.0.1:7001  (-join 127.0.0.1:8080)
#   node3  http 127.0.0.1:8082  raft 127.0.0.1:7002  (-join 127.0.0.1:8080)
#
# Data lives in ./data/cluster/nodeN, logs in ./data/cluster/nodeN.log. The
# binary is built once into ./bin/backplane. The script waits until every
# node answers 200 on /readyz, prints node1's status, and keeps running until
# Ctrl-C; on exit it stops the nodes it started. Stopping one node by hand
# (kill <pid>) leaves the other two running, to watch a failover.
#
# Usage: scripts/cluster.sh [--clean]
#   --clean   delete ./data/cluster first (a new, empty cluster)
#   READY_TIMEOUT=<seconds> (environment, default 30) bounds the wait for
#   /readyz. Other BACKPLANE_* variables (e.g. BACKPLANE_ADMIN_TOKEN) reach
#   all three nodes; the script's -id, -http, -raft, -data, -join win.
#
# Without --clean an existing ./data/cluster is reused: the nodes restart
# from their state and ignore -join.
set -euo pipefail

usage() { sed -n '2,21s/^# \{0,1\}//p' "$0"; }

clean=0
for arg in "$@"; do
  case "$arg" in
    --clean) clean=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "cluster.sh: unknown argument $arg" >&2; usage >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
bin=./bin/backplane
data=./data/cluster
ready_timeout=${READY_TIMEOUT:-30} # seconds

# Admin endpoints need the token when one is configured through the
# environment (the nodes read BACKPLANE_ADMIN_TOKEN themselves).
auth=()
if [[ -n "${BACKPLANE_ADMIN_TOKEN:-}" ]]; then
  auth=(-H "Authorization: Bearer ${BACKPLANE_ADMIN_TOKEN}")
fi

pids=()
names=()

stop_nodes() {
  trap - EXIT INT TERM
  ((${#pids[@]})) || return 0
  echo "stopping nodes: ${pids[*]}"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # Give each node up to 10 s to shut down cleanly, then kill it.
  local deadline=$((SECONDS + 10))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "node $pid did not stop in time: killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
}
trap stop_nodes EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ((clean)); then
  echo "removing $data"
  rm -rf "$data"
fi
mkdir -p "$data" "$(dirname "$bin")"

echo "building $bin"
go build -o "$bin" ./cmd/node

# start_node NAME HTTP RAFT [extra flags...] starts one node in the background.
start_node() {
  local name=$1 http=$2 raft=$3
  shift 3
  # BACKPLANE_JOIN from the environment would stop node1 from bootstrapping.
  env -u BACKPLANE_JOIN "$bin" -id "$name" -http "$http" -raft "$raft" -data "$data/$name" "$@" \
    >>"$data/$name.log" 2>&1 &
  pids+=("$!")
  names+=("$name")
  echo "started $name (pid $!): http $http, raft $raft, log $data/$name.log"
}

start_node node1 127.0.0.1:8080 127.0.0.1:7000
start_node node2 127.0.0.1:8081 127.0.0.1:7001 -join 127.0.0.1:8080
start_node node3 127.0.0.1:8082 127.0.0.1:7002 -join 127.0.0.1:8080

# Wait until every node is ready, failing early if one exits.
deadline=$((SECONDS + ready_timeout))
for i in 0 1 2; do
  name=${names[$i]} pid=${pids[$i]} port=$((8080 + i))
  until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/readyz" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited; the end of $data/$name.log:" >&2
      tail -n 20 "$data/$name.log" >&2
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      echo "$name is not ready after ${ready_timeout}s; /readyz says:" >&2
      answer=$(curl -sS --max-time 2 "http://127.0.0.1:$port/readyz" 2>&1 || true)
      echo "$answer" >&2
      echo "see $data/$name.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "$name is ready"
done

echo
echo "status of node1 (GET http://127.0.0.1:8080/admin/status):"
status=$(curl -fsS "${auth[@]}" http://127.0.0.1:8080/admin/status)
if command -v python3 >/dev/null; then
  python3 -m json.tool <<<"$status"
else
  echo "$status"
fi

cat <<'EOF'

The cluster is up. Try:
  curl -XPOST localhost:8080/api/v1/hubs/chat -d '{"target":"newMessage","arguments":["hi"]}'
  curl -N 'localhost:8081/v1/hubs/chat/stream?after=0'
Press Ctrl-C to stop the three nodes.
EOF

# Run until Ctrl-C. A node that exits (or that you stop to watch a failover)
# is reported; the script ends once no node is left.
set +e
while ((${#pids[@]})); do
  exited=
  wait -n -p exited "${pids[@]}"
  rc=$?
  [[ -n "$exited" ]] || break
  for i in "${!pids[@]}"; do
    if [[ "${pids[$i]}" == "$exited" ]]; then
      echo "${names[$i]} (pid $exited) exited with status $rc; see $data/${names[$i]}.log" >&2
      unset 'pids[i]' 'names[i]'
    fi
  done
  pids=("${pids[@]}") names=("${names[@]}")
done
echo "no node is left running" >&2
exit 1
