#!/usr/bin/env python3
"""A stand-in for the `vault` CLI, for running deploy/vault/setup.sh unmodified against the
Vault simulator (the real CLI cannot be installed on the build machines).

It sends each command to Vault's HTTP API the way the CLI does (VAULT_ADDR, VAULT_TOKEN,
VAULT_CACERT, VAULT_NAMESPACE; `k=v` arguments as JSON strings; PUT for writes) and prints what
the CLI prints for the forms setup.sh uses. Anything else is refused with exit status 3, so a
change to setup.sh that this stand-in does not know fails the test instead of passing quietly.
"""
import json
import os
import ssl
import sys
import urllib.error
import urllib.request


def die(msg, code=3):
    print(f"vault-cli-shim: {msg}", file=sys.stderr)
    sys.exit(code)


def call(method, path, body=None):
    """(status, parsed JSON or None) of one API request."""
    url = os.environ["VAULT_ADDR"].rstrip("/") + "/v1/" + path
    headers = {"X-Vault-Token": os.environ.get("VAULT_TOKEN", ""), "X-Vault-Request": "true"}
    if os.environ.get("VAULT_NAMESPACE"):
        headers["X-Vault-Namespace"] = os.environ["VAULT_NAMESPACE"]
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    ctx = ssl.create_default_context(cafile=os.environ.get("VAULT_CACERT") or None)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw) if raw else None
        except ValueError:
            return e.code, None


def api_error(what, path, status, body):
    errors = (body or {}).get("errors") or []
    detail = "\n".join(f"* {e}" for e in errors)
    die(f"Error {what} {path}: Error making API request.\n\nCode: {status}. Errors:\n\n{detail}",
        2)


def split_flags(args):
    """Leading -flag[=value] arguments (Go's flag package stops at the first positional)."""
    flags, i = {}, 0
    while i < len(args) and args[i].startswith("-"):
        name, _, value = args[i].lstrip("-").partition("=")
        flags[name] = value if value else True
        i += 1
    return flags, args[i:]


def print_field(data, field, path):
    if field not in (data or {}):
        die(f'Field "{field}" not present in secret', 1)
    value = data[field]
    sys.stdout.write(value if isinstance(value, str) else json.dumps(value))


def cmd_list(kind, args):
    flags, rest = split_flags(args)
    if rest or flags not in ({}, {"format": "table"}):
        die(f"unsupported: {kind} list {' '.join(args)}")
    status, body = call("GET", "sys/mounts" if kind == "secrets" else "sys/auth")
    if status != 200:
        api_error("listing", kind, status, body)
    rows = [(p, m.get("type", ""), m.get("accessor", ""), m.get("description", "") or "n/a")
            for p, m in sorted((body.get("data") or body).items()) if isinstance(m, dict)]
    print("Path    Type    Accessor    Description")
    print("----    ----    --------    -----------")
    for row in rows:
        print("    ".join(row))


def cmd_enable(kind, args):
    flags, rest = split_flags(args)
    if len(rest) != 1 or set(flags) != {"path"}:
        die(f"unsupported: {kind} enable {' '.join(args)}")
    mount = flags["path"].strip("/")
    status, body = call("POST", ("sys/mounts/" if kind == "secrets" else "sys/auth/") + mount,
                        {"type": rest[0]})
    if status not in (200, 204):
        api_error("enabling", mount, status, body)
    print(f"Success! Enabled {rest[0]} at: {mount}/")


def cmd_read(args):
    flags, rest = split_flags(args)
    if len(rest) != 1 or not set(flags) <= {"field"}:
        die(f"unsupported: read {' '.join(args)}")
    status, body = call("GET", rest[0])
    if status == 404 or (status == 200 and not (body or {}).get("data")):
        print(f"No value found at {rest[0]}", file=sys.stderr)
        sys.exit(2)
    if status != 200:
        api_error("reading", rest[0], status, body)
    if "field" in flags:
        print_field(body["data"], flags["field"], rest[0])
    else:
        for k, v in sorted(body["data"].items()):
            print(f"{k}    {v}")


def cmd_write(args):
    flags, rest = split_flags(args)
    if not rest or not set(flags) <= {"f", "force", "field"}:
        die(f"unsupported: write {' '.join(args)}")
    path, pairs = rest[0], rest[1:]
    if not pairs and not (flags.get("f") or flags.get("force")):
        die("Must supply data or use -force", 1)
    data = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep or v.startswith("@") or v == "-":
            die(f"unsupported argument: {p}")
        data[k] = v
    status, body = call("PUT", path, data)
    if status not in (200, 204):
        api_error("writing data to", path, status, body)
    if "field" in flags:
        print_field((body or {}).get("data"), flags["field"], path)
    else:
        print(f"Success! Data written to: {path}")


def cmd_policy(args):
    if len(args) != 3 or args[0] != "write":
        die(f"unsupported: policy {' '.join(args)}")
    name, source = args[1], args[2]
    text = sys.stdin.read() if source == "-" else open(source, encoding="utf-8").read()
    status, body = call("PUT", "sys/policies/acl/" + name, {"policy": text})
    if status not in (200, 204):
        api_error("uploading policy", name, status, body)
    print(f"Success! Uploaded policy: {name}")


def main(argv):
    if not argv:
        die("no command")
    if argv[0] in ("secrets", "auth") and len(argv) > 1 and argv[1] == "list":
        cmd_list(argv[0], argv[2:])
    elif argv[0] in ("secrets", "auth") and len(argv) > 1 and argv[1] == "enable":
        cmd_enable(argv[0], argv[2:])
    elif argv[0] == "read":
        cmd_read(argv[1:])
    elif argv[0] == "write":
        cmd_write(argv[1:])
    elif argv[0] == "policy":
        cmd_policy(argv[1:])
    else:
        die(f"unsupported: {' '.join(argv)}")


if __name__ == "__main__":
    main(sys.argv[1:])
