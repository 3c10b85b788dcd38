#!/usr/bin/env bash
# Real local infrastructure for development and CI, where no Docker engine runs:
# a single-node Apache Kafka broker (KRaft) from the official jars on Maven Central, and FerretDB
# (MongoDB wire protocol over SQLite) built from its Go module. Both are cached outside the
# repository, so only the first run downloads and builds; later runs start in seconds.
#
#   infra.sh up       install what is missing, start what is not running, wait until it answers
#   infra.sh down     stop both
#   infra.sh status   say what runs where
#
# When PARKDESK_KAFKA_BOOTSTRAP_SERVERS / PARKDESK_MONGODB_URL are set, that part is external:
# nothing local is installed or started for it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${PARKDESK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/parkdesk}
state=$cache/state
kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka-pom.xml")
kafka_home=$cache/kafka-$kafka_version
kafka_port=${PARKDESK_LOCAL_KAFKA_PORT:-19092}
controller_port=$((kafka_port + 1))
ferretdb_version=v1.24.2
# The build carries the patch's digest: a binary built without it, or with an older one, is
# rebuilt rather than reused.
ferretdb_patch=$here/ferretdb-sqlite-id-index.patch
ferretdb_build=$ferretdb_version-$(sha256sum "$ferretdb_patch" | cut -c1-12)
ferretdb_bin=$cache/bin/ferretdb-$ferretdb_build
mongodb_port=${PARKDESK_LOCAL_MONGODB_PORT:-27027}

