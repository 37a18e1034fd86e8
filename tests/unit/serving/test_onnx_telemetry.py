"""ONNX Runtime starts Microsoft's telemetry SDK (1DS) when the library loads, unless
``ORT_DISABLE_TELEMETRY`` is set: it writes a session file, ``.ses``, in the temporary
directory, and its collector is an internet address. thaw keeps it off in the processes
it starts (``thaw.offline``) and wherever its ONNX model is loaded, a user's own process
included. Each case runs in a fresh interpreter: the variable is read at load."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# ONNX Runtime also keeps its telemetry off where one of these says it runs in CI (the
# names are in its library), as .ci/run sets CI: the processes here look like a user's
CI_MARKERS = (
    "CI", "TF_BUILD", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "TRAVIS", "JENKINS_URL", "CODEBUILD_BUILD_ID",
    "BUILDKITE", "TEAMCITY_VERSION", "APPVEYOR", "BITBUCKET_BUILD_NUMBER",
)  # fmt: skip
CLEAN = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY" and k not in CI_MARKERS}
IDENTITY = """
import onnx
from onnx import TensorProto, helper
x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in "xy")
graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "model.onnx")
"""
CASES = {
    # the control: what the library does on its own
    "bare import": "import onnxruntime",
    "thaw's processes": "from thaw.offline import apply_offline_environment\n"
    "apply_offline_environment()\nimport onnxruntime",
    "thaw's model in a user's process": "from pathlib import Path\nfrom thaw.onnx_export import OnnxEncoder\n"
    "OnnxEncoder(Path('model.onnx'), threads=1)",
}


@pytest.mark.parametrize("case", CASES)
def test_onnx_runtime_writes_no_telemetry_session_where_thaw_loads_it(tmp_path, case):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = CLEAN | {"TMPDIR": str(scratch)}
    for code in (IDENTITY, CASES[case]):
        run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-2000:]
    left = sorted(p.name for p in scratch.iterdir())
    assert left == ([".ses"] if case == "bare import" else []), left
