#!/usr/bin/python3
"""Assembles the vault-kms OCI image from the built binaries and this machine's Debian packages,
with no registry and no daemon: `make image` writes build/vault-kms-image.tar (an OCI image
layout in a tar: oci-layout, index.json, blobs/sha256/{config,manifest,one gzip layer}) and an
SPDX 2.3 SBOM beside it, and prints the image reference and digest.

The root filesystem holds only the broker and the frontend (side by side in /usr/local/bin: the
broker starts the frontend found next to itself), every shared library they load (ldd's closure,
the dynamic loader included, each file taken from the Debian package that owns it), Debian's CA
bundle, and /etc/passwd, /etc/group and /etc/nsswitch.conf for root and the two users. No shell,
no package manager. tests/package checks that, and runs the broker from the unpacked image.

Reproducible: the same binaries and the same Debian packages give the same bytes, hence the same
digest. Every file time is SOURCE_DATE_EPOCH (default: the commit's time), entries are sorted,
owners are 0:0, modes are normalised, the layer is compressed with `gzip -n`, and the config
holds no time but SOURCE_DATE_EPOCH.

Usage: build-image.py --build-dir build [--out FILE] [--sbom FILE]   (SOURCE_DATE_EPOCH from env)
       build-image.py --build-dir build --rootfs DIR   (the root filesystem only, for
                                                        deploy/Containerfile's final stage)
"""
import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
import tempfile
import uuid

NAME = "localhost/vault-kms"
BIN_DIR = "/usr/local/bin"  # deploy/static-pod.yaml's command
BINARIES = ("vault-kms-broker", "vault-kms-frontend")
ENTRYPOINT = [BIN_DIR + "/vault-kms-broker"]
# Root: the broker needs it to switch itself to 65532 and the frontend to 65533 (setresuid);
# it refuses to run either process as root (deploy/static-pod.yaml, runAsUser: 0).
USER = "0:0"
# The defaults of --broker-user and --frontend-user (broker/config.cc). Named, so that `ps` and
# the audit log show who runs; the broker resolves the numbers through /etc/passwd.
USERS = (("root", 0, "/root"), ("vault-kms", 65532, "/nonexistent"),
         ("vault-kms-frontend", 65533, "/nonexistent"))
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
CA_SOURCE_DIR = "/usr/share/ca-certificates/mozilla"
OCI_ARCH = {"amd64": ("amd64", None), "arm64": ("arm64", "v8"), "armhf": ("arm", "v7"),
            "i386": ("386", None), "ppc64el": ("ppc64le", None), "s390x": ("s390x", None),
            "riscv64": ("riscv64", None)}

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_INDEX = "application/vnd.oci.image.index.v1+json"


def fail(message):
    sys.exit(f"build-image: {message}")


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, check=True, **kw).stdout


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


class RootFs:
    """The image's files, keyed by absolute path: ("dir",), ("file", bytes, mode), ("link", target).
    `origin` maps each file to the host path it was copied from (for the SBOM)."""

    def __init__(self):
        self.entries = {"/": ("dir",)}
        self.origin = {}

    def add_dirs(self, path):
        parent = os.path.dirname(path)
        while parent not in self.entries:
            self.entries[parent] = ("dir",)
            parent = os.path.dirname(parent)

    def add(self, path, entry, origin=None):
        old = self.entries.get(path)
        if old is not None and old != entry:
            fail(f"{path} added twice with different content")
        self.add_dirs(path)
        self.entries[path] = entry
        if origin:
            self.origin[path] = origin

    def add_bytes(self, path, data, mode=0o644, origin=None):
        self.add(path, ("file", data, mode), origin)

    def add_host_path(self, path, depth=0):
        """Copies `path` as this machine resolves it: every symlink met on the way (merged /usr,
        /lib64/ld-linux-x86-64.so.2, SONAME links) becomes the same symlink in the image, so
        the paths ld.so and ldd print resolve inside the image as they do here."""
        if depth > 40:
            fail(f"too many symlinks resolving {path}")
        parts = [p for p in path.split("/") if p]
        current = ""
        for i, part in enumerate(parts):
            current += "/" + part
            st = os.lstat(current)
            rest = "/".join(parts[i + 1:])
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(current)
                self.add(current, ("link", target))
                # No symlink remains in dirname(current): ".." in the target is safe to fold.
                resolved = os.path.normpath(os.path.join(os.path.dirname(current), target))
                return self.add_host_path(resolved + ("/" + rest if rest else ""), depth + 1)
            if stat.S_ISDIR(st.st_mode) and rest:
                continue
            if not stat.S_ISREG(st.st_mode) or rest:
                fail(f"{current}: not a regular file")
            with open(current, "rb") as f:
                data = f.read()
            mode = 0o755 if st.st_mode & 0o111 else 0o644
            self.add_bytes(current, data, mode, origin=current)
            return current
        fail(f"{path}: a directory, not a file")

    def files(self):
        return {p: e for p, e in self.entries.items() if e[0] == "file"}


