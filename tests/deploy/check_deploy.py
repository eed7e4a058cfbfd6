#!/usr/bin/env python3
"""Checks deploy/ against the code it configures: the manifests, the systemd unit, the image
recipe and the Vault setup script must use flags the broker has, agree with each other on the
socket, port, flags and capabilities, and keep every hardening setting the deployment relies on.

Run by ctest (tests/deploy/CMakeLists.txt), one test class per ctest test:
  check_deploy.py --source-dir=DIR --broker=PATH --frontend=PATH [unittest args, e.g. StaticPod]
"""
import argparse
import glob
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import unittest

try:
    import yaml
except ImportError:  # make deps installs python3-yaml
    sys.exit("check_deploy.py: PyYAML is missing (Debian: apt-get install python3-yaml)")

ARGS = None  # set in main()

# The kube-apiserver's socket directory and the unit's runtime directory are the same place
# on every distribution that matters: /var/run is a symlink to /run.
RUN_ALIASES = ("/var/run/", "/run/")

# Capabilities the broker's start-up needs (shared/hardening.cc: capng_change_id with
# CAPNG_DROP_SUPP_GRP | CAPNG_CLEAR_BOUNDING), and the one it needs only when it must chown the
# socket to a group it is not in.
NEEDED_CAPS = {"SETUID", "SETGID", "SETPCAP"}
CHOWN_CAP = "CHOWN"

# Every "--flag" in deploy/ is a broker flag unless it is one of these, named with its owner.
OTHER_TOOLS_FLAGS = {
    "encryption-provider-config": "kube-apiserver",
    "encryption-provider-config-automatic-reload": "kube-apiserver",
    "all-namespaces": "kubectl",
    "from-literal": "kubectl",
    "raw": "kubectl",
    "cacert": "etcdctl",
    "cert": "etcdctl",
    "key": "etcdctl",
    "print-value-only": "etcdctl",
    "no-install-recommends": "apt-get",
    "from": "Containerfile COPY",
    "ignorefile": "podman build",
    "now": "systemctl enable",
    "build-arg": "docker build",
    "build": "cmake",
    "digests": "crictl images",
    "system": "adduser",
    "group": "adduser",
    "no-create-home": "adduser",
    "home": "adduser",
    "build-dir": "packaging/image/build-image.py",
    "rootfs": "packaging/image/build-image.py",
}


def deploy(*parts):
    return os.path.join(ARGS.source_dir, "deploy", *parts)


def read(*parts):
    with open(deploy(*parts), encoding="utf-8") as f:
        return f.read()


def broker_help_flags():
    out = subprocess.run([ARGS.broker, "--help"], capture_output=True, text=True, timeout=20,
                         env={}, check=True).stdout
    flags = set(re.findall(r"^\s+--([a-z0-9][a-z0-9-]*)", out, re.M))
    if not {"socket", "vault-addr", "help"} <= flags:
        raise AssertionError("cannot parse `vault-kms-broker --help`:\n" + out)
    return flags


def parse_flags(tokens):
    """--name=value tokens -> {name: value}; a flag given twice is an error here."""
    flags = {}
    for t in tokens:
        if not t.startswith("--"):
            raise AssertionError(f"not a --flag=value argument: {t!r}")
        name, _, value = t[2:].partition("=")
        if name in flags:
            raise AssertionError(f"--{name} given twice")
        flags[name] = value
    return flags


def static_pod():
    return yaml.safe_load(read("static-pod.yaml"))


def pod_container(pod):
    containers = pod["spec"]["containers"]
    assert len(containers) == 1, "one container: the broker (it starts the frontend itself)"
    return containers[0]


def pod_broker_flags(pod):
    c = pod_container(pod)
    return parse_flags(c["command"][1:] + c.get("args", []))


def encryption_config():
    return yaml.safe_load(read("encryption-config.yaml"))


def kms_provider(cfg):
    return cfg["resources"][0]["providers"][0]["kms"]


def socket_path_of(endpoint):
    assert endpoint.startswith("unix:///"), endpoint
    return endpoint[len("unix://"):]


def same_run_path(a, b):
    def canon(p):
        for prefix in RUN_ALIASES:
            if p.startswith(prefix):
                return "/run/" + p[len(prefix):]
        return p

    return canon(a.rstrip("/")) == canon(b.rstrip("/"))


def parse_unit(text):
    """A systemd unit -> {section: [(key, value), ...]}, continuation lines joined."""
    sections, current, pending = {}, None, ""
    for raw in text.splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current, f"unparsable unit line: {line!r}"
        sections[current].append((key.strip(), value.strip()))
    return sections


def unit_service():
    entries = parse_unit(read("vault-kms.service"))["Service"]
    d = {}
    for k, v in entries:
        d.setdefault(k, []).append(v)
    return d


def unit_exec_start():
    exec_start = unit_service()["ExecStart"]
    assert len(exec_start) == 1, exec_start
    return shlex.split(exec_start[0])