say() { printf '[infra] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

is_running() { # pidfile
  [[ -f $1 ]] || return 1
  local pid
  pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null || return 1
  # A killed server whose parent never reaps it stays a zombie: not running.
  ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}

port_open() { # port
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

install_kafka() {
  [[ -f $kafka_home/.complete ]] && return
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch Apache Kafka from Maven Central"
  command -v java >/dev/null || die "Java 17 or newer is needed to run Apache Kafka"
  say "downloading Apache Kafka $kafka_version jars from Maven Central (first run only)..."
  rm -rf "$kafka_home.partial"
  mvn -B -ntp -f "$here/kafka-pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$kafka_home.partial/libs" -DincludeScope=runtime >"$cache/maven.log" 2>&1 \
    || { tail -30 "$cache/maven.log" >&2; die "Maven could not fetch Kafka (log: $cache/maven.log)"; }
  rm -rf "$kafka_home" && mv "$kafka_home.partial" "$kafka_home"
  touch "$kafka_home/.complete"
  say "Apache Kafka $kafka_version installed in $kafka_home ($(ls "$kafka_home/libs" | wc -l) jars)"
}

install_ferretdb() {
  [[ -x $ferretdb_bin ]] && return
  command -v go >/dev/null || die "Go is needed to build FerretDB"
  say "building FerretDB $ferretdb_version, patched, from its Go module (first run only, a few minutes)..."
  local module_dir build_dir
  module_dir=$(go mod download -json "github.com/FerretDB/FerretDB@$ferretdb_version" \
    | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  [[ -d $module_dir ]] || die "go could not download FerretDB $ferretdb_version"
  # The module as published lacks build/version/version.txt, which FerretDB's own build
  # generates from git (`task gen-version`); without it the binary refuses to start. Build the
  # unchanged source from a copy that has the file, as `go install` would otherwise.
  build_dir=$(mktemp -d)
  cp -r "$module_dir/." "$build_dir" && chmod -R u+w "$build_dir"
  echo "$ferretdb_version" >"$build_dir/build/version/version.txt"
  # Its SQLite backend scans a whole table for every lookup by `_id`: the patch's header says why.
  (cd "$build_dir" && git apply "$ferretdb_patch") || die "the FerretDB patch does not apply"
  mkdir -p "$cache/bin"
  (cd "$build_dir" && CGO_ENABLED=0 go build -trimpath -o "$ferretdb_bin.partial" ./cmd/ferretdb) \
    || die "building FerretDB failed"
  mv "$ferretdb_bin.partial" "$ferretdb_bin"
  rm -rf "$build_dir"
  say "FerretDB $ferretdb_build built: $ferretdb_bin"
}

write_kafka_config() {
  mkdir -p "$state/kafka"
  cat >"$state/kafka/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$kafka_port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$kafka_port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$state/kafka/data
# Topics are created by the project with their partitions set on purpose.
auto.create.topics.enable=false
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# One node: a new consumer group need not wait for more members to join.
group.initial.rebalance.delay.ms=0
EOF
  cat >"$state/kafka/log4j2.properties" <<EOF
rootLogger.level=WARN
rootLogger.appenderRef.stdout.ref=STDOUT
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
logger.server.name=kafka.server.KafkaRaftServer
logger.server.level=INFO
EOF
}

# Whether a local server must be started: not when an external one is configured, nor when
# ours runs already; refuses to start over a port another program holds.
needs_start() { # name external-address pidfile port port-variable
  local name=$1 external=$2 pidfile=$3 port=$4 port_variable=$5
  if [[ -n $external ]]; then
    say "$name: external, nothing local to start"
    return 1
  fi
  if is_running "$pidfile"; then
    say "$name: already running on 127.0.0.1:$port"
    return 1
  fi
  port_open "$port" && die "port $port is taken by another program (set $port_variable)"
  return 0
}

start_kafka() {
  local pidfile=$state/kafka/pid
  needs_start Kafka "${PARKDESK_KAFKA_BOOTSTRAP_SERVERS:-}" "$pidfile" "$kafka_port" \
    PARKDESK_LOCAL_KAFKA_PORT || return 0
  install_kafka
  write_kafka_config
  local java_opts=(-Xms256m -Xmx768m -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$state/kafka/log4j2.properties")
  if [[ ! -f $state/kafka/data/meta.properties ]]; then
    local cluster_id
    cluster_id=$(java -cp "$kafka_home/libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
    java "${java_opts[@]}" -cp "$kafka_home/libs/*" kafka.tools.StorageTool format \
      --cluster-id "$cluster_id" --config "$state/kafka/server.properties" >"$state/kafka/format.log" 2>&1 \
      || { cat "$state/kafka/format.log" >&2; die "formatting Kafka's storage failed"; }
  fi
  say "Kafka: starting $kafka_version (KRaft, single node) on 127.0.0.1:$kafka_port..."
  : >"$state/kafka/kafka.log"
  setsid nohup java "${java_opts[@]}" -cp "$kafka_home/libs/*" kafka.Kafka \
    "$state/kafka/server.properties" >>"$state/kafka/kafka.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  local deadline=$((SECONDS + 90))
  until grep -q "Kafka Server started" "$state/kafka/kafka.log" && port_open "$kafka_port"; do
    is_running "$pidfile" || { tail -30 "$state/kafka/kafka.log" >&2; die "Kafka exited"; }
    ((SECONDS < deadline)) || { tail -30 "$state/kafka/kafka.log" >&2; die "Kafka did not start in 90 s"; }
    sleep 0.5
  done
  say "Kafka: ready"
}

start_ferretdb() {
  local pidfile=$state/ferretdb/pid
  # One started from an earlier build (before the patch changed) is replaced, not kept.
  if is_running "$pidfile" && [[ $(readlink "/proc/$(cat "$pidfile")/exe") != "$ferretdb_bin" ]]; then
    say "FerretDB: the one running is another build; restarting it"
    stop FerretDB "$pidfile"
  fi
  needs_start FerretDB "${PARKDESK_MONGODB_URL:-}" "$pidfile" "$mongodb_port" \
    PARKDESK_LOCAL_MONGODB_PORT || return 0
  install_ferretdb
  mkdir -p "$state/ferretdb/data"
  say "FerretDB: starting $ferretdb_build (SQLite backend) on 127.0.0.1:$mongodb_port..."
  # FerretDB turns every document it reads into Go objects and back, so Go's garbage collector
  # is a large share of a big read: sla's rebuild of 300,000 clocks took 9.8 s with Go's
  # defaults and 7.8 s collecting less often (GOGC 400), under a 1 GiB soft memory limit.
  # SQLite in WAL mode with synchronous=NORMAL syncs at checkpoints, not at every commit: a
  # killed FerretDB loses nothing, a machine that loses power may lose the last commits. That is
  # the trade for a development and CI store (an insert took 3.0 ms with FULL, 1.5 ms without);
  # PARKDESK_FERRETDB_SYNCHRONOUS=full syncs every commit.
  local synchronous=${PARKDESK_FERRETDB_SYNCHRONOUS:-normal}
  GOGC="${PARKDESK_FERRETDB_GOGC:-400}" GOMEMLIMIT="${PARKDESK_FERRETDB_GOMEMLIMIT:-1GiB}" \
    setsid nohup "$ferretdb_bin" \
    --listen-addr="127.0.0.1:$mongodb_port" \
    --handler=sqlite --sqlite-url="file:$state/ferretdb/data/?_pragma=synchronous($synchronous)" \
    --state-dir="$state/ferretdb" \
    --debug-addr=- --telemetry=disable --log-level=warn \
    >"$state/ferretdb/ferretdb.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  local deadline=$((SECONDS + 30))
  until port_open "$mongodb_port"; do
    is_running "$pidfile" || { tail -30 "$state/ferretdb/ferretdb.log" >&2; die "FerretDB exited"; }
    ((SECONDS < deadline)) || die "FerretDB did not start in 30 s"
    sleep 0.2
  done
  say "FerretDB: ready"
}

stop() { # name pidfile
  local name=$1 pidfile=$2
  if ! is_running "$pidfile"; then
    rm -f "$pidfile"
    return
  fi
  local pid
  pid=$(cat "$pidfile")
  say "$name: stopping (pid $pid)..."
  kill -TERM "$pid"
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      say "$name: did not stop in 30 s, killing"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    sleep 0.2
  done
  rm -f "$pidfile"
  say "$name: stopped"
}

status() {
  local pidfile
  for pidfile in "$state/kafka/pid" "$state/ferretdb/pid"; do
    if is_running "$pidfile"; then
      say "$(basename "$(dirname "$pidfile")"): running (pid $(cat "$pidfile"))"
    else
      say "$(basename "$(dirname "$pidfile")"): stopped"
    fi
  done
}

mkdir -p "$state"
case ${1:-} in
  up)
    start_kafka
    start_ferretdb
    ;;
  down)
    stop Kafka "$state/kafka/pid"
    stop FerretDB "$state/ferretdb/pid"
    ;;
  status) status ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
