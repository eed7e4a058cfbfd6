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