def env_file():
    """deploy/vault-kms.env -> ({NAME: value} set, {NAME: value} shown commented out)."""
    active, commented = {}, {}
    for line in read("vault-kms.env").splitlines():
        m = re.match(r"^(#?)([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            target = commented if m.group(1) else active
            assert m.group(2) not in active and m.group(2) not in commented, m.group(2)
            target[m.group(2)] = m.group(3)
        else:
            assert not line or line.startswith("# ") or line == "#", f"not a comment: {line!r}"
    return active, commented


def broker_env_names():
    """{variable: flag} the broker reads: VAULT_KMS_<FLAG> for every flag, and the standard
    names `--help` shows in [$NAME]."""
    out = subprocess.run([ARGS.broker, "--help"], capture_output=True, text=True, timeout=20,
                         env={}, check=True).stdout
    names = {}
    for flag, rest in re.findall(r"^\s+--([a-z0-9][a-z0-9-]*)\S*\s+(.*)$", out, re.M):
        if flag in ("help", "version"):
            continue
        names["VAULT_KMS_" + flag.upper().replace("-", "_")] = flag
        for var in re.findall(r"\$([A-Z][A-Z0-9_]*)", rest):
            names[var] = flag
    return names


def yaml_blocks_in_markdown(text):
    return re.findall(r"^```ya?ml\n(.*?)^```", text, re.M | re.S)


def deploy_files():
    out = []
    for root, _, files in os.walk(deploy()):
        for f in files:
            out.append(os.path.relpath(os.path.join(root, f), deploy()))
    return sorted(out)


def expand_systemd_groups(names):
    """Expands @groups with systemd-analyze, or with the systemd 252 snapshot next to this file
    where systemd-analyze is not installed. Returns (set of syscalls, source description)."""
    groups = {}
    tool = shutil.which("systemd-analyze")
    if tool:
        out = subprocess.run([tool, "syscall-filter", "--no-pager"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
        current = None
        for line in out.splitlines():
            if line.startswith("@"):
                current = line.strip()
                groups[current] = []
            elif current and line.strip() and not line.strip().startswith("#"):
                groups[current].append(line.strip())
        source = "systemd-analyze"
    else:
        snapshot = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "system-service-systemd252.txt")
        with open(snapshot, encoding="utf-8") as f:
            groups["@system-service"] = [l.strip() for l in f if l.strip() and l[0] != "#"]
        source = "snapshot of systemd 252 (systemd-analyze not installed)"

    def expand(name, seen):
        if not name.startswith("@"):
            return {name}
        if name not in groups:
            raise AssertionError(f"unknown syscall group {name} ({source})")
        if name in seen:
            return set()
        result = set()
        for member in groups[name]:
            result |= expand(member, seen | {name})
        return result

    result = set()
    for n in names:
        result |= expand(n, frozenset())
    return result, source


def seccomp_policy_syscalls():
    """{action: set of names} over both processes' policies (seccomp/*_policy.cc)."""
    actions = {}
    for name in ("broker_policy.cc", "frontend_policy.cc"):
        with open(os.path.join(ARGS.source_dir, "seccomp", name), encoding="utf-8") as f:
            for action, syscall in re.findall(r"\b(Allow|Errno|Kill)\(\"([a-z0-9_]+)\"", f.read()):
                actions.setdefault(action, set()).add(syscall)
    assert "read" in actions.get("Allow", set()), "cannot parse seccomp/*_policy.cc"
    return actions


# --------------------------------------------------------------------------------------------


class YamlFiles(unittest.TestCase):
    def test_every_yaml_document_parses(self):
        files = [f for f in deploy_files() if f.endswith((".yaml", ".yml"))]
        self.assertIn("static-pod.yaml", files)
        self.assertIn("encryption-config.yaml", files)
        for f in files:
            with self.subTest(file=f):
                docs = [d for d in yaml.safe_load_all(read(f)) if d is not None]
                self.assertTrue(docs, f"{f}: no YAML document")

    def test_yaml_blocks_in_the_docs_parse(self):
        blocks = 0
        for f in deploy_files():
            if f.endswith(".md"):
                for i, block in enumerate(yaml_blocks_in_markdown(read(f))):
                    blocks += 1
                    with self.subTest(file=f, block=i):
                        list(yaml.safe_load_all(block))
        self.assertGreater(blocks, 0, "kube-apiserver-patch.md shows its changes as YAML")

    def test_readme_lists_every_file(self):
        readme = read("README.md")
        for f in deploy_files():
            if f != "README.md":
                with self.subTest(file=f):
                    self.assertIn(f"`{f}`", readme)


class BrokerFlags(unittest.TestCase):
    def test_manifest_and_unit_flags_exist(self):
        known = broker_help_flags()
        for where, flags in (("static-pod.yaml", pod_broker_flags(static_pod())),
                             ("vault-kms.service", parse_flags(unit_exec_start()[1:]))):
            for name in flags:
                with self.subTest(file=where, flag=name):
                    self.assertIn(name, known, f"{where}: --{name} is not a broker flag")

    def test_every_flag_mentioned_in_deploy_is_known(self):
        known = broker_help_flags()
        for f in deploy_files():
            text = read(f)
            for name in sorted(set(re.findall(r"(?<![\w-])--([a-z0-9][a-z0-9-]*)", text))):
                with self.subTest(file=f, flag=name):
                    self.assertTrue(name in known or name in OTHER_TOOLS_FLAGS,
                                    f"{f}: --{name} is neither a broker flag nor a known flag of "
                                    f"another tool")

    def test_containerfile_entrypoint_is_the_broker(self):
        text = read("Containerfile")
        entry = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", text, re.M)
        self.assertTrue(entry, "exec-form ENTRYPOINT")
        self.assertEqual(json.loads(entry.group(1)), ["/usr/local/bin/vault-kms-broker"])
        cmd = re.search(r"^CMD\s+(\[.*\])\s*$", text, re.M)
        if cmd:
            known = broker_help_flags()
            for token in json.loads(cmd.group(1)):
                self.assertIn(token[2:].partition("=")[0], known)


class StaticPod(unittest.TestCase):
    def setUp(self):
        self.pod = static_pod()
        self.spec = self.pod["spec"]
        self.c = pod_container(self.pod)
        self.flags = pod_broker_flags(self.pod)
        self.sc = self.c["securityContext"]

    def test_placement(self):
        self.assertEqual(self.pod["apiVersion"], "v1")
        self.assertEqual(self.pod["kind"], "Pod")
        self.assertEqual(self.pod["metadata"]["namespace"], "kube-system")
        self.assertEqual(self.spec["priorityClassName"], "system-node-critical")
        self.assertIs(self.spec["hostNetwork"], True)
        self.assertEqual(self.spec.get("dnsPolicy"), "Default",
                         "the node's resolver: cluster DNS needs the API server")
        self.assertIs(self.spec.get("automountServiceAccountToken"), False)

    def test_image_and_command(self):
        version = subprocess.run([ARGS.broker, "--version"], capture_output=True, text=True,
                                 timeout=20, env={}, check=True).stdout.split()[-1]
        image = self.c["image"].split("@")[0]
        self.assertTrue(image.endswith("/vault-kms:" + version), image)
        self.assertEqual(self.c["command"], ["/usr/local/bin/vault-kms-broker"])

    def test_required_flags(self):
        for name in ("socket", "vault-addr", "vault-ca-file", "approle-role-id-file",
                     "approle-secret-id-file", "metrics-listen", "socket-group",
                     "allowed-peer-uids"):
            with self.subTest(flag=name):
                self.assertTrue(self.flags.get(name), f"--{name} missing or empty")
        self.assertEqual(self.flags["socket"], "unix:///var/run/kmsplugin/vault-kms.sock")
        self.assertEqual(self.flags["allowed-peer-uids"], "0", "kube-apiserver runs as root")
        self.assertTrue(self.flags["vault-addr"].startswith("https://"))

    def test_security_context(self):
        self.assertIs(self.sc["readOnlyRootFilesystem"], True)
        self.assertIs(self.sc["allowPrivilegeEscalation"], False)
        self.assertEqual(self.sc["runAsUser"], 0, "root at start: the broker switches users")
        self.assertIsNot(self.sc.get("privileged"), True)
        self.assertEqual(self.sc["capabilities"]["drop"], ["ALL"])
        seccomp = self.sc.get("seccompProfile") or self.spec.get("securityContext", {}).get(
            "seccompProfile")
        self.assertEqual(seccomp, {"type": "RuntimeDefault"})

    def test_capabilities_are_exactly_what_start_up_needs(self):
        added = set(self.sc["capabilities"]["add"])
        self.assertTrue(NEEDED_CAPS <= added, f"missing {NEEDED_CAPS - added}")
        self.assertTrue(added <= NEEDED_CAPS | {CHOWN_CAP}, f"not needed: {added - NEEDED_CAPS}")
        # Changing the socket's group to one the (root) broker is in needs no capability.
        needs_chown = self.flags.get("socket-group", "") not in ("", "0", "root")
        self.assertEqual(CHOWN_CAP in added, needs_chown,
                         "CHOWN exactly when --socket-group names a group other than 0")

    def test_probes_reach_the_metrics_listener(self):
        host, _, port = self.flags["metrics-listen"].rpartition(":")
        self.assertEqual(host, "127.0.0.1", "loopback only: the Pod shares the node's network")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            with self.subTest(probe=probe):
                get = self.c[probe]["httpGet"]
                self.assertEqual(get["host"], "127.0.0.1")
                self.assertEqual(str(get["port"]), port)
                self.assertEqual(get["path"], path)
                # The handler answers within 1 s (frontend/http_server.cc).
                self.assertGreaterEqual(self.c[probe].get("timeoutSeconds", 1), 2)

    def test_port_is_not_a_kubernetes_components_port(self):
        port = int(self.flags["metrics-listen"].rpartition(":")[2])
        kube_ports = {6443, 8080, 10248, 10249, 10250, 10256, 10257, 10259, 2379, 2380, 2381}
        self.assertNotIn(port, kube_ports)

    def test_mounts(self):
        volumes = {v["name"]: v for v in self.spec["volumes"]}
        mounts = {m["mountPath"]: m for m in self.c["volumeMounts"]}
        sock_dir = os.path.dirname(socket_path_of(self.flags["socket"]))
        self.assertIn(sock_dir, mounts, "the socket directory is a mount")
        sock_vol = volumes[mounts[sock_dir]["name"]]["hostPath"]
        self.assertEqual(sock_vol, {"path": sock_dir, "type": "DirectoryOrCreate"})
        self.assertIsNot(mounts[sock_dir].get("readOnly"), True)
        for flag in ("vault-ca-file", "approle-role-id-file", "approle-secret-id-file"):
            with self.subTest(flag=flag):
                d = os.path.dirname(self.flags[flag])
                self.assertIn(d, mounts, f"--{flag}'s directory is mounted")
                self.assertIs(mounts[d].get("readOnly"), True)
                self.assertEqual(volumes[mounts[d]["name"]]["hostPath"],
                                 {"path": d, "type": "Directory"})

    def test_socket_matches_encryption_config(self):
        endpoint = kms_provider(encryption_config())["endpoint"]
        self.assertEqual(socket_path_of(self.flags["socket"]), socket_path_of(endpoint))

    def test_resources(self):
        r = self.c["resources"]
        self.assertEqual(r["requests"], {"memory": "64Mi", "cpu": "50m"})
        self.assertEqual(r["limits"], {"memory": "128Mi"}, "memory limit only, no CPU limit")

    def test_termination_grace_covers_the_drain(self):
        self.assertGreater(self.spec["terminationGracePeriodSeconds"], 10)


class EncryptionConfig(unittest.TestCase):
    def test_kms_v2_then_identity(self):
        cfg = encryption_config()
        self.assertEqual(cfg["apiVersion"], "apiserver.config.k8s.io/v1")
        self.assertEqual(cfg["kind"], "EncryptionConfiguration")
        self.assertEqual(len(cfg["resources"]), 1)
        res = cfg["resources"][0]
        self.assertEqual(res["resources"], ["secrets"])
        providers = res["providers"]
        self.assertIn("kms", providers[0], "the first provider encrypts every write")
        self.assertEqual(providers[-1], {"identity": {}}, "identity last: reads old plaintext")
        self.assertEqual(len(providers), 2)
        kms = providers[0]["kms"]
        self.assertEqual(kms["apiVersion"], "v2")
        self.assertEqual(kms["name"], "vault-kms")
        self.assertNotIn(":", kms["name"])
        self.assertNotIn("cachesize", kms, "a KMS v1 field, rejected for v2")
        self.assertRegex(kms["timeout"], r"^[0-9]+(ms|s)$")
        self.assertTrue(kms["endpoint"].startswith("unix:///"))


class ApiserverPatch(unittest.TestCase):
    def setUp(self):
        text = read("kube-apiserver-patch.md")
        blocks = [yaml.safe_load(b) for b in yaml_blocks_in_markdown(text)]
        self.assertEqual(len(blocks), 1)
        spec = blocks[0]["spec"]
        self.c = spec["containers"][0]
        self.volumes = {v["name"]: v["hostPath"] for v in spec["volumes"]}
        self.mounts = {m["mountPath"]: m for m in self.c["volumeMounts"]}
        self.text = text

    def test_config_flag_and_mount(self):
        flags = [a for a in self.c["command"] if a.startswith("--encryption-provider-config=")]
        self.assertEqual(len(flags), 1)
        path = flags[0].partition("=")[2]
        self.assertEqual(os.path.basename(path), "encryption-config.yaml")
        d = os.path.dirname(path)
        self.assertIn(d, self.mounts, "the config's directory (not the file) is mounted")
        self.assertIs(self.mounts[d].get("readOnly"), True)
        self.assertEqual(self.volumes[self.mounts[d]["name"]]["path"], d)
        self.assertIn(path, self.text.split("```yaml")[0], "step 1 installs the file there")

    def test_socket_directory_mount(self):
        sock_dir = os.path.dirname(socket_path_of(kms_provider(encryption_config())["endpoint"]))
        self.assertIn(sock_dir, self.mounts)
        self.assertEqual(self.volumes[self.mounts[sock_dir]["name"]]["path"], sock_dir)


class SystemdUnit(unittest.TestCase):
    EXPECTED = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes",
        "SystemCallArchitectures": "native",
        "KillMode": "control-group",
        "Restart": "always",
        "AmbientCapabilities": "",
    }

    def setUp(self):
        self.s = unit_service()

    def one(self, key):
        self.assertIn(key, self.s, f"{key}= missing")
        self.assertEqual(len(self.s[key]), 1, f"{key}= given more than once")
        return self.s[key][0]

    def test_hardening_directives(self):
        for key, value in self.EXPECTED.items():
            with self.subTest(directive=key):
                self.assertEqual(self.one(key), value)
        self.assertEqual(set(self.one("RestrictAddressFamilies").split()),
                         {"AF_UNIX", "AF_INET", "AF_INET6"})
        self.assertNotIn("User", self.s, "root at start: the broker switches users itself")

    def test_syscall_filter_adds_what_system_service_lacks(self):
        names = self.one("SystemCallFilter").split()
        self.assertEqual(names[0], "@system-service")
        self.assertEqual(set(names[1:]), {"landlock_create_ruleset", "landlock_add_rule",
                                          "landlock_restrict_self", "seccomp"})
        self.assertEqual(self.one("SystemCallErrorNumber"), "EPERM")

    def test_capabilities_match_the_pod(self):
        unit_caps = {c.removeprefix("CAP_") for c in self.one("CapabilityBoundingSet").split()}
        pod_caps = set(pod_container(static_pod())["securityContext"]["capabilities"]["add"])
        self.assertEqual(unit_caps, pod_caps)

    def test_same_broker_settings_as_the_pod(self):
        # ExecStart's flags and the environment file (set or shown as the default) together
        # configure the broker as the Pod does; only the users differ: named system users from
        # the Debian package instead of the image's 65532/65533.
        argv = unit_exec_start()
        self.assertEqual(argv[0], "/usr/local/bin/vault-kms-broker")
        flags = parse_flags(argv[1:])
        names = broker_env_names()
        active, commented = env_file()
        from_env = {names[v]: value for v, value in {**commented, **active}.items()}
        for name in flags:
            self.assertNotIn(name, {names[v] for v in active}, f"--{name} set twice")
        unit = {**from_env, **flags}
        pod = pod_broker_flags(static_pod())
        for name, value in pod.items():
            with self.subTest(flag=name):
                self.assertEqual(unit.get(name), value)
        extra = {names[v] for v in active} - set(pod) - set(flags)
        self.assertEqual(extra, {"broker-user", "frontend-user"})
        self.assertEqual(active["VAULT_KMS_BROKER_USER"], "vault-kms")
        self.assertEqual(active["VAULT_KMS_FRONTEND_USER"], "vault-kms-frontend")

    def test_settings_from_the_environment_file(self):
        self.assertEqual(self.one("Type"), "notify")
        self.assertEqual(self.one("NotifyAccess"), "main")
        self.assertEqual(self.one("EnvironmentFile"), "/etc/vault-kms/vault-kms.env",
                         'no "-": the service must not start without its settings')
        # What belongs to the unit stays on ExecStart (it wins over the file).
        self.assertEqual(sorted(parse_flags(unit_exec_start()[1:])),
                         ["allowed-peer-uids", "socket", "socket-group"])

    def test_socket_removed_after_the_service_stops(self):
        # The broker cannot delete its socket once it has left root (SECURITY.md): root does,
        # after the stop, and removes exactly the socket --socket names.
        sock = socket_path_of(parse_flags(unit_exec_start()[1:])["socket"])
        self.assertEqual(shlex.split(self.one("ExecStopPost")), ["/bin/rm", "-f", sock])

    def test_socket_directory_is_writable_and_kept(self):
        sock_dir = os.path.dirname(socket_path_of(pod_broker_flags(static_pod())["socket"]))
        self.assertEqual(self.one("RuntimeDirectory"), "kmsplugin")
        self.assertTrue(same_run_path(sock_dir, "/run/" + self.one("RuntimeDirectory")))
        self.assertEqual(self.one("RuntimeDirectoryPreserve"), "yes",
                         "kube-apiserver bind-mounts the directory: it must survive restarts")
        self.assertTrue(any(same_run_path(sock_dir, p) for p in self.one("ReadWritePaths").split()))


class EnvFile(unittest.TestCase):
    """deploy/vault-kms.env, the unit's EnvironmentFile= template."""

    def test_every_variable_is_one_the_broker_reads(self):
        names = broker_env_names()
        active, commented = env_file()
        for var in list(active) + list(commented):
            with self.subTest(variable=var):
                self.assertIn(var, names)
        # The Vault CLI's name where the broker has one, else VAULT_KMS_<FLAG>: one per flag.
        flags = [names[v] for v in list(active) + list(commented)]
        self.assertEqual(len(flags), len(set(flags)), "a flag given by two variables")
        standard = {f: v for v, f in names.items() if not v.startswith("VAULT_KMS_")}
        for var in list(active) + list(commented):
            if names[var] in standard:
                self.assertEqual(var, standard[names[var]])

    def test_required_settings_are_there(self):
        active, commented = env_file()
        self.assertIn("VAULT_ADDR", commented, "explained, with an example, left to set")
        self.assertNotIn("VAULT_ADDR", active, "no placeholder address that would be used")
        for var in ("VAULT_KMS_APPROLE_ROLE_ID_FILE", "VAULT_KMS_APPROLE_SECRET_ID_FILE"):
            self.assertTrue(active[var].startswith("/etc/vault-kms/"))
        text = read("vault-kms.env")
        self.assertIn("Required", text)

    def test_no_secret_values(self):
        active, commented = env_file()
        for var in ("VAULT_TOKEN", "VAULT_KMS_APPROLE_ROLE_ID", "VAULT_KMS_APPROLE_SECRET_ID"):
            self.assertNotIn(var, active)
            self.assertNotIn(var, commented)

    def test_commented_defaults_are_the_defaults(self):
        out = subprocess.run([ARGS.broker, "--help"], capture_output=True, text=True,
                             timeout=20, env={}, check=True).stdout
        defaults = dict(re.findall(r"^\s+--([a-z0-9-]+)=VALUE.*\(default ([^)\s]+)\)(?:\s+\[[^]]*\])?\s*$", out,
                                   re.M))
        names = broker_env_names()
        _, commented = env_file()
        checked = 0
        for var, value in commented.items():
            if names[var] in defaults:
                checked += 1
                with self.subTest(variable=var):
                    self.assertEqual(value, defaults[names[var]])
        self.assertGreaterEqual(checked, 5)


class SystemdAnalyze(unittest.TestCase):
    """Needs systemd-analyze (the systemd package); skipped where it is not installed."""

    def setUp(self):
        self.tool = shutil.which("systemd-analyze")
        if not self.tool:
            self.skipTest("systemd-analyze is not installed")

    def test_unit_verifies(self):
        with tempfile.TemporaryDirectory() as tmp:
            unit = os.path.join(tmp, "vault-kms.service")
            with open(unit, "w", encoding="utf-8") as f:
                # The installed path does not exist here; the built broker stands in for it.
                f.write(read("vault-kms.service").replace("/usr/local/bin/vault-kms-broker",
                                                          ARGS.broker))
            r = subprocess.run([self.tool, "verify", "--man=no", unit], capture_output=True,
                               text=True, timeout=60, cwd=tmp)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stderr.strip() + r.stdout.strip(), "",
                             "systemd-analyze verify complains")


