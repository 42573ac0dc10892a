"""CIFAR-100's .npz in parts small enough for one transfer each, and back, checked by sha256.

    python scripts/cifar_parts.py split /path/to/cifar100 data/gpu-parts [--max-mib 60]
    python scripts/cifar_parts.py join data/gpu-parts /tmp/cifar100

``split`` cuts ``cifar100.npz`` into ``part-000``, ``part-001``, ... of at most ``--max-mib`` MiB and
writes ``MANIFEST`` (each part's and the whole file's sha256). ``join`` checks every part, writes
``cifar100.npz`` and a ``SHA256SUMS`` beside it (which ``lpsbook data check`` and the loader verify), and
refuses with one line naming the missing or damaged part. Standard library only: it runs on a machine
where lpsbook's dependencies are not installed.
"""
import argparse
import hashlib
import json
import sys
from pathlib import Path

NPZ = "cifar100.npz"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split(source: Path, dest: Path, max_mib: float) -> list:
    path = source / NPZ if source.is_dir() else source
    blob = path.read_bytes()
    size = int(max_mib * 2 ** 20)
    dest.mkdir(parents=True, exist_ok=True)
    parts = []
    for i, start in enumerate(range(0, len(blob), size)):
        chunk = blob[start:start + size]
        name = f"part-{i:03d}"
        (dest / name).write_bytes(chunk)
        parts.append({"name": name, "bytes": len(chunk), "sha256": sha256(chunk)})
    manifest = {"file": NPZ, "bytes": len(blob), "sha256": sha256(blob), "parts": parts}
    (dest / "MANIFEST").write_text(json.dumps(manifest, indent=1))
    return parts


def join(source: Path, dest: Path) -> Path:
    try:
        manifest = json.loads((source / "MANIFEST").read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{source / 'MANIFEST'} is missing or damaged ({exc}); split the data again") from None
    chunks = []
    for part in manifest["parts"]:
        try:
            chunk = (source / part["name"]).read_bytes()
        except OSError:
            raise SystemExit(f"{source / part['name']} is missing: copy every part listed in MANIFEST") from None
        if sha256(chunk) != part["sha256"]:
            raise SystemExit(f"{source / part['name']} is damaged (sha256 does not match MANIFEST)")
        chunks.append(chunk)
    blob = b"".join(chunks)
    if sha256(blob) != manifest["sha256"]:
        raise SystemExit("the joined file does not match MANIFEST's sha256")
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".{manifest['file']}.tmp"
    tmp.write_bytes(blob)
    tmp.replace(dest / manifest["file"])
    (dest / "SHA256SUMS").write_text(f"{manifest['sha256']}  {manifest['file']}\n")
    return dest / manifest["file"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="action", required=True)
    s = sub.add_parser("split")
    s.add_argument("source", type=Path)
    s.add_argument("dest", type=Path)
    s.add_argument("--max-mib", type=float, default=54, help="54: a part and the tree (about 8 MiB) fit one 64-MiB transfer")
    j = sub.add_parser("join")
    j.add_argument("source", type=Path)
    j.add_argument("dest", type=Path)
    args = ap.parse_args(argv)
    if args.action == "split":
        parts = split(args.source, args.dest, args.max_mib)
        print(f"{len(parts)} parts in {args.dest}")
    else:
        print(f"joined into {join(args.source, args.dest)}")


if __name__ == "__main__":
    sys.exit(main())
