"""Regenerates the checked-in Python code for proto/*.proto, or checks that it is current.

    python proto/generate.py           # rewrite proto/*_pb2.py and *_pb2.pyi
    python proto/generate.py --check   # exit 1, naming the stale files, if regeneration would change them

The generator is grpcio-tools' bundled protoc, pinned in requirements/dev.lock, so the output is
reproducible on every machine that installs the lock.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

PROTO_DIR = Path(__file__).resolve().parent


def generate(out_dir: Path) -> list[Path]:
    sources = sorted(PROTO_DIR.glob("*.proto"))
    args = [
        "protoc",
        f"--proto_path={PROTO_DIR}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *(str(s) for s in sources),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p for p in out_dir.iterdir() if p.name.endswith(("_pb2.py", "_pb2.pyi")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if checked-in code is stale")
    check = parser.parse_args().check
    with tempfile.TemporaryDirectory() as tmp:
        stale = []
        for fresh in generate(Path(tmp)):
            current = PROTO_DIR / fresh.name
            if not current.exists() or current.read_bytes() != fresh.read_bytes():
                stale.append(current)
                if not check:
                    current.write_bytes(fresh.read_bytes())
    if check and stale:
        names = ", ".join(p.name for p in stale)
        print(f"generated protobuf code is stale: {names}; run `python proto/generate.py`", file=sys.stderr)
        return 1
    if not check:
        print(f"regenerated {len(stale)} file(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