class SystemdSyscallFilter(unittest.TestCase):
    def test_filter_contains_every_call_the_seccomp_policies_allow(self):
        # Both filters see every call; the stricter result wins. Whatever a process's own policy
        # allows must therefore pass the unit's filter too, or it fails with EPERM. (Calls a
        # policy refuses with an errno need not: its own errno is what the caller sees, as the
        # newer filter's result wins among equal actions.)
        names = unit_service()["SystemCallFilter"][0].split()
        allowed, source = expand_systemd_groups(names)
        policies = seccomp_policy_syscalls()
        missing = sorted(policies["Allow"] - allowed)
        self.assertEqual(missing, [], f"allowed by seccomp/*_policy.cc, refused by the unit "
                                      f"({source})")


class Containerfile(unittest.TestCase):
    def setUp(self):
        self.text = read("Containerfile")
        self.stages = re.split(r"^FROM\s+", self.text, flags=re.M)[1:]

    def test_two_stages(self):
        self.assertEqual(len(self.stages), 2)
        base = re.search(r"^ARG DEBIAN=(\S+)$", self.text, re.M)
        self.assertTrue(base, "the build stage's base image is an ARG, to pin it by digest")
        self.assertEqual(base.group(1), "docker.io/library/debian:bookworm")
        self.assertRegex(self.stages[0].splitlines()[0], r"^\$\{DEBIAN\}\s+AS\s+build\s*$")
        self.assertIn("@sha256:", self.text, "the header shows how to pin by digest")
        self.assertEqual(self.stages[1].splitlines()[0].strip(), "scratch")

    def test_build_stage_builds_the_product_only(self):
        build = self.stages[0]
        self.assertIn("-DVKMS_BUILD_TESTS=OFF", build)
        self.assertIn("-DCMAKE_BUILD_TYPE=Release", build)
        self.assertNotRegex(build, r"\bmake (build|deps|test)\b", "make deps installs the tests' "
                                                                "dependencies")
        # The root filesystem of `make image`, from the same script.
        self.assertRegex(build, r"packaging/image/build-image\.py --build-dir /build "
                                r"--rootfs /rootfs")

    def test_final_stage(self):
        final = self.stages[1]
        self.assertRegex(final, re.compile(r"^COPY --from=build /rootfs/ /\s*$", re.M))
        self.assertEqual(re.findall(r"^(RUN|COPY|ADD)\b", final, re.M), ["COPY"],
                         "nothing but the root filesystem (no shell to RUN anything with)")
        self.assertRegex(final, re.compile(r"^USER 0:0\s*$", re.M))
        user_comment = final.split("USER 0:0")[0].rsplit("\n\n", 1)[-1]
        self.assertIn("65532", user_comment, "USER 0:0 says why")
        self.assertIsNone(re.search(r"\b(useradd|adduser|groupadd|addgroup)\b", final))
        version = subprocess.run([ARGS.broker, "--version"], capture_output=True, text=True,
                                 timeout=20, env={}, check=True).stdout.split()[-1]
        self.assertIn(f'org.opencontainers.image.version="{version}"', final)
        self.assertIn("org.opencontainers.image.title=", final)
        self.assertIn("localhost/vault-kms:" + version, self.text, "the reference make image "
                                                                  "gives")


