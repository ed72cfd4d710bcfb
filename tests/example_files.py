"""The bundled examples by kind, so that each test takes only the files it can read."""

import tomllib
from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


def _with_table(table):
    return [
        p for p in sorted(EXAMPLES_DIR.glob("*.toml"))
        if table in tomllib.loads(p.read_text(encoding="utf-8"))
    ]


def _vector(path):
    return "outputs" in tomllib.loads(path.read_text(encoding="utf-8")).get("network", {})


NETWORKS = [p for p in _with_table("nodes") if not _vector(p)]  # spec files with a [nodes] graph and a loss
VECTORS = [p for p in _with_table("nodes") if _vector(p)]       # vector-valued ones: outputs, a Jacobian
LAYERED = _with_table("layers")     # [layers] shorthands (the matrix form)
FAMILIES = _with_table("family")    # exam question families
