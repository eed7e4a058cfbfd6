#!/bin/sh
# Configures Vault for vault-kms with the `vault` CLI: the Transit engine and its key, the
# minimal policy (kms-policy.hcl, next to this script), the AppRole method and role, and the
# role-id and secret-id files the broker reads.
#
#   VAULT_ADDR=https://vault.example.com:8200 VAULT_TOKEN=... \
#     deploy/vault/setup.sh ./role-id ./secret-id
#
# Needs a token allowed to mount engines, enable auth methods and write policies. The vault CLI
# also honours VAULT_CACERT, VAULT_NAMESPACE, etc. Safe to re-run: what exists is kept (and
# checked), the policy and role are rewritten, and every run issues a NEW secret-id (earlier
# ones stay valid until they expire).
#
# Names (environment, with defaults matching the broker's defaults and deploy/ manifests):
#   VKMS_TRANSIT_MOUNT=transit  VKMS_TRANSIT_KEY=kms  VKMS_APPROLE_MOUNT=approle
#   VKMS_ROLE=vault-kms  VKMS_POLICY=vault-kms  VKMS_SECRET_ID_TTL=720h
#   VKMS_BOUND_CIDRS=  (optional, comma-separated: where logins and tokens may come from, e.g.
#                       the control-plane nodes' addresses)
# Changing the transit mount or key also changes the policy's paths (rewritten from
# kms-policy.hcl) and needs --transit-mount / --transit-key on the broker.
set -eu

TRANSIT_MOUNT=${VKMS_TRANSIT_MOUNT:-transit}
KEY=${VKMS_TRANSIT_KEY:-kms}
APPROLE_MOUNT=${VKMS_APPROLE_MOUNT:-approle}
ROLE=${VKMS_ROLE:-vault-kms}
POLICY=${VKMS_POLICY:-vault-kms}
SECRET_ID_TTL=${VKMS_SECRET_ID_TTL:-720h}
BOUND_CIDRS=${VKMS_BOUND_CIDRS:-}
POLICY_FILE=$(dirname "$0")/kms-policy.hcl

die() {
  echo "setup.sh: $*" >&2
  exit 1
}

if [ $# -ne 2 ]; then
  echo "usage: $0 ROLE_ID_FILE SECRET_ID_FILE" >&2
  exit 2
fi
ROLE_ID_FILE=$1
SECRET_ID_FILE=$2

command -v vault >/dev/null 2>&1 || die "the vault CLI is not in PATH"
[ -r "$POLICY_FILE" ] || die "cannot read $POLICY_FILE"
# The names end up in Vault paths and in the sed expressions below.
for name in "$TRANSIT_MOUNT" "$KEY" "$APPROLE_MOUNT" "$ROLE" "$POLICY"; do
  case $name in
    '' | */ | /* | *[!A-Za-z0-9_./-]*) die "invalid name '$name' (letters, digits, _ . / - only)" ;;
  esac
done

tmp_files=
cleanup() {
  # shellcheck disable=SC2086  # word splitting over the list of temporary files is intended
  [ -z "$tmp_files" ] || rm -f $tmp_files
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# Type of the engine or auth method mounted at $2 ("" if none), from the CLI's table output
# (asked for explicitly: VAULT_FORMAT=json would change it).
mounted_type() {
  vault "$1" list -format=table | awk -v p="$2/" '$1 == p { print $2 }'
}

# 1. Transit engine and key. aes256-gcm96 is the type vault-kms expects and is tested with; the key
#    is created not exportable and not deletable (Vault's defaults).
type=$(mounted_type secrets "$TRANSIT_MOUNT")
if [ -z "$type" ]; then
  vault secrets enable -path="$TRANSIT_MOUNT" transit
elif [ "$type" != transit ]; then
  die "$TRANSIT_MOUNT/ is a '$type' engine, not transit"
fi
if vault read "$TRANSIT_MOUNT/keys/$KEY" >/dev/null 2>&1; then
  key_type=$(vault read -field=type "$TRANSIT_MOUNT/keys/$KEY")
  [ "$key_type" = aes256-gcm96 ] || die "key $TRANSIT_MOUNT/keys/$KEY exists with type $key_type"
else
  vault write "$TRANSIT_MOUNT/keys/$KEY" type=aes256-gcm96
fi

# 2. The minimal policy: kms-policy.hcl as shipped, or with this mount and key in its paths.
if [ "$TRANSIT_MOUNT" = transit ] && [ "$KEY" = kms ]; then
  vault policy write "$POLICY" "$POLICY_FILE"
else
  policy_tmp=$(mktemp)
  tmp_files="$tmp_files $policy_tmp"
  sed -e "s#^path \"transit/encrypt/kms\"#path \"$TRANSIT_MOUNT/encrypt/$KEY\"#" \
      -e "s#^path \"transit/decrypt/kms\"#path \"$TRANSIT_MOUNT/decrypt/$KEY\"#" \
      -e "s#^path \"transit/keys/kms\"#path \"$TRANSIT_MOUNT/keys/$KEY\"#" \
      "$POLICY_FILE" >"$policy_tmp"
  [ "$(grep -c "^path \"$TRANSIT_MOUNT/[a-z]*/$KEY\"" "$policy_tmp")" -eq 3 ] ||
    die "could not rewrite the transit paths of $POLICY_FILE"
  vault policy write "$POLICY" "$policy_tmp"