def containerfile_packages():
    build = re.split(r"^FROM\s+", read("Containerfile"), flags=re.M)[1]
    m = re.search(r"apt-get install -y --no-install-recommends((?:\s*\\\n\s*[a-z0-9.+-]+)+)", build)
    assert m, "apt-get install line of the build stage"
    return re.findall(r"[a-z0-9][a-z0-9.+-]+", m.group(1))


def makefile_packages():
    with open(os.path.join(ARGS.source_dir, "Makefile"), encoding="utf-8") as f:
        m = re.search(r"^DEB_PACKAGES :=((?:.*\\\n)*.*)$", f.read(), re.M)
    return set(re.findall(r"[a-z0-9][a-z0-9.+-]+", m.group(1).replace("\\\n", " ")))


def installed_packages():
    """{package: (essential or required, [[alternative, ...] for each dependency])}, and
    {virtual package: [providers]}, of what dpkg has installed here."""
    fields = "${Package}\\t${db:Status-Abbrev}\\t${Essential}\\t${Priority}\\t${Provides}\\t" \
             "${Depends}, ${Pre-Depends}\\n"
    out = subprocess.run(["dpkg-query", "-W", "-f=" + fields], capture_output=True, text=True,
                         check=True).stdout
    packages, provides = {}, {}
    for line in out.splitlines():
        name, status, essential, priority, prov, deps = line.split("\t")
        if not status.startswith("ii"):
            continue
        groups = []
        for group in deps.split(","):
            alts = [re.match(r"\s*([a-z0-9.+-]+)", a).group(1) for a in group.split("|")
                    if a.strip()]
            if alts:
                groups.append(alts)
        packages[name] = (essential == "yes" or priority == "required", groups)
        for p in prov.split(","):
            if p.strip():
                provides.setdefault(re.match(r"\s*([a-z0-9.+-]+)", p).group(1), []).append(name)
    return packages, provides


