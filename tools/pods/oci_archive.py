"""Write an OCI image archive (an OCI layout in one tar) from layer tarballs, with no Docker and no registry.

containerd's `ctr images import` reads the result; it names the image by the index's
`io.containerd.image.name` annotation. Layers are stored uncompressed: the archive only travels to a local
containerd, and gzip would cost minutes of CPU on a 2-core machine.

usage: python3 oci_archive.py --out IMAGE.tar --name REF [--layer TAR]... [--user U] [--env K=V]...
                              [--workdir DIR] [--cmd ARG]...
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def _digest_file(path: Path) -> tuple[str, int]:
    sha = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            sha.update(chunk)
    return f"sha256:{sha.hexdigest()}", path.stat().st_size


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def write_archive(
    out: Path, name: str, layers: list[Path], user: str, env: list[str], workdir: str, cmd: list[str]
) -> str:
    """Write the archive; return the manifest's digest."""
    layer_entries = []
    for layer in layers:
        digest, size = _digest_file(layer)
        layer_entries.append((layer, digest, size))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"User": user, "Env": env, "WorkingDir": workdir, "Cmd": cmd},
        "rootfs": {"type": "layers", "diff_ids": [digest for _, digest, _ in layer_entries]},
        "history": [{"created_by": f"rayvllm tools/pods: {layer.name}"} for layer, _, _ in layer_entries],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_digest = f"sha256:{hashlib.sha256(config_bytes).hexdigest()}"
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": LAYER_TYPE, "digest": d, "size": s} for _, d, s in layer_entries],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest = f"sha256:{hashlib.sha256(manifest_bytes).hexdigest()}"
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": MANIFEST_TYPE,
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1],
                },
            }
        ],
    }
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, "w") as archive:
        _add_bytes(archive, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        _add_bytes(archive, "index.json", json.dumps(index).encode())
        _add_bytes(archive, f"blobs/sha256/{config_digest[7:]}", config_bytes)
        _add_bytes(archive, f"blobs/sha256/{manifest_digest[7:]}", manifest_bytes)
        for layer, digest, _ in layer_entries:
            archive.add(layer, arcname=f"blobs/sha256/{digest[7:]}")
    shutil.move(partial, out)
    return manifest_digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--name", required=True, help="the image reference, e.g. localhost/rayvllm:test")
    parser.add_argument("--layer", type=Path, action="append", default=[], help="a layer tarball, bottom first")
    parser.add_argument("--user", default="")
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--workdir", default="/")
    parser.add_argument("--cmd", action="append", default=[])
    args = parser.parse_args()
    digest = write_archive(args.out, args.name, args.layer, args.user, args.env, args.workdir, args.cmd)
    print(digest)


if __name__ == "__main__":
    main()
