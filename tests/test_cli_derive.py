"""`symprop derive`: the JSON contract, round trips through the spec parser, bad input."""

import json
import math
import subprocess
import sys

import pytest
import sympy as sp

from symprop.cli import main
from symprop.spec import load_spec, parse_expression

from dags import evaluate, reference_gradient
from example_files import NETWORKS

EXAMPLES = NETWORKS  # the [nodes] examples, not question families or [layers] shorthands


def run(argv, capsys):
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_result_reads_back_and_equals_sympy_diff(example, capsys):
    spec = load_spec(example)
    status, out, _ = run(["derive", str(example), "--format", "json"], capsys)
    assert status == 0
    records = json.loads(out)["derivations"]
    assert [r["wrt"] for r in records] == [p.name for p in spec.network.params]
    point = {s: sp.Rational(7 * i % 11 - 5, 10) for i, s in enumerate(spec.network.inputs + spec.network.params, 1)}
    point.update({t: sp.Rational(1, len(spec.network.targets)) for t in spec.network.targets})
    for record in records:
        assert set(record) >= {"wrt", "method", "steps", "result", "forms", "path_count"}
        assert set(record["forms"]) == {"deltas", "local", "paths"}
        assert all(set(step) == {"rule", "equation"} for step in record["steps"])
        # "result" is in the spec's identifiers and function names: the spec parser reads it back
        result = parse_expression(record["result"], spec.symbols, spec.functions)
        w = spec.symbols[record["wrt"]]
        assert math.isclose(evaluate(result, point), reference_gradient(spec.network, w, point), rel_tol=1e-9, abs_tol=1e-12)


def test_seed002_w57_json_has_three_paths(capsys):
    example = next(p for p in EXAMPLES if "seven" in p.stem)
    status, out, _ = run(["derive", str(example), "--wrt", "w_5_7", "--method", "bottom-up", "--format", "json"], capsys)
    record = json.loads(out)["derivations"][0]
    assert record["path_count"] == 3
    assert record["forms"]["paths"] == (
        "pE_pz_1*pz_1_pz_5*pz_5_pw_5_7 + pE_pz_2*pz_2_pz_5*pz_5_pw_5_7 + pE_pz_3*pz_3_pz_5*pz_5_pw_5_7"
    )
    assert record["forms"]["deltas"] == "dE_dz_5*g_prime(w_5_6*z_6 + w_5_7*z_7)*z_7"
    assert record["steps"][0] == {"rule": "factor at the bottom", "equation": "dE_dw_5_7 = dE_dz_5*pz_5_pw_5_7"}


def test_text_output_shows_the_chain(capsys):
    example = next(p for p in EXAMPLES if "seven" in p.stem)
    status, out, _ = run(["derive", str(example), "--wrt", "w_5_7", "--method", "paths"], capsys)
    assert status == 0
    assert "dE/dw_5_7 = ∂E/∂z_1*∂z_1/∂z_5*∂z_5/∂w_5_7 + ∂E/∂z_2*∂z_2/∂z_5*∂z_5/∂w_5_7 + ∂E/∂z_3*∂z_3/∂z_5*∂z_5/∂w_5_7" in out


def test_too_many_paths_gives_null_forms_with_a_note(tmp_path, capsys):
    lines = ["[network]", 'inputs = ["x"]', 'params = ["v"]', 'loss = "E"', "[nodes]"]
    prev = "x"
    for i in range(12):
        lines += [f'a_{i} = "tanh(v*{prev})"', f'b_{i} = "sin({prev})"'.replace("sin", "exp"), f'm_{i} = "a_{i} + b_{i}"']
        prev = f"m_{i}"
    lines.append(f'E = "{prev}**2"')
    spec = tmp_path / "ladder.toml"
    spec.write_text("\n".join(lines))
    status, out, _ = run(["derive", str(spec), "--format", "json", "--max-paths", "100"], capsys)
    record = json.loads(out)["derivations"][0]
    assert record["forms"]["paths"] is None and record["forms"]["local"] is None
    assert record["forms"]["deltas"] and "paths" in record["note"]


@pytest.mark.parametrize(
    "body, key, problem",
    [
        ('[network\nparams = ["w"]', "TOML", ""),
        ('[network]\nparams = ["w"]\nloss = "E"\n[nodes]\nE = "sigmod(w)"', "[nodes] E", "unknown function 'sigmod'"),
        ('[network]\nparams = ["w"]\nloss = "E"\n[nodes]\nE = "w*q"', "[nodes] E", "q"),
        ('[network]\nparams = ["w"]\nloss = "E"\n[nodes]\nE = "a"\na = "w*b"\nb = "a"', "", "cycle"),
        ('[network]\nparams = ["w"]\nloss = "E"\n[nodes]\nE = "__import__(\'os\')"', "[nodes] E", ""),
    ],
)
def test_bad_specs_get_one_line_and_exit_2(tmp_path, body, key, problem):
    spec = tmp_path / "bad.toml"
    spec.write_text(body)
    done = subprocess.run([sys.executable, "-m", "symprop.cli", "derive", str(spec)], capture_output=True, text=True)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    line = done.stderr.strip()
    assert "\n" not in line and "bad.toml" in line and key in line and problem in line


def test_unknown_wrt_is_named(capsys):
    example = EXAMPLES[0]
    status, _, err = run(["derive", str(example), "--wrt", "nope"], capsys)
    assert status == 2 and "nope" in err