def dependency_closure(roots):
    """The roots, what a base Debian image holds (Essential and Priority: required) and every
    package they depend on (the first installed alternative of each), as apt would install."""
    packages, provides = installed_packages()
    todo = list(roots) + [p for p, (base, _) in packages.items() if base]
    closure = set()
    while todo:
        p = todo.pop()
        if p in closure:
            continue
        closure.add(p)
        for alts in packages.get(p, (False, []))[1]:
            choice = next((a for a in alts if a in packages), None) or next(
                (prov[0] for a in alts for prov in [provides.get(a, [])] if prov), None)
            if choice:
                todo.append(choice)
    return closure


class ContainerfileBuildDeps(unittest.TestCase):
    """The build stage installs what building the product reads, and nothing for the tests: every
    header the product's objects were compiled from (their .o.d files), every library its two
    binaries were linked with (link.txt) and the code generators belong to a package of that list
    or one it pulls in. Needs a Release build tree and dpkg; skipped elsewhere."""

    TEST_ONLY = {"libgtest-dev", "libgmock-dev", "googletest", "libcpp-httplib-dev", "clang",
                 "clang-format", "libclang-rt-14-dev", "python3-yaml", "curl", "openssl"}
    PRODUCT_DIRS = ("proto", "shared", "seccomp", "broker", "frontend")

    def setUp(self):
        self.build_dir = os.path.dirname(ARGS.broker)
        if not shutil.which("dpkg-query"):
            self.skipTest("dpkg-query is not installed")
        if not glob.glob(os.path.join(self.build_dir, "broker", "CMakeFiles", "*", "*.o.d")):
            self.skipTest("no compiler dependency files in " + self.build_dir)

    def files_the_build_reads(self):
        files = set()
        for d in self.PRODUCT_DIRS:
            for dep in glob.glob(os.path.join(self.build_dir, d, "CMakeFiles", "*", "*.o.d")):
                with open(dep, encoding="utf-8") as f:
                    text = f.read().replace("\\\n", " ")
                for path in text.split(":", 1)[1].split():
                    if path.startswith("/") and not path.startswith(
                            (os.path.realpath(ARGS.source_dir), self.build_dir)):
                        files.add(os.path.normpath(path))
        self.assertGreater(len(files), 100, "headers from the product's depfiles")
        for binary in ("vault-kms-broker", "vault-kms-frontend"):
            d = os.path.join(self.build_dir, "broker" if "broker" in binary else "frontend",
                             "CMakeFiles", binary + ".dir", "link.txt")
            with open(d, encoding="utf-8") as f:
                words = f.read().split()
            files.add(words[0])  # the compiler driver
            libdirs = [w[2:] for w in words if w.startswith("-L")] + ["/usr/lib/x86_64-linux-gnu"]
            for w in words:
                if w.startswith("/usr/") and ".so" in w or w.endswith(".a") and w.startswith("/"):
                    files.add(w)
                elif w.startswith("-l"):
                    for libdir in libdirs:
                        cand = os.path.join(libdir, "lib" + w[2:] + ".so")
                        if os.path.exists(cand):
                            files.add(cand)
                            break
        with open(os.path.join(self.build_dir, "CMakeCache.txt"), encoding="utf-8") as f:
            cache = f.read()
        for var in ("Protobuf_PROTOC_EXECUTABLE", "CMAKE_COMMAND", "PKG_CONFIG_EXECUTABLE"):
            m = re.search(rf"^{var}:\w+=(\S+)$", cache, re.M)
            self.assertTrue(m, var)
            files.add(m.group(1))
        files.add(shutil.which("grpc_cpp_plugin") or "/usr/bin/grpc_cpp_plugin")
        return files

    def owners(self, files):
        def variants(p):
            for q in {p, os.path.realpath(p)}:
                yield q
                yield q[4:] if q.startswith("/usr/") else "/usr" + q

        queries = sorted({v for p in files for v in variants(p)})
        out = subprocess.run(["dpkg-query", "-S"] + queries, capture_output=True,
                             text=True).stdout
        owner_of = {}
        for line in out.splitlines():
            pkgs, sep, path = line.partition(": ")
            if sep and not pkgs.startswith("diversion"):
                owner_of[path] = [p.strip().split(":")[0] for p in pkgs.split(",")]
        owners = {}
        for p in files:
            found = next((owner_of[v] for v in variants(p) if v in owner_of), None)
            self.assertIsNotNone(found, f"{p}: read by the build, owned by no package")
            owners[p] = found
        return owners

    def test_list_is_the_makefiles_minus_the_tests(self):
        listed = containerfile_packages()
        self.assertEqual(listed, sorted(listed), "sorted, one per line")
        self.assertEqual(sorted(set(listed) & self.TEST_ONLY), [])
        self.assertEqual(sorted(set(listed) - makefile_packages()), [],
                         "every build dependency is in the Makefile's DEB_PACKAGES too")

    def test_everything_the_build_reads_comes_from_the_list(self):
        closure = dependency_closure(containerfile_packages())
        missing = {}
        for path, pkgs in self.owners(self.files_the_build_reads()).items():
            if not set(pkgs) & closure:
                missing.setdefault(pkgs[0], []).append(path)
        self.assertEqual({p: sorted(v)[:3] for p, v in missing.items()}, {},
                         "read by the product's build, not installed by the Containerfile")

    def test_nothing_listed_is_unused(self):
        # Each package listed (but the tools the image script runs) provides a file the build
        # reads, directly or through a package it pulls in.
        used = set()
        for pkgs in self.owners(self.files_the_build_reads()).values():
            used.update(pkgs)
        base = dependency_closure([])
        for p in set(containerfile_packages()) - {"python3", "ca-certificates", "build-essential"}:
            with self.subTest(package=p):
                self.assertTrue((dependency_closure([p]) - base) & used,
                                f"{p}: nothing the build reads comes from it")