def shared_libraries(binary):
    """ldd's closure of `binary`: every library path, and the dynamic loader's."""
    out = run(["ldd", binary], env={"LC_ALL": "C", "PATH": os.environ.get("PATH", "")})
    paths = []
    for line in out.splitlines():
        line = line.strip()
        if "not found" in line:
            fail(f"{binary}: {line}")
        m = re.match(r"^(?:\S+ => )?(/\S+) \(0x[0-9a-f]+\)$", line)
        if m:
            paths.append(m.group(1))
        elif not re.match(r"^\S+ \(0x[0-9a-f]+\)$", line):  # linux-vdso.so.1: in the kernel
            fail(f"{binary}: cannot parse ldd's line {line!r}")
    interp = re.search(r"\[Requesting program interpreter: (\S+)\]",
                       run(["readelf", "-l", binary]))
    if not interp:
        fail(f"{binary}: no program interpreter (not a dynamic executable?)")
    if interp.group(1) not in paths:
        paths.append(interp.group(1))
    return paths


def dpkg_owners(paths):
    """{host path: (package, version, architecture)} for files Debian's packages ship. dpkg knows
    a merged-/usr file under one of /lib/... and /usr/lib/..., so both are asked."""
    def variants(p):
        yield p
        yield p[4:] if p.startswith("/usr/") else "/usr" + p

    queries = sorted({v for p in paths for v in variants(p)})
    out = subprocess.run(["dpkg-query", "-S"] + queries, capture_output=True, text=True,
                         env={"LC_ALL": "C", "PATH": os.environ.get("PATH", "")}).stdout
    owner_of = {}
    for line in out.splitlines():
        pkgs, sep, path = line.partition(": ")
        if sep and not pkgs.startswith("diversion"):
            # "libc6:amd64" -> libc6; a path shared by several packages names them all.
            owner_of[path] = sorted(p.strip() for p in pkgs.split(","))[0]
    owners = {}
    for p in paths:
        pkg = next((owner_of[v] for v in variants(p) if v in owner_of), None)
        if pkg is None:
            fail(f"{p} belongs to no Debian package: the image takes files from Debian's "
                 f"packages only (is a library installed by hand earlier in the search path?)")
        owners[p] = pkg
    fields = "${Package}\\t${Version}\\t${Architecture}\\n"
    info = {}
    for line in run(["dpkg-query", "-W", "-f=" + fields] + sorted(set(owners.values()))
                    ).splitlines():
        name, version, arch = line.split("\t")
        info[name] = (name, version, arch)
    return {p: info[pkg.split(":")[0]] for p, pkg in owners.items()}


def ca_bundle():
    """Debian's CA bundle as update-ca-certificates builds it from the ca-certificates package
    (every certificate it ships, in name order), but without this machine's local additions:
    the image must not depend on who builds it. Vault's own CA comes from --vault-ca-file."""
    names = sorted(n for n in os.listdir(CA_SOURCE_DIR) if n.endswith(".crt"))
    if not names:
        fail(f"no certificates in {CA_SOURCE_DIR} (install ca-certificates)")
    data = b""
    for n in names:
        with open(os.path.join(CA_SOURCE_DIR, n), "rb") as f:
            pem = f.read()
        data += pem if pem.endswith(b"\n") else pem + b"\n"
    return data, [os.path.join(CA_SOURCE_DIR, n) for n in names]


