#!/usr/bin/python3
"""Checks what `make image` and `make deb` build (tests/package/CMakeLists.txt runs one ctest per
test class, after the fixtures that build both the way the Makefile does):

  check_package.py --source-dir=DIR --build-dir=DIR [ClassName ...]
  check_package.py --source-dir=DIR --build-dir=DIR --action=build-deb|unpack-image|clean

The image: a valid OCI archive (skopeo, umoci) whose layer holds the two binaries, the libraries
they load (from Debian's packages), the CA bundle and three /etc files, nothing else; run as
deploy/static-pod.yaml says; the same bytes when built again; its SBOM lists every package with
a file in it. The package: lintian has no error, its files, conffiles and Depends are what they
should be, it installs (into a throwaway overlay of this machine's root), its unit passes
`systemd-analyze verify`, and it is removed and purged as Debian policy wants.
"""
import argparse
import fcntl
import glob
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest

try:
    import yaml
except ImportError:  # make deps installs python3-yaml
    sys.exit("check_package.py: PyYAML is missing (Debian: apt-get install python3-yaml)")

ARGS = None

IMAGE_NAME = "localhost/vault-kms"
BINARIES = ("vault-kms-broker", "vault-kms-frontend")
ETC_FILES = ("etc/passwd", "etc/group", "etc/nsswitch.conf")
CA_BUNDLE = "etc/ssl/certs/ca-certificates.crt"
SHELLS = re.compile(r"(^|/)(sh|bash|dash|ash|zsh|busybox|toybox|dpkg|apt|apt-get|perl|python3?)$")

# Warnings lintian gives the package that stay, each with its reason (README, "Install"). A new
# warning fails the test: fix it or add it here with a reason.
LINTIAN_ACCEPTED = {
    # /etc/vault-kms/vault-kms.env is 0600 on purpose; overridden in the package, so lintian
    # reports it only as an override in use (not a warning).
}


def source(*parts):
    return os.path.join(ARGS.source_dir, *parts)


def build(*parts):
    return os.path.join(ARGS.build_dir, *parts)


def run(argv, **kw):
    kw.setdefault("timeout", 300)
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r.stdout


def version():
    return run([build("vault-kms-broker"), "--version"], env={}).split()[-1]


def arch():
    return run(["dpkg", "--print-architecture"]).strip()


def epoch():
    e = os.environ.get("SOURCE_DATE_EPOCH") or run(
        ["git", "-C", ARGS.source_dir, "log", "-1", "--format=%ct"]).strip()
    return int(e)


def image_path():
    return build("vault-kms-image.tar")


def deb_path():
    return build(f"vault-kms_{version()}_{arch()}.deb")


