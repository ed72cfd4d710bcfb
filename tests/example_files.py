"""The bundled examples by kind, so that each test takes only the files it can read."""

import tomllib
from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


def _with_table(table):
    return [
        p for p in sorted(EXAMPLES_DIR.glob("*.toml"))
        if table in tomllib.loads(p.read_text(encoding="utf-8"))
    ]


NETWORKS = _with_table("nodes")     # spec files with a [nodes] graph
LAYERED = _with_table("layers")     # [layers] shorthands (the matrix form)
FAMILIES = _with_table("family")    # exam question families