def etc_files():
    passwd = "".join(f"{n}:x:{u}:{u}:{n}:{h}:/usr/sbin/nologin\n" for n, u, h in USERS)
    group = "".join(f"{n}:x:{u}:\n" for n, u, _ in USERS)
    # glibc would fall back to its built-in defaults without this file; spelled out, the image
    # reads users and hosts from its files and the runtime's /etc/hosts and /etc/resolv.conf,
    # and never tries an NSS module it does not ship.
    nsswitch = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
    return {"/etc/passwd": passwd.encode(), "/etc/group": group.encode(),
            "/etc/nsswitch.conf": nsswitch.encode()}


def assemble(build_dir):
    fs = RootFs()
    libs = set()
    for b in BINARIES:
        src = os.path.join(build_dir, b)
        if not os.access(src, os.X_OK):
            fail(f"{src} is missing: run `make build` first")
        with open(src, "rb") as f:
            fs.add_bytes(f"{BIN_DIR}/{b}", f.read(), 0o755)
        libs.update(shared_libraries(src))
    real_libs = {fs.add_host_path(p) for p in sorted(libs)}
    for path, data in etc_files().items():
        fs.add_bytes(path, data)
    bundle, certs = ca_bundle()
    fs.add_bytes(CA_BUNDLE, bundle)
    owners = dpkg_owners(sorted(real_libs) + certs)
    ca_pkg = {owners[c] for c in certs}
    if len(ca_pkg) != 1:
        fail(f"the certificates in {CA_SOURCE_DIR} come from several packages: {ca_pkg}")
    file_pkgs = {p: owners[fs.origin[p]] for p in fs.files() if p in fs.origin}
    file_pkgs[CA_BUNDLE] = ca_pkg.pop()
    return fs, file_pkgs


def layer_tar(fs, epoch):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(fs.entries):
            if path == "/":
                continue
            entry = fs.entries[path]
            info = tarfile.TarInfo(path.lstrip("/"))
            info.mtime = epoch
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if entry[0] == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif entry[0] == "link":
                info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, entry[1]
                tar.addfile(info)
            else:
                info.mode, info.size = entry[2], len(entry[1])
                tar.addfile(info, io.BytesIO(entry[1]))
    return buf.getvalue()


def gzip_n(data):
    # Debian's gzip, not Python's zlib binding: the bytes must not depend on the interpreter.
    return subprocess.run(["gzip", "-n", "-9", "-c"], input=data, capture_output=True,
                          check=True).stdout


def write_rootfs(fs, root):
    """The same tree as the layer, on disk (deploy/Containerfile copies it FROM scratch)."""
    if os.path.exists(root) and os.listdir(root):
        fail(f"{root} exists and is not empty")
    for path in sorted(fs.entries):
        entry, dest = fs.entries[path], os.path.join(root, path.lstrip("/"))
        if entry[0] == "dir":
            os.makedirs(dest, exist_ok=True)
            os.chmod(dest, 0o755)
        elif entry[0] == "link":
            os.symlink(entry[1], dest)
        else:
            with open(dest, "wb") as f:
                f.write(entry[1])
            os.chmod(dest, entry[2])


def git(source_dir, *args):
    return subprocess.run(["git", "-C", source_dir] + list(args), capture_output=True,
                          text=True).stdout.strip()


def image_config(version, revision, created, arch, diff_id):
    labels = {
        "org.opencontainers.image.title": "vault-kms",
        "org.opencontainers.image.description":
            "Kubernetes KMS v2 plugin backed by HashiCorp Vault Transit (broker + confined "
            "frontend)",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.created": created,
    }
    if revision:
        labels["org.opencontainers.image.revision"] = revision
    oci_arch, variant = OCI_ARCH[arch]
    config = {
        "architecture": oci_arch,
        "os": "linux",
        "created": created,
        "config": {
            "User": USER,
            "Entrypoint": ENTRYPOINT,
            "Cmd": ["--help"],
            "Env": ["PATH=" + BIN_DIR],
            "WorkingDir": "/",
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": "make image (packaging/image/"
                                                      "build-image.py)"}],
    }
    if variant:
        config["variant"] = variant
    return config


