#!/usr/bin/env bash
# The validators that check deploy/ where no container engine or cluster runs: kustomize,
# kubeconform, promtool, compose-config (the compose-go loader behind `docker compose config`),
# and KEDA's ScaledObject schema. Built with the machine's Go into the cache, at pinned versions;
# only the first run builds (promtool takes a few minutes), later runs return at once.
#
#   install.sh        prints the directory that holds them
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${PARKDESK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/parkdesk}
tools=$cache/deploy-tools
mkdir -p "$tools/bin"

kustomize_version=v5.7.1
kubeconform_version=v0.8.0
prometheus_version=v0.316.0 # the Go module version of Prometheus 3.x's promtool
keda_version=v2.18.0

say() { printf '[deploy-tools] %s\n' "$*" >&2; }
command -v go >/dev/null || { say "error: Go is needed to build the deployment validators"; exit 1; }

go_install() { # name module@version
  local stamp=$tools/bin/.$1-${2##*@}
  [[ -f $stamp && -x $tools/bin/$1 ]] && return
  say "building $1 ${2##*@}..."
  GOBIN=$tools/bin GOFLAGS= go install "$2"
  touch "$stamp"
}

compose_config() {
  local stamp=$tools/bin/.compose-config-$(sha256sum "$here/compose-config/go.sum" "$here/compose-config/main.go" | sha256sum | cut -c1-12)
  [[ -f $stamp && -x $tools/bin/compose-config ]] && return
  say "building compose-config..."
  (cd "$here/compose-config" && go build -o "$tools/bin/compose-config" .)
  touch "$stamp"
}

keda_schema() {
  local target=$tools/crds/keda-$keda_version/keda.sh_scaledobjects.yaml
  [[ -f $target ]] && return
  say "fetching KEDA $keda_version's ScaledObject definition from the Go module proxy..."
  local dir
  dir=$(go mod download -json "github.com/kedacore/keda/v2@$keda_version" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  mkdir -p "$(dirname "$target")"
  cp "$dir/config/crd/bases/keda.sh_scaledobjects.yaml" "$target"
}

# Independent builds: side by side, so a fresh machine waits for the slowest (promtool) only.
pids=()
go_install kustomize "sigs.k8s.io/kustomize/kustomize/v5@$kustomize_version" & pids+=($!)
go_install kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$kubeconform_version" & pids+=($!)
go_install promtool "github.com/prometheus/prometheus/cmd/promtool@$prometheus_version" & pids+=($!)
compose_config & pids+=($!)
keda_schema & pids+=($!)
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
[[ $status == 0 ]] || { say "error: a validator failed to build"; exit 1; }
echo "$tools"