fi

# 3. AppRole and the role.
type=$(mounted_type auth "$APPROLE_MOUNT")
if [ -z "$type" ]; then
  vault auth enable -path="$APPROLE_MOUNT" approle
elif [ "$type" != approle ]; then
  die "auth method at $APPROLE_MOUNT/ is '$type', not approle"
fi
#  - the policy and nothing else (no "default" policy: the minimal policy already grants the
#    token self-lookup, renewal and sys/capabilities-self the broker uses);
#  - service tokens (renewable: the broker renews, and logs in again at token_max_ttl);
#  - secret_id_num_uses=0: the broker logs in with the same secret-id at every start and after
#    every token expiry; secret_id_ttl bounds its life instead: issue a new one before it ends.
set -- token_policies="$POLICY" token_no_default_policy=true token_type=service \
  token_ttl=1h token_max_ttl=24h secret_id_ttl="$SECRET_ID_TTL" secret_id_num_uses=0
if [ -n "$BOUND_CIDRS" ]; then
  set -- "$@" secret_id_bound_cidrs="$BOUND_CIDRS" token_bound_cidrs="$BOUND_CIDRS"
fi
vault write "auth/$APPROLE_MOUNT/role/$ROLE" "$@"

# 4. The credential files: created 0600 (umask 077) next to their destination and renamed
#    into place, so a file that already exists never holds the new value with its old mode.
#    Nothing secret is printed.
umask 077
write_field() { # DEST then the vault command printing the value
  dest=$1
  shift
  part=$(mktemp "$dest.XXXXXX")
  tmp_files="$tmp_files $part"
  "$@" >"$part"
  [ -s "$part" ] || die "empty value for $dest"
  mv -f "$part" "$dest"
}
write_field "$ROLE_ID_FILE" vault read -field=role_id "auth/$APPROLE_MOUNT/role/$ROLE/role-id"
write_field "$SECRET_ID_FILE" vault write -f -field=secret_id "auth/$APPROLE_MOUNT/role/$ROLE/secret-id"

cat <<EOF
Vault is configured: $TRANSIT_MOUNT/keys/$KEY, policy $POLICY, role $APPROLE_MOUNT/role/$ROLE.
role-id written to $ROLE_ID_FILE, secret-id to $SECRET_ID_FILE (mode 0600, owner $(id -u)).

On each control-plane node, as root, install them for the broker user (uid 65532), mode 0400,
with Vault's CA certificate next to them:
  install -d -m 0755 /etc/vault-kms
  install -m 0400 -o 65532 -g 65532 $ROLE_ID_FILE /etc/vault-kms/role-id
  install -m 0400 -o 65532 -g 65532 $SECRET_ID_FILE /etc/vault-kms/secret-id
  install -m 0644 vault-ca.pem /etc/vault-kms/ca.pem
that is, for files copied there by other means:
  chown 65532:65532 /etc/vault-kms/role-id /etc/vault-kms/secret-id
  chmod 0400 /etc/vault-kms/role-id /etc/vault-kms/secret-id
Better, one secret-id per node (revocable alone): run this script once, then for each further
node issue one with
  vault write -f -field=secret_id auth/$APPROLE_MOUNT/role/$ROLE/secret-id
The secret-id expires after $SECRET_ID_TTL: write a new one into /etc/vault-kms/secret-id
(same owner and mode) before then; the broker reads it at its next login, without a restart.
EOF