class SetupScript(unittest.TestCase):
    FAKE_VAULT = textwrap.dedent('''\
        #!{python}
        # A stand-in for the vault CLI: logs each call, answers from a small state file.
        import json, os, sys
        state_path = os.environ["FAKE_VAULT_STATE"]
        state = json.load(open(state_path))
        args = sys.argv[1:]
        entry = {{"args": args}}
        def save():
            with open(os.environ["FAKE_VAULT_LOG"], "a") as f:
                f.write(json.dumps(entry) + "\\n")
            json.dump(state, open(state_path, "w"))
        if args[:2] in (["secrets", "list"], ["auth", "list"]):
            kind = "secrets" if args[0] == "secrets" else "auth"
            print("Path    Type    Accessor    Description")
            print("----    ----    --------    -----------")
            for path, typ in state[kind].items():
                print(f"{{path}}/    {{typ}}    x_123    n/a")
        elif args[:2] in (["secrets", "enable"], ["auth", "enable"]):
            kind = "secrets" if args[0] == "secrets" else "auth"
            path = [a for a in args if a.startswith("-path=")][0][6:]
            state[kind][path] = args[-1]
        elif args[:2] == ["policy", "write"]:
            entry["policy"] = open(args[3]).read() if args[3] != "-" else sys.stdin.read()
        elif args[0] == "read":
            path = args[-1]
            if "/keys/" in path:
                if path not in state["keys"]:
                    save(); print("No value found", file=sys.stderr); sys.exit(2)
                if "-field=type" in args:
                    sys.stdout.write(state["keys"][path])
            elif path.endswith("/role-id"):
                sys.stdout.write("role-0123")
        elif args[0] == "write":
            path = [a for a in args[1:] if not a.startswith("-")][0]
            if "/keys/" in path:
                state["keys"][path] = [a for a in args if a.startswith("type=")][0][5:]
            if path.endswith("/secret-id"):
                sys.stdout.write("secret-4567")
        save()
        ''')

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="vkms-setup-test-")
        self.addCleanup(shutil.rmtree, self.tmp)
        bindir = os.path.join(self.tmp, "bin")
        os.mkdir(bindir)
        fake = os.path.join(bindir, "vault")
        with open(fake, "w", encoding="utf-8") as f:
            f.write(self.FAKE_VAULT.format(python=sys.executable))
        os.chmod(fake, 0o755)
        self.state = os.path.join(self.tmp, "state.json")
        self.log = os.path.join(self.tmp, "calls.jsonl")
        self.set_state(secrets={"cubbyhole": "cubbyhole"}, auth={"token": "token"}, keys={})
        self.path = bindir + os.pathsep + "/usr/bin:/bin"

    def set_state(self, **state):
        with open(self.state, "w", encoding="utf-8") as f:
            json.dump(state, f)

    def run_setup(self, args=None, **env):
        if os.path.exists(self.log):
            os.remove(self.log)
        e = {"PATH": self.path, "FAKE_VAULT_STATE": self.state, "FAKE_VAULT_LOG": self.log}
        e.update(env)
        if args is None:
            args = [os.path.join(self.tmp, "role-id"), os.path.join(self.tmp, "secret-id")]
        r = subprocess.run(["sh", deploy("vault", "setup.sh")] + args,
                           capture_output=True, text=True, env=e, timeout=60)
        calls = []
        if os.path.exists(self.log):
            with open(self.log, encoding="utf-8") as f:
                calls = [json.loads(l) for l in f]
        return r, calls

    @staticmethod
    def find(calls, *prefix):
        return [c for c in calls if c["args"][:len(prefix)] == list(prefix)]

    def test_syntax(self):
        r = subprocess.run(["sh", "-n", deploy("vault", "setup.sh")], capture_output=True,
                           text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        text = read("vault", "setup.sh")
        self.assertTrue(text.startswith("#!/bin/sh\n"))
        self.assertRegex(text, r"(?m)^set -eu$")
        self.assertIn("kms-policy.hcl", text)

    def test_fresh_vault(self):
        r, calls = self.run_setup()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.find(calls, "secrets", "enable")[0]["args"],
                         ["secrets", "enable", "-path=transit", "transit"])
        self.assertEqual(self.find(calls, "write", "transit/keys/kms")[0]["args"],
                         ["write", "transit/keys/kms", "type=aes256-gcm96"])
        policy = self.find(calls, "policy", "write")
        self.assertEqual(len(policy), 1)
        self.assertEqual(policy[0]["args"][2], "vault-kms")
        self.assertEqual(policy[0]["policy"], read("vault", "kms-policy.hcl"),
                         "exactly the shipped policy")
        self.assertEqual(self.find(calls, "auth", "enable")[0]["args"],
                         ["auth", "enable", "-path=approle", "approle"])
        role = self.find(calls, "write", "auth/approle/role/vault-kms")[0]["args"][2:]
        params = dict(p.split("=", 1) for p in role)
        self.assertEqual(params, {
            "token_policies": "vault-kms", "token_no_default_policy": "true",
            "token_type": "service", "token_ttl": "1h", "token_max_ttl": "24h",
            "secret_id_ttl": "720h", "secret_id_num_uses": "0"})
        for name, value in (("role-id", "role-0123"), ("secret-id", "secret-4567")):
            with self.subTest(file=name):
                path = os.path.join(self.tmp, name)
                with open(path, encoding="utf-8") as f:
                    self.assertEqual(f.read().strip(), value)
                self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertNotIn("secret-4567", r.stdout + r.stderr, "the secret-id is never printed")
        self.assertIn("chown 65532:65532", r.stdout)
        self.assertIn("chmod 0400", r.stdout)
        self.assertEqual(sorted(os.listdir(self.tmp)),
                         ["bin", "calls.jsonl", "role-id", "secret-id", "state.json"],
                         "no temporary file left behind")

    def test_rerun_keeps_what_exists_and_fixes_file_modes(self):
        self.set_state(secrets={"transit": "transit"}, auth={"approle": "approle"},
                       keys={"transit/keys/kms": "aes256-gcm96"})
        secret = os.path.join(self.tmp, "secret-id")
        with open(secret, "w", encoding="utf-8") as f:
            f.write("old\n")
        os.chmod(secret, 0o644)
        r, calls = self.run_setup()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.find(calls, "secrets", "enable"), [])
        self.assertEqual(self.find(calls, "auth", "enable"), [])
        self.assertEqual(self.find(calls, "write", "transit/keys/kms"), [])
        self.assertEqual(stat.S_IMODE(os.stat(secret).st_mode), 0o600)

    def test_other_names_rewrite_the_policy_paths_only(self):
        r, calls = self.run_setup(VKMS_TRANSIT_MOUNT="team/transit", VKMS_TRANSIT_KEY="k8s",
                                  VKMS_APPROLE_MOUNT="kms-approle", VKMS_ROLE="kms-node",
                                  VKMS_POLICY="kms-node", VKMS_SECRET_ID_TTL="168h",
                                  VKMS_BOUND_CIDRS="10.0.0.0/24")
        self.assertEqual(r.returncode, 0, r.stderr)
        shipped = read("vault", "kms-policy.hcl")
        expected = (shipped.replace('"transit/encrypt/kms"', '"team/transit/encrypt/k8s"')
                    .replace('"transit/decrypt/kms"', '"team/transit/decrypt/k8s"')
                    .replace('"transit/keys/kms"', '"team/transit/keys/k8s"'))
        self.assertNotEqual(expected, shipped)
        self.assertEqual(self.find(calls, "policy", "write")[0]["policy"], expected)
        self.assertTrue(self.find(calls, "write", "team/transit/keys/k8s"))
        role = dict(p.split("=", 1) for p in
                    self.find(calls, "write", "auth/kms-approle/role/kms-node")[0]["args"][2:])
        self.assertEqual(role["token_policies"], "kms-node")
        self.assertEqual(role["secret_id_ttl"], "168h")
        self.assertEqual(role["secret_id_bound_cidrs"], "10.0.0.0/24")
        self.assertEqual(role["token_bound_cidrs"], "10.0.0.0/24")

    def test_refuses_bad_names_and_wrong_mount_types(self):
        r, calls = self.run_setup(VKMS_TRANSIT_KEY="kms; rm -rf /")
        self.assertEqual(r.returncode, 1)
        self.assertIn("invalid name", r.stderr)
        self.assertEqual(calls, [], "nothing sent to Vault")
        self.set_state(secrets={"transit": "kv"}, auth={}, keys={})
        r, calls = self.run_setup()
        self.assertEqual(r.returncode, 1)
        self.assertIn("not transit", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "secret-id")))

    def test_cert_method_trusts_the_ca_and_writes_no_credential(self):
        ca = os.path.join(self.tmp, "client-ca.pem")
        with open(ca, "w", encoding="utf-8") as f:
            f.write("-----BEGIN CERTIFICATE-----\n")
        r, calls = self.run_setup(args=[], VKMS_AUTH="cert", VKMS_CERT_CA=ca,
                                  VKMS_CERT_ALLOWED_CNS="kms-*.example")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.find(calls, "auth", "enable")[0]["args"],
                         ["auth", "enable", "-path=cert", "cert"])
        role = dict(p.split("=", 1) for p in
                    self.find(calls, "write", "auth/cert/certs/vault-kms")[0]["args"][2:])
        self.assertEqual(role, {
            "certificate": "@" + ca, "token_policies": "vault-kms",
            "token_no_default_policy": "true", "token_type": "service", "token_ttl": "1h",
            "token_max_ttl": "24h", "allowed_common_names": "kms-*.example"})
        self.assertEqual(len(self.find(calls, "policy", "write")), 1)
        self.assertEqual(self.find(calls, "auth", "enable", "-path=approle"), [])
        self.assertIn("--auth-method=cert", r.stdout)
        self.assertEqual(sorted(os.listdir(self.tmp)),
                         ["bin", "calls.jsonl", "client-ca.pem", "state.json"],
                         "no role-id or secret-id file")
        # The CA is required, and a cert mount of another type is refused.
        r, calls = self.run_setup(args=[], VKMS_AUTH="cert")
        self.assertEqual(r.returncode, 2)
        self.assertIn("VKMS_CERT_CA", r.stderr)
        self.assertEqual(calls, [])
        self.set_state(secrets={}, auth={"cert": "approle"}, keys={})
        r, calls = self.run_setup(args=[], VKMS_AUTH="cert", VKMS_CERT_CA=ca)
        self.assertEqual(r.returncode, 1)
        self.assertIn("not cert", r.stderr)
        r, calls = self.run_setup(VKMS_AUTH="ldap")
        self.assertEqual(r.returncode, 2)

    def test_usage(self):
        r = subprocess.run(["sh", deploy("vault", "setup.sh")], capture_output=True, text=True,
                           env={"PATH": self.path})
        self.assertEqual(r.returncode, 2)
        self.assertIn("usage:", r.stderr)


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--source-dir", required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--frontend", required=True)
    ARGS, rest = parser.parse_known_args()
    for attr in ("source_dir", "broker", "frontend"):
        setattr(ARGS, attr, os.path.abspath(getattr(ARGS, attr)))
    unittest.main(argv=[sys.argv[0], "-v"] + rest)


if __name__ == "__main__":
    main()