def deterministic_tar(members, epoch):
    """The OCI layout as a tar: directories and files sorted, owner 0:0, one time."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({os.path.dirname(n) for n in members if os.path.dirname(n)} |
                      {"blobs"})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, epoch
            info.uname = info.gname = "root"
            tar.addfile(info)
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(members[name]), 0o644, epoch
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(members[name]))
    return buf.getvalue()


def debian_release():
    """The Debian release ("12" on bookworm), for the purl's distro qualifier."""
    with open("/etc/os-release", encoding="utf-8") as f:
        m = re.search(r'^VERSION_ID="?([0-9.]+)"?$', f.read(), re.M)
    return m.group(1) if m else "unknown"


def spdx(fs, file_pkgs, version, created, digest, ref):
    """SPDX 2.3: the image, vault-kms itself, every Debian package with files in the image, and
    each file (SHA-256 and the SHA-1 SPDX requires) with the package it came from."""
    def pkg_id(name):
        return "SPDXRef-Package-deb-" + re.sub(r"[^A-Za-z0-9.-]", "-", name)

    def package(spdx_id, name, ver, purpose, purl=None, **extra):
        p = {"SPDXID": spdx_id, "name": name, "versionInfo": ver,
             "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
             "primaryPackagePurpose": purpose, "licenseConcluded": "NOASSERTION",
             "licenseDeclared": "NOASSERTION", "copyrightText": "NOASSERTION", **extra}
        if purl:
            p["externalRefs"] = [{"referenceCategory": "PACKAGE-MANAGER",
                                  "referenceType": "purl", "referenceLocator": purl}]
        return p

    debs = sorted(set(file_pkgs.values()))
    distro = "debian-" + debian_release()
    packages = [
        package("SPDXRef-Image", "vault-kms-image", version, "CONTAINER",
                f"pkg:oci/vault-kms@{digest.replace(':', '%3A')}?tag={version}",
                checksums=[{"algorithm": "SHA256", "checksumValue": digest.split(":", 1)[1]}],
                comment=f"OCI image {ref}; the checksum is the manifest digest"),
        package("SPDXRef-Package-vault-kms", "vault-kms", version, "APPLICATION")]
    for name, ver, arch in debs:
        packages.append(package(
            pkg_id(name), name, ver, "DATA" if name == "ca-certificates" else "LIBRARY",
            f"pkg:deb/debian/{name}@{ver}?arch={arch}&distro={distro}",
            supplier="Organization: Debian", comment=f"Debian package {name} {ver} ({arch})"))
    files, relationships = [], [
        {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
         "relatedSpdxElement": "SPDXRef-Image"},
        {"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS",
         "relatedSpdxElement": "SPDXRef-Package-vault-kms"}]
    for name, _, _ in debs:
        relationships.append({"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS",
                              "relatedSpdxElement": pkg_id(name)})
    for i, (path, entry) in enumerate(sorted(fs.files().items())):
        fid = f"SPDXRef-File-{i}"
        files.append({
            "SPDXID": fid, "fileName": "." + path,
            "checksums": [{"algorithm": "SHA1", "checksumValue": hashlib.sha1(entry[1]).hexdigest()},
                          {"algorithm": "SHA256",
                           "checksumValue": hashlib.sha256(entry[1]).hexdigest()}],
            "licenseConcluded": "NOASSERTION", "copyrightText": "NOASSERTION",
        })
        owner = pkg_id(file_pkgs[path][0]) if path in file_pkgs else "SPDXRef-Package-vault-kms"
        relationships.append({"spdxElementId": owner, "relationshipType": "CONTAINS",
                              "relatedSpdxElement": fid})
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"vault-kms-image-{version}",
        "documentNamespace": "https://spdx.org/spdxdocs/vault-kms-image-" + str(
            uuid.uuid5(uuid.NAMESPACE_URL, "vault-kms-image:" + digest)),
        "creationInfo": {"created": created,
                         "creators": ["Tool: vault-kms packaging/image/build-image.py"]},
        "packages": packages,
        "files": files,
        "relationships": relationships,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--source-dir", default=os.path.join(os.path.dirname(__file__), "..", ".."))
    parser.add_argument("--out", help="default: BUILD-DIR/vault-kms-image.tar")
    parser.add_argument("--sbom", help="default: BUILD-DIR/vault-kms-image.spdx.json")
    parser.add_argument("--rootfs", help="write only the root filesystem, into this directory")
    args = parser.parse_args()

    fs, file_pkgs = assemble(args.build_dir)
    if args.rootfs:
        write_rootfs(fs, args.rootfs)
        print(f"root filesystem in {args.rootfs}: {len(fs.files())} files")
        return

    epoch_text = os.environ.get("SOURCE_DATE_EPOCH") or git(args.source_dir, "log", "-1",
                                                            "--format=%ct")
    if not re.fullmatch(r"[0-9]+", epoch_text or ""):
        fail("SOURCE_DATE_EPOCH is not set and the sources are not a git checkout: set it to "
             "the release's time (seconds since 1970)")
    epoch = int(epoch_text)
    created = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")

    broker = os.path.join(args.build_dir, BINARIES[0])
    version = run([broker, "--version"], env={}).split()[-1]
    revision = git(args.source_dir, "rev-parse", "HEAD")
    if revision and git(args.source_dir, "status", "--porcelain", "--untracked-files=no"):
        revision += "-dirty"
    arch = run(["dpkg", "--print-architecture"]).strip()
    if arch not in OCI_ARCH:
        fail(f"unknown architecture {arch}")
    ref = f"{NAME}:{version}"

    layer = layer_tar(fs, epoch)
    layer_gz = gzip_n(layer)
    config = canonical_json(image_config(version, revision, created, arch, sha256(layer)))
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": MT_LAYER, "digest": sha256(layer_gz), "size": len(layer_gz)}],
    })
    digest = sha256(manifest)
    oci_arch, variant = OCI_ARCH[arch]
    platform = {"architecture": oci_arch, "os": "linux"}
    if variant:
        platform["variant"] = variant
    index = canonical_json({
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [{
            "mediaType": MT_MANIFEST, "digest": digest, "size": len(manifest),
            "platform": platform,
            # containerd (ctr images import) and podman load name the image after
            # io.containerd.image.name; the OCI annotation holds the tag, as the image layout
            # expects (skopeo oci-archive:FILE:TAG, umoci --image DIR:TAG).
            "annotations": {"io.containerd.image.name": ref,
                            "org.opencontainers.image.ref.name": version},
        }],
    })
    members = {"oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"}),
               "index.json": index}
    for blob in (config, manifest, layer_gz):
        members["blobs/sha256/" + hashlib.sha256(blob).hexdigest()] = blob

    out = args.out or os.path.join(args.build_dir, "vault-kms-image.tar")
    sbom_path = args.sbom or os.path.join(args.build_dir, "vault-kms-image.spdx.json")
    for path, data in ((out, deterministic_tar(members, epoch)),
                       (sbom_path, json.dumps(spdx(fs, file_pkgs, version, created, digest, ref),
                                              indent=2, sort_keys=True).encode() + b"\n")):
        with tempfile.NamedTemporaryFile(dir=os.path.dirname(os.path.abspath(path)),
                                         delete=False) as tmp:
            tmp.write(data)
        os.chmod(tmp.name, 0o644)
        os.replace(tmp.name, path)

    debs = sorted(set(file_pkgs.values()))
    print(f"image:  {out} ({len(fs.files())} files, layer {len(layer)} bytes, "
          f"{len(layer_gz)} compressed)")
    print(f"sbom:   {sbom_path} ({len(debs)} Debian packages)")
    print(f"ref:    {ref}")
    print(f"digest: {digest}")


if __name__ == "__main__":
    main()
