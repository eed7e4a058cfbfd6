#!/usr/bin/env bash
# `make demo`: a Vault simulator with TLS, Transit + AppRole configured through Vault's own
# HTTP API (the same calls work against a real Vault), vault-kms started against it, and
# kube-apiserver's calls played by kms-client: Status, Encrypt, Decrypt, a key rotation.
# Seeds are shown by their SHA-256 fingerprint only; nothing secret is printed.
set -euo pipefail

BUILD=${1:-build}
BUILD=$(cd "$BUILD" && pwd)
work=$(mktemp -d /tmp/vault-kms-demo.XXXXXX)
chmod 755 "$work"
sim_pid="" broker_pid=""

cleanup() {
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null || true
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
say() { printf '    %s\n' "$*"; }
jget() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
die() { printf 'demo failed: %s\n' "$*" >&2; [ -f "$work/plugin.log" ] && tail -20 "$work/plugin.log" >&2; exit 1; }

step "Starting the Vault simulator (TLS, throwaway CA)"
"$BUILD/vaultsim" --listen 127.0.0.1:0 --tls-dir "$work/tls" --root-token demo-root-token \
  >"$work/sim.json" 2>"$work/sim.err" &
sim_pid=$!
for _ in $(seq 100); do [ -s "$work/sim.json" ] && break; sleep 0.1; done
[ -s "$work/sim.json" ] || die "the simulator did not start: $(cat "$work/sim.err")"
ADDR=$(jget 'd["addr"]' <"$work/sim.json")
CA=$(jget 'd["ca_file"]' <"$work/sim.json")
ROOT=$(jget 'd["root_token"]' <"$work/sim.json")
say "Vault at $ADDR, CA $CA"

vault() {  # vault METHOD PATH [JSON]
  local out
  out=$(curl -sS --fail-with-body --cacert "$CA" -H "X-Vault-Token: $ROOT" -X "$1" "$ADDR/v1/$2" \
    ${3:+-H 'Content-Type: application/json' -d "$3"}) || die "vault $1 $2: $out"
  printf '%s' "$out"
}

step "Configuring Vault: transit engine, aes256-gcm96 key 'kms', AppRole with the minimal policy"
vault POST sys/mounts/transit '{"type":"transit"}' >/dev/null
vault POST transit/keys/kms '{"type":"aes256-gcm96"}' >/dev/null
vault POST sys/auth/approle '{"type":"approle"}' >/dev/null
policy=$(python3 -c 'import json,sys; print(json.dumps({"policy": open(sys.argv[1]).read()}))' \
  deploy/vault/kms-policy.hcl)
vault PUT sys/policies/acl/vault-kms "$policy" >/dev/null
vault POST auth/approle/role/vault-kms \
  '{"token_policies":["vault-kms"],"token_ttl":"1h","token_max_ttl":"24h","secret_id_ttl":"0"}' >/dev/null
mkdir -p "$work/creds" "$work/run"
# The socket's directory stays root's and writable by root alone: the broker refuses one that
# another uid could change (SECURITY.md, "Root following a path another uid controls").
chmod 755 "$work/creds" "$work/run"
vault GET auth/approle/role/vault-kms/role-id | jget 'd["data"]["role_id"]' >"$work/creds/role-id"
vault POST auth/approle/role/vault-kms/secret-id '{}' | jget 'd["data"]["secret_id"]' >"$work/creds/secret-id"
cp "$CA" "$work/creds/ca.pem" && chmod 644 "$work/creds/ca.pem"
chmod 400 "$work/creds/role-id" "$work/creds/secret-id"
if [ "$(id -u)" = 0 ]; then
  # As in production: the credential files belong to the broker user, mode 0400.
  chown 65532:65532 "$work/creds/role-id" "$work/creds/secret-id"
fi
say "policy: $(grep -c '^path' deploy/vault/kms-policy.hcl) paths (deploy/vault/kms-policy.hcl)"
say "role-id and secret-id written to $work/creds (mode 0400)"

step "Starting vault-kms-broker (it starts the confined frontend itself)"
SOCK="$work/run/kms.sock"
"$BUILD/vault-kms-broker" --socket "unix://$SOCK" --vault-addr "$ADDR" \
  --vault-ca-file "$work/creds/ca.pem" \
  --approle-role-id-file "$work/creds/role-id" --approle-secret-id-file "$work/creds/secret-id" \
  --key-refresh-interval 1s --metrics-listen 127.0.0.1:0 --log-level info 2>"$work/plugin.log" &
broker_pid=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || die "the socket did not appear"
fe_pid=$(cat "/proc/$broker_pid/task/$broker_pid/children" 2>/dev/null | awk '{print $1}')
say "broker pid $broker_pid (uid $(awk '/^Uid/{print $2}' /proc/$broker_pid/status)), frontend pid $fe_pid (uid $(awk '/^Uid/{print $2}' /proc/$fe_pid/status))"
say "socket $SOCK"

kms() { "$BUILD/kms-client" --socket "$SOCK" "$@"; }

step "kube-apiserver → Status"
for _ in $(seq 50); do
  st=$(kms status) || true
  [ "$(printf '%s' "$st" | jget 'd.get("healthz")')" = ok ] && break
  sleep 0.1
done
say "$st"
key1=$(printf '%s' "$st" | jget 'd["key_id"]')
[ "$(printf '%s' "$st" | jget 'd["healthz"]')" = ok ] || die "plugin not healthy"

step "kube-apiserver → Encrypt a random 32-byte DEK seed"
enc1=$(kms encrypt-seed "$work/seed1") || die "$enc1"
ct1=$(printf '%s' "$enc1" | jget 'd["ciphertext"]')
say "seed $(printf '%s' "$enc1" | jget 'd["seed"]') → $(printf '%s' "$enc1" | jget 'd["ciphertext_bytes"]') bytes of ciphertext, prefix ${ct1:0:9}…"
say "key_id $(printf '%s' "$enc1" | jget 'd["key_id"]')"

step "kube-apiserver → Decrypt it back"
dec1=$(kms decrypt "$ct1" "$key1") || die "$dec1"
say "plaintext $(printf '%s' "$dec1" | jget 'd["plaintext"]') (seed was $(kms fingerprint "$work/seed1"))"

step "Operator rotates the transit key in Vault"
vault POST transit/keys/kms/rotate '{}' | jget '"latest_version is now %d" % d["data"]["latest_version"]' | sed 's/^/    /'

step "Waiting for the plugin to report the new key_id (refresh interval 1s)"
key2=$key1
for _ in $(seq 100); do
  key2=$(kms status | jget 'd["key_id"]')
  [ "$key2" != "$key1" ] && break
  sleep 0.1
done
[ "$key2" != "$key1" ] || die "key_id did not change"
say "old key_id $key1"
say "new key_id $key2"

step "kube-apiserver → Encrypt a new seed (pinned to the new version)"
enc2=$(kms encrypt-seed "$work/seed2") || die "$enc2"
ct2=$(printf '%s' "$enc2" | jget 'd["ciphertext"]')
say "prefix ${ct2:0:9}…, key_id $(printf '%s' "$enc2" | jget 'd["key_id"]')"

step "kube-apiserver → Decrypt both seeds (old and new key versions)"
say "seed 1: $(kms decrypt "$ct1" "$key1" | jget 'd["plaintext"]') (expected $(kms fingerprint "$work/seed1"))"
say "seed 2: $(kms decrypt "$ct2" "$key2" | jget 'd["plaintext"]') (expected $(kms fingerprint "$work/seed2"))"
[ "$(kms decrypt "$ct1" "$key1" | jget 'd["plaintext"]')" = "$(kms fingerprint "$work/seed1")" ] || die "seed 1 mismatch"
[ "$(kms decrypt "$ct2" "$key2" | jget 'd["plaintext"]')" = "$(kms fingerprint "$work/seed2")" ] || die "seed 2 mismatch"

step "Stopping vault-kms (SIGTERM) and the simulator"
kill "$broker_pid"
wait "$broker_pid" && rc=0 || rc=$?
broker_pid=""
[ "$rc" = 0 ] || die "the broker exited with status $rc"
if [ -e "$SOCK" ]; then
  # Its directory is root's and the broker no longer runs as root: the next start removes it.
  kms status >/dev/null 2>&1 && die "the socket still answers after the broker stopped"
  say "broker exited with status 0; the socket file stays for the next start to remove, and nothing answers on it"
else
  say "broker exited with status 0; socket removed"
fi
say "last plugin log lines:"
tail -3 "$work/plugin.log" | sed 's/^/      /'
printf '\nDemo complete.\n'
