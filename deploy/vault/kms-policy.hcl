# Minimal Vault policy for vault-kms (transit mount "transit", key "kms").
# Only "update" on encrypt: with "create", a typo in the key name would silently create a
# new key instead of failing.
path "transit/encrypt/kms" {
  capabilities = ["update"]
}
path "transit/decrypt/kms" {
  capabilities = ["update"]
}
path "transit/keys/kms" {
  capabilities = ["read"]
}
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
# The broker asks at start and at every key refresh whether this token may still do all of the
# above, and reports exactly what is missing (Status healthz, /readyz, `check`). Vault's default
# policy has this rule, but setup.sh's role sets token_no_default_policy.
path "sys/capabilities-self" {
  capabilities = ["update"]
}