def read_tar(data):
    """{name: (TarInfo, bytes or None)} of a tar held in memory, in archive order."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            content = tar.extractfile(m).read() if m.isfile() else None
            out[m.name] = (m, content)
    return out


class Image:
    """The archive `make image` wrote, opened once per test class."""

    def __init__(self, path=None):
        with open(path or image_path(), "rb") as f:
            self.archive = f.read()
        self.members = read_tar(self.archive)
        self.index = json.loads(self.members["index.json"][1])
        self.descriptor = self.index["manifests"][0]
        self.digest = self.descriptor["digest"]
        self.manifest = json.loads(self.blob(self.digest))
        self.config = json.loads(self.blob(self.manifest["config"]["digest"]))
        self.layer_gz = self.blob(self.manifest["layers"][0]["digest"])
        self.layer = read_tar(gzip.decompress(self.layer_gz))

    def blob(self, digest):
        return self.members["blobs/sha256/" + digest.split(":", 1)[1]][1]

    def files(self):
        return {n: c for n, (m, c) in self.layer.items() if m.isfile()}

    def resolve(self, name, depth=0):
        """The layer's own member a path leads to, following the layer's symlinks."""
        assert depth < 20, f"symlink loop at {name}"
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            m = self.layer.get(prefix, (None,))[0]
            assert m is not None, f"{name}: {prefix} is not in the image"
            if m.issym():
                target = m.linkname if m.linkname.startswith("/") else os.path.join(
                    os.path.dirname("/" + prefix), m.linkname)
                rest = "/".join(parts[i:])
                return self.resolve(os.path.normpath(target + ("/" + rest if rest else "")),
                                    depth + 1)
        return "/".join(parts)


def static_pod_container():
    with open(source("deploy", "static-pod.yaml"), encoding="utf-8") as f:
        return yaml.safe_load(f)["spec"]["containers"][0]


class ImageArchive(unittest.TestCase):
    """A valid OCI image, as skopeo and umoci read it, configured as the static Pod runs it."""

    @classmethod
    def setUpClass(cls):
        cls.image = Image()

    def test_skopeo_reads_the_archive_and_its_digest(self):
        ref = "oci-archive:" + image_path()
        info = json.loads(run(["skopeo", "inspect", ref]))
        self.assertEqual(info["Digest"], self.image.digest)
        self.assertEqual(info["Os"], "linux")
        self.assertEqual(len(info["Layers"]), 1)
        self.assertEqual(info["Labels"]["org.opencontainers.image.version"], version())
        # The same image by its tag (org.opencontainers.image.ref.name).
        tagged = json.loads(run(["skopeo", "inspect", f"{ref}:{version()}"]))
        self.assertEqual(tagged["Digest"], self.image.digest)
        raw = run(["skopeo", "inspect", "--raw", ref]).encode()
        self.assertEqual("sha256:" + hashlib.sha256(raw).hexdigest(), self.image.digest)

    def test_umoci_validates_the_layout(self):
        with tempfile.TemporaryDirectory(prefix="vkms-umoci-") as tmp:
            with tarfile.open(image_path()) as tar:
                tar.extractall(tmp)
            stat = json.loads(run(["umoci", "stat", "--json", "--image", f"{tmp}:{version()}"]))
            self.assertEqual(len(stat["history"]), 1)
            run(["umoci", "ls", "--layout", tmp])

    def test_names(self):
        ref = f"{IMAGE_NAME}:{version()}"
        ann = self.image.descriptor["annotations"]
        self.assertEqual(ann["io.containerd.image.name"], ref)
        self.assertEqual(ann["org.opencontainers.image.ref.name"], version())
        self.assertEqual(static_pod_container()["image"], ref, "deploy/static-pod.yaml's image")
        with open(source("README.md"), encoding="utf-8") as f:
            readme = f.read()
        self.assertIn(ref.replace(version(), "<version>"), readme)
        for cmd in ("ctr -n k8s.io images import build/vault-kms-image.tar",
                    "podman load -i build/vault-kms-image.tar"):
            self.assertIn(cmd, readme)

    def test_runs_as_the_static_pod_expects(self):
        cfg = self.image.config["config"]
        c = static_pod_container()
        self.assertEqual(cfg["Entrypoint"], c["command"])
        self.assertEqual(cfg["User"], f"{c['securityContext']['runAsUser']}:"
                                      f"{c['securityContext']['runAsGroup']}")
        self.assertIs(c["securityContext"]["readOnlyRootFilesystem"], True)
        self.assertEqual(self.image.config["os"], "linux")
        platform = self.image.descriptor["platform"]
        self.assertEqual(platform["architecture"], self.image.config["architecture"])

    def test_media_types(self):
        self.assertEqual(json.loads(self.image.members["oci-layout"][1]),
                         {"imageLayoutVersion": "1.0.0"})
        self.assertEqual(self.image.manifest["mediaType"],
                         "application/vnd.oci.image.manifest.v1+json")
        self.assertEqual(self.image.manifest["layers"][0]["mediaType"],
                         "application/vnd.oci.image.layer.v1.tar+gzip")
        diff_id = "sha256:" + hashlib.sha256(gzip.decompress(self.image.layer_gz)).hexdigest()
        self.assertEqual(self.image.config["rootfs"]["diff_ids"], [diff_id])


class ImageContents(unittest.TestCase):
    """The two binaries, what they load, the CA bundle, three /etc files: nothing else."""

    @classmethod
    def setUpClass(cls):
        cls.image = Image()

    def test_no_shell_and_no_package_manager(self):
        for name in self.image.layer:
            self.assertIsNone(SHELLS.search(name), f"{name}: a shell or an interpreter")

    def test_every_file_is_a_binary_a_library_or_one_of_four(self):
        for name, content in self.image.files().items():
            with self.subTest(file=name):
                if name in ETC_FILES + (CA_BUNDLE,):
                    continue
                if name.startswith("usr/local/bin/"):
                    self.assertIn(os.path.basename(name), BINARIES)
                    continue
                self.assertRegex(name, r"^usr/lib/[a-z0-9_-]+-linux-gnu[a-z0-9_]*/[^/]+\.so(\.|$)")
                self.assertEqual(content[:4], b"\x7fELF")

    def test_binaries_are_the_build(self):
        for b in BINARIES:
            with open(build(b), "rb") as f:
                self.assertEqual(self.image.files()[f"usr/local/bin/{b}"], f.read(), b)

    def test_owners_modes_times_and_order(self):
        names = list(self.image.layer)
        self.assertEqual(names, sorted(names))
        for name, (m, _) in self.image.layer.items():
            with self.subTest(entry=name):
                self.assertEqual((m.uid, m.gid), (0, 0))
                self.assertEqual(m.mtime, epoch())
                self.assertIn(m.type, (tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE))
                if not m.issym():  # a link's own mode means nothing
                    self.assertEqual(m.mode & 0o7022, 0, "no set-uid/set-gid, not group/other "
                                                         "writable")

    def test_loader_and_libraries_resolve_inside(self):
        interp = re.search(r"interpreter: (\S+)\]", run(["readelf", "-l", build(BINARIES[0])]))
        loader = self.image.resolve(interp.group(1))
        self.assertIn(loader, self.image.files())
        for name, (m, _) in self.image.layer.items():
            if m.issym():
                with self.subTest(link=name):
                    self.assertIn(self.image.resolve(name), self.image.layer)

    def test_users(self):
        files = self.image.files()
        passwd = [l.split(":") for l in files["etc/passwd"].decode().splitlines()]
        self.assertEqual([(p[0], p[2], p[3]) for p in passwd],
                         [("root", "0", "0"), ("vault-kms", "65532", "65532"),
                          ("vault-kms-frontend", "65533", "65533")])
        self.assertEqual({p[6] for p in passwd}, {"/usr/sbin/nologin"})
        groups = [l.split(":")[:3] for l in files["etc/group"].decode().splitlines()]
        self.assertEqual(groups, [["root", "x", "0"], ["vault-kms", "x", "65532"],
                                  ["vault-kms-frontend", "x", "65533"]])
        # The broker's defaults are these uids (broker/config.cc).
        help_text = run([build("vault-kms-broker"), "--help"], env={})
        self.assertRegex(help_text, r"--broker-user=.*\(default 65532\)")
        self.assertRegex(help_text, r"--frontend-user=.*\(default 65533\)")

    def test_ca_bundle_is_debians(self):
        bundle = self.image.files()[CA_BUNDLE].decode()
        certs = glob.glob("/usr/share/ca-certificates/mozilla/*.crt")
        self.assertGreater(len(certs), 100)
        self.assertEqual(bundle.count("-----BEGIN CERTIFICATE-----"), len(certs))


class ImageReproducible(unittest.TestCase):
    """Built again from copies of the binaries (other directory, times and modes): the same
    bytes. Another SOURCE_DATE_EPOCH: another digest. The binaries name no build directory."""

    def rebuild(self, tmp, epoch_value):
        bdir = os.path.join(tmp, "b")
        os.mkdir(bdir)
        for i, b in enumerate(BINARIES):
            dst = os.path.join(bdir, b)
            shutil.copyfile(build(b), dst)
            os.chmod(dst, 0o700 + i * 0o50)
            os.utime(dst, (1000000000 + i, 1000000000 + i))
        out = os.path.join(tmp, "image.tar")
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch_value))
        run(["/usr/bin/python3", source("packaging", "image", "build-image.py"),
             "--build-dir", bdir, "--source-dir", ARGS.source_dir, "--out", out,
             "--sbom", os.path.join(tmp, "sbom.json")], env=env, cwd=tmp)
        with open(out, "rb") as f:
            return f.read()

    def test_same_bytes_from_another_directory(self):
        with open(image_path(), "rb") as f:
            made = f.read()
        with tempfile.TemporaryDirectory(prefix="vkms-image-") as tmp:
            self.assertEqual(hashlib.sha256(self.rebuild(tmp, epoch())).hexdigest(),
                             hashlib.sha256(made).hexdigest())

    def test_another_epoch_gives_another_digest(self):
        with tempfile.TemporaryDirectory(prefix="vkms-image-") as tmp:
            data = self.rebuild(tmp, epoch() + 1)
        other = Image.__new__(Image)
        other.members = read_tar(data)
        index = json.loads(other.members["index.json"][1])
        self.assertNotEqual(index["manifests"][0]["digest"], Image().digest)
        for m, _ in read_tar(data).values():
            self.assertEqual(m.mtime, epoch() + 1)

    def test_binaries_name_no_build_directory(self):
        # -ffile-prefix-map (CMakeLists.txt): __FILE__ and debug info are relative, so another
        # checkout of the commit gives the same binaries.
        for b in BINARIES:
            with open(build(b), "rb") as f:
                data = f.read()
            for d in {os.path.realpath(ARGS.source_dir), os.path.realpath(ARGS.build_dir)}:
                with self.subTest(binary=b, directory=d):
                    self.assertFalse(d.encode() in data, f"{b} holds the path {d}")


class ImageSbom(unittest.TestCase):
    """SPDX 2.3: every Debian package with a file in the image (name, version, architecture)
    and every file, with the SHA-256 of what the layer holds."""

    @classmethod
    def setUpClass(cls):
        cls.image = Image()
        with open(build("vault-kms-image.spdx.json"), encoding="utf-8") as f:
            cls.sbom = json.load(f)

    def test_document(self):
        s = self.sbom
        self.assertEqual(s["spdxVersion"], "SPDX-2.3")
        self.assertEqual(s["dataLicense"], "CC0-1.0")
        self.assertEqual(s["SPDXID"], "SPDXRef-DOCUMENT")
        self.assertTrue(s["documentNamespace"].startswith("https://"))
        image = next(p for p in s["packages"] if p["SPDXID"] == "SPDXRef-Image")
        self.assertEqual(image["checksums"][0]["checksumValue"], self.image.digest.split(":")[1])
        ids = {p["SPDXID"] for p in s["packages"]} | {f["SPDXID"] for f in s["files"]} | {
            "SPDXRef-DOCUMENT"}
        for r in s["relationships"]:
            self.assertIn(r["spdxElementId"], ids)
            self.assertIn(r["relatedSpdxElement"], ids)

    def test_packages_are_the_owners_of_the_files(self):
        libs = [n for n in self.image.files() if ".so" in n]
        out = subprocess.run(["dpkg-query", "-S"] + ["/" + n for n in libs] +
                             ["/" + n[4:] for n in libs], capture_output=True, text=True).stdout
        owners = {line.split(": ")[0].split(":")[0] for line in out.splitlines()}
        owners.add("ca-certificates")
        listed = {}
        for p in self.sbom["packages"]:
            ref = next((r["referenceLocator"] for r in p.get("externalRefs", [])
                        if r["referenceLocator"].startswith("pkg:deb/")), None)
            if ref:
                listed[p["name"]] = (p["versionInfo"], ref)
        self.assertEqual(sorted(listed), sorted(owners))
        for name, (ver, purl) in listed.items():
            with self.subTest(package=name):
                installed = run(["dpkg-query", "-W", "-f=${Version} ${Architecture}", name])
                v, a = installed.split()
                self.assertEqual(ver, v)
                self.assertRegex(purl, "^" + re.escape(f"pkg:deb/debian/{name}@{v}?arch={a}"
                                                       "&distro=debian-") + r"[0-9]+$")

    def test_every_file_with_its_checksum(self):
        by_name = {f["fileName"]: f for f in self.sbom["files"]}
        files = self.image.files()
        self.assertEqual(sorted(by_name), sorted("./" + n for n in files))
        for name, content in files.items():
            sums = {c["algorithm"]: c["checksumValue"] for c in by_name["./" + name]["checksums"]}
            self.assertEqual(sums["SHA256"], hashlib.sha256(content).hexdigest(), name)


# ---- The Debian package ----------------------------------------------------------------------

def deb_field(field):
    return run(["dpkg-deb", "-f", deb_path(), field]).strip()


def needed_packages():
    """The packages owning the libraries the binaries link directly (what dpkg-shlibdeps maps)."""
    cache = run(["/sbin/ldconfig", "-p"])
    paths = {}
    for line in cache.splitlines():
        m = re.match(r"\s+(\S+) \(libc6[^)]*\) => (\S+)", line)
        if m:
            paths.setdefault(m.group(1), m.group(2))
    libs = set()
    for b in BINARIES:
        libs |= set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                               run(["readelf", "-d", build(b)])))
    queries = []
    for so in libs:
        p = paths[so]
        queries += [p, os.path.realpath(p)]
        queries += [q[4:] if q.startswith("/usr/") else "/usr" + q for q in list(queries[-2:])]
    out = subprocess.run(["dpkg-query", "-S"] + sorted(set(queries)), capture_output=True,
                         text=True).stdout
    return {line.split(": ")[0].split(":")[0] for line in out.splitlines()}


class DebControl(unittest.TestCase):
    def test_fields(self):
        self.assertEqual(deb_field("Package"), "vault-kms")
        self.assertEqual(deb_field("Version"), version())
        self.assertEqual(deb_field("Architecture"), arch())
        self.assertEqual(deb_field("Section"), "admin")
        self.assertEqual(deb_field("Priority"), "optional")
        self.assertEqual(deb_field("Recommends"), "ca-certificates")

    def test_depends_come_from_the_libraries(self):
        depends = [d.strip() for d in deb_field("Depends").split(",")]
        names = {re.match(r"[a-z0-9.+-]+", d).group(0) for d in depends}
        self.assertEqual(names, needed_packages() | {"adduser"})
        # Versioned by dpkg-shlibdeps, from each library's symbols: not typed by hand.
        self.assertTrue(any(re.fullmatch(r"libc6 \(>= [0-9.]+\)", d) for d in depends), depends)

    def test_maintainer_scripts(self):
        with tempfile.TemporaryDirectory(prefix="vkms-deb-") as tmp:
            run(["dpkg-deb", "-e", deb_path(), tmp])
            self.assertEqual(sorted(os.listdir(tmp)),
                             ["conffiles", "control", "md5sums", "postinst", "postrm", "prerm"])
            with open(os.path.join(tmp, "conffiles"), encoding="utf-8") as f:
                self.assertEqual(f.read().split(), ["/etc/vault-kms/vault-kms.env"])
            for script in ("postinst", "postrm", "prerm"):
                path = os.path.join(tmp, script)
                self.assertEqual(os.stat(path).st_mode & 0o777, 0o755)
                run(["sh", "-n", path])
            with open(os.path.join(tmp, "postinst"), encoding="utf-8") as f:
                postinst = f.read()
            self.assertIn("adduser --system", postinst)


EXPECTED_CONTENTS = {
    # path: (mode, link target or None)
    "./etc/vault-kms/vault-kms.env": ("-rw-------", None),
    "./lib/systemd/system/vault-kms.service": ("-rw-r--r--", None),
    "./usr/libexec/vault-kms/vault-kms-broker": ("-rwxr-xr-x", None),
    "./usr/libexec/vault-kms/vault-kms-frontend": ("-rwxr-xr-x", None),
    "./usr/sbin/vault-kms-broker": ("lrwxrwxrwx", "../libexec/vault-kms/vault-kms-broker"),
    "./usr/share/doc/vault-kms/changelog.gz": ("-rw-r--r--", None),
    "./usr/share/doc/vault-kms/copyright": ("-rw-r--r--", None),
    "./usr/share/doc/vault-kms/examples/encryption-config.yaml": ("-rw-r--r--", None),
    "./usr/share/doc/vault-kms/examples/kms-policy.hcl": ("-rw-r--r--", None),
    "./usr/share/doc/vault-kms/examples/kube-apiserver-patch.md": ("-rw-r--r--", None),
    "./usr/share/doc/vault-kms/examples/setup.sh": ("-rwxr-xr-x", None),
    "./usr/share/lintian/overrides/vault-kms": ("-rw-r--r--", None),
    "./usr/share/man/man8/vault-kms-broker.8.gz": ("-rw-r--r--", None),
}


class DebContents(unittest.TestCase):
    def test_files_modes_and_owners(self):
        files, dirs = {}, set()
        for line in run(["dpkg-deb", "-c", deb_path()]).splitlines():
            mode, owner, _size, _date, _time, rest = line.split(None, 5)
            self.assertEqual(owner, "root/root", line)
            if mode.startswith("d"):
                self.assertEqual(mode, "drwxr-xr-x", line)
                dirs.add(rest.rstrip("/"))
                continue
            path, _, target = rest.partition(" -> ")
            files[path] = (mode, target or None)
        self.assertEqual(files, EXPECTED_CONTENTS)
        for path in files:
            self.assertIn(os.path.dirname(path), dirs)

    def test_binaries_stripped_and_the_build(self):
        with tempfile.TemporaryDirectory(prefix="vkms-deb-") as tmp:
            run(["dpkg-deb", "-x", deb_path(), tmp])
            for b in BINARIES:
                path = os.path.join(tmp, "usr/libexec/vault-kms", b)
                self.assertNotIn(".symtab", run(["readelf", "-S", path]), b)
                # Stripped copies of the build: the same code.
                with open(path, "rb") as f:
                    packaged = f.read()
                stripped = os.path.join(tmp, b + ".stripped")
                run(["strip", "-o", stripped, build(b)])
                with open(stripped, "rb") as f:
                    self.assertEqual(packaged, f.read(), b)
            unit = open(os.path.join(tmp, "lib/systemd/system/vault-kms.service")).read()
            env = open(os.path.join(tmp, "etc/vault-kms/vault-kms.env")).read()
        with open(source("deploy", "vault-kms.service"), encoding="utf-8") as f:
            self.assertEqual(unit, f.read().replace("/usr/local/bin/vault-kms-broker",
                                                    "/usr/sbin/vault-kms-broker"))
        with open(source("deploy", "vault-kms.env"), encoding="utf-8") as f:
            self.assertEqual(env, f.read())

    def test_changelog_matches_the_version(self):
        with tempfile.TemporaryDirectory(prefix="vkms-deb-") as tmp:
            run(["dpkg-deb", "-x", deb_path(), tmp])
            with gzip.open(os.path.join(tmp, "usr/share/doc/vault-kms/changelog.gz")) as f:
                log = f.read().decode()
            changelog = os.path.join(tmp, "changelog")
            with open(changelog, "w", encoding="utf-8") as f:
                f.write(log)
            self.assertEqual(run(["dpkg-parsechangelog", "-l", changelog, "-S", "Version"]).strip(),
                             version())
            man = run(["zcat", os.path.join(tmp, "usr/share/man/man8/vault-kms-broker.8.gz")])
            self.assertIn(r"\-\-approle\-secret\-id\-file", man, "the flags, from --help")


class DebLintian(unittest.TestCase):
    def test_no_error_and_only_accepted_warnings(self):
        r = subprocess.run(["lintian", "--allow-root", "--display-info", "--show-overrides",
                            deb_path()], capture_output=True, text=True, timeout=600)
        print(r.stdout + r.stderr)
        tags = re.findall(r"^([EWIPO]): vault-kms[^:]*: (\S+)", r.stdout, re.M)
        self.assertEqual([t for t in tags if t[0] == "E"], [], r.stdout)
        warnings = {t[1] for t in tags if t[0] == "W"}
        self.assertEqual(sorted(warnings - set(LINTIAN_ACCEPTED)), [], r.stdout)
        self.assertNotIn("vault-kms: unused-override", r.stdout)


# The install, upgrade, conffile, remove and purge, inside a throwaway overlay of this machine's
# root (tmpfs upper layer, private mount namespace): real dpkg, real maintainer scripts, nothing
# written to the machine. Each step prints "STEP name rc" and what the test checks.
INSTALL_SCRIPT = r'''
set -u
T="$1"; DEB="$2"
mount -t tmpfs tmpfs "$T"
mkdir "$T/upper" "$T/work" "$T/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$T/upper,workdir=$T/work" "$T/root"
mount -t proc proc "$T/root/proc"
mount --rbind /dev "$T/root/dev"
mount -t tmpfs tmpfs "$T/root/run"
mount -t tmpfs tmpfs "$T/root/tmp"
cp "$DEB" "$T/root/tmp/vault-kms.deb"
chroot "$T/root" /bin/sh -c '
step() { name=$1; shift; "$@" > /tmp/out 2>&1; rc=$?; echo "STEP $name $rc"; sed "s/^/  | /" /tmp/out; }
export LC_ALL=C PATH=/usr/sbin:/usr/bin:/sbin:/bin
step install dpkg -i /tmp/vault-kms.deb
step status dpkg-query -W -f="\${Status} \${Version}\n" vault-kms
step users getent passwd vault-kms vault-kms-frontend
step groups getent group vault-kms vault-kms-frontend
step enabled readlink /etc/systemd/system/multi-user.target.wants/vault-kms.service
step verify systemd-analyze verify /lib/systemd/system/vault-kms.service
step version /usr/sbin/vault-kms-broker --version
echo "VAULT_ADDR=https://vault.test:8200" >> /etc/vault-kms/vault-kms.env
step reinstall dpkg -i /tmp/vault-kms.deb
step kept grep -c "^VAULT_ADDR=https://vault.test:8200" /etc/vault-kms/vault-kms.env
step users-once sh -c "grep -c ^vault-kms: /etc/passwd"
step remove dpkg --remove vault-kms
step removed-binary test ! -e /usr/libexec/vault-kms/vault-kms-broker
step conffile-stays test -f /etc/vault-kms/vault-kms.env
step purge dpkg --purge vault-kms
step purged-dir test ! -e /etc/vault-kms
step purged-enable test ! -e /etc/systemd/system/multi-user.target.wants/vault-kms.service
step users-stay getent passwd vault-kms
step not-installed dpkg-query -W vault-kms
step reinstall-with-creds sh -c "dpkg -i /tmp/vault-kms.deb && touch /etc/vault-kms/secret-id && dpkg --purge vault-kms"
step creds-stay test -f /etc/vault-kms/secret-id
'
'''


def host_state():
    """What the install must leave untouched on this machine."""
    state = {}
    for f in ("/etc/passwd", "/etc/group", "/etc/shadow", "/var/lib/dpkg/status"):
        with open(f, "rb") as fh:
            state[f] = hashlib.sha256(fh.read()).hexdigest()
    state["/etc/vault-kms"] = os.path.exists("/etc/vault-kms")
    state["/lib/systemd/system/vault-kms.service"] = os.path.exists(
        "/lib/systemd/system/vault-kms.service")
    return state


class DebInstall(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("mount namespaces, overlayfs and chroot need root (CI is root)")
        cls.before = host_state()
        tmp = tempfile.mkdtemp(prefix="vkms-deb-root-")
        try:
            # The host's dpkg database is the overlay's lower layer: hold its lock so no apt run
            # changes it under the install (waits for one in progress).
            with open("/var/lib/dpkg/lock-frontend", "a") as lock:
                deadline = time.monotonic() + 600
                while True:
                    try:
                        fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(5)
                r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                    INSTALL_SCRIPT, "sh", tmp, deb_path()],
                                   capture_output=True, text=True, timeout=600)
        finally:
            os.rmdir(tmp)
        cls.output = r.stdout + r.stderr
        cls.steps = {}
        current = None
        for line in r.stdout.splitlines():
            m = re.match(r"^STEP (\S+) (\d+)$", line)
            if m:
                current = m.group(1)
                cls.steps[current] = (int(m.group(2)), "")
            elif current and line.startswith("  | "):
                rc, out = cls.steps[current]
                cls.steps[current] = (rc, out + line[4:] + "\n")
        cls.after = host_state()

    def step(self, name, rc=0):
        self.assertIn(name, self.steps, self.output)
        self.assertEqual(self.steps[name][0], rc, f"step {name}:\n{self.output}")
        return self.steps[name][1]

    def test_installs_with_its_users_and_enabled_unit(self):
        self.step("install")
        self.assertEqual(self.step("status").strip(), f"install ok installed {version()}")
        users = [l.split(":") for l in self.step("users").splitlines()]
        self.assertEqual([u[0] for u in users], ["vault-kms", "vault-kms-frontend"])
        for u in users:
            self.assertLess(int(u[2]), 1000, "a system user")
            self.assertEqual(u[5:], ["/nonexistent", "/usr/sbin/nologin"])
        self.assertEqual([g.split(":")[0] for g in self.step("groups").splitlines()],
                         ["vault-kms", "vault-kms-frontend"])
        self.assertEqual(self.step("enabled").strip(), "/lib/systemd/system/vault-kms.service")
        self.assertEqual(self.step("version").strip(), f"vault-kms {version()}")

    def test_unit_passes_systemd_analyze_verify(self):
        self.assertEqual(self.step("verify"), "", "systemd-analyze verify complains")

    def test_upgrade_keeps_the_edited_conffile_and_the_users(self):
        self.step("reinstall")
        self.assertEqual(self.step("kept").strip(), "1")
        self.assertEqual(self.step("users-once").strip(), "1")

    def test_remove_then_purge(self):
        self.step("remove")
        self.step("removed-binary")
        self.step("conffile-stays")
        self.step("purge")
        self.step("purged-dir")
        self.step("purged-enable")
        self.step("users-stay")
        self.assertEqual(self.step("not-installed", rc=1).strip(),
                         "dpkg-query: no packages found matching vault-kms")
        self.step("reinstall-with-creds")
        self.step("creds-stay")

    def test_machine_left_as_found(self):
        self.assertEqual(self.after, self.before)


# ---- Fixtures (ctest FIXTURES_SETUP / FIXTURES_CLEANUP) ------------------------------------

def build_deb():
    for old in glob.glob(build("vault-kms_*.deb")):
        os.remove(old)
    env = dict(os.environ)
    env.setdefault("SOURCE_DATE_EPOCH", str(epoch()))
    subprocess.run(["cmake", "--build", ARGS.build_dir, "--target", "vkms-deb-files"], env=env,
                   check=True)
    subprocess.run(["cpack", "-G", "DEB"], cwd=ARGS.build_dir, env=env, check=True)
    if not os.path.exists(deb_path()):
        sys.exit(f"cpack wrote no {deb_path()}")
    print(run(["dpkg-deb", "-I", deb_path()]))


def unpack_image():
    bundle = build("package-test", "bundle")
    shutil.rmtree(build("package-test"), ignore_errors=True)
    layout = build("package-test", "layout")
    os.makedirs(layout)
    with tarfile.open(image_path()) as tar:
        tar.extractall(layout)
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:{version()}", bundle], check=True)
    rootfs = os.path.join(bundle, "rootfs")
    # umoci's runtime config: the image's entry point and user, as a runtime would run it.
    with open(os.path.join(bundle, "config.json"), encoding="utf-8") as f:
        spec = json.load(f)
    c = static_pod_container()
    if spec["process"]["args"][:1] != c["command"] or spec["process"]["user"]["uid"] != 0:
        sys.exit(f"umoci's config.json runs {spec['process']['args']} as "
                 f"{spec['process']['user']}")
    print(f"unpacked {image_path()} into {rootfs}")


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--source-dir", required=True)
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--action", choices=("build-deb", "unpack-image", "clean"))
    ARGS, rest = parser.parse_known_args()
    ARGS.source_dir = os.path.abspath(ARGS.source_dir)
    ARGS.build_dir = os.path.abspath(ARGS.build_dir)
    if ARGS.action == "build-deb":
        build_deb()
    elif ARGS.action == "unpack-image":
        unpack_image()
    elif ARGS.action == "clean":
        shutil.rmtree(build("package-test"), ignore_errors=True)
    else:
        unittest.main(argv=[sys.argv[0], "-v"] + rest)


if __name__ == "__main__":
    main()
