"""The CPU-fast artifact: a model exported to ONNX serves the labels PyTorch serves, int8
only when it holds on the test rows, and the files are input like any stored file: a
changed file, a name thaw never writes, external data or a foreign operator domain is
refused before a session is built."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.integration.ladder.test_ladder import config, frozen_rung, make_task
from thaw.errors import UserError

pytestmark = pytest.mark.integration


@pytest.fixture
def model(workspace, tiny_encoder):
    curated = make_task(workspace, "strong", n=90)
    cfg = config(workspace, tiny_encoder)
    _, trained = frozen_rung(workspace, cfg, curated)
    return trained.model_dir, curated.read(workspace, "test")


def test_the_onnx_artifact_serves_pytorch_s_labels_and_says_which_variant_and_why(model, monkeypatch):
    from tasks.release.serving_artifact import build_onnx_artifact
    from thaw.onnx_export import ONNX_DIR, ONNX_META
    from thaw.serving import ThawPredictor

    model_dir, test = model
    report = build_onnx_artifact(model_dir, test.texts, test.labels, 0.95, 0.995)
    assert report.file is not None and report.agreement_fp32 >= 0.995 and report.variant in ("int8", "fp32")
    assert report.reason.startswith(report.variant) or report.reason.startswith(f"{report.variant} ONNX")
    kept = sorted(p.name for p in (model_dir / ONNX_DIR).iterdir())
    assert kept == sorted([report.file, ONNX_META])  # the variant not kept is gone
    served = ThawPredictor(model_dir)
    assert served.engine == f"onnxruntime {report.variant}" and served.encoder is None
    torch_labels = ThawPredictor(model_dir, use_onnx=False).predict(test.texts)["label"].tolist()
    onnx_labels = served.predict(test.texts)["label"].tolist()
    agreement = sum(a == b for a, b in zip(onnx_labels, torch_labels, strict=True)) / len(torch_labels)
    assert round(agreement, 4) == getattr(report, f"agreement_{report.variant}")
    monkeypatch.setenv("THAW_ONNX", "0")
    assert ThawPredictor(model_dir).engine == "pytorch"

    # the run's test predictions (predict-test-split's, with the PyTorch encoder) stand in
    # for predicting again: the same report
    monkeypatch.delenv("THAW_ONNX")
    from tasks.evaluation.prediction import predict_texts

    given = predict_texts(model_dir, test.texts)
    assert given == torch_labels  # PyTorch, although the ONNX artifact is there now
    again = build_onnx_artifact(model_dir, test.texts, test.labels, 0.95, 0.995, given)
    assert again.to_dict() == report.to_dict()
    with pytest.raises(ValueError, match="2 PyTorch predictions for"):
        build_onnx_artifact(model_dir, test.texts, test.labels, 0.95, 0.995, given[:2])
    assert (model_dir / ONNX_DIR / again.file).is_file()  # refused before the kept artifact was touched


def test_a_changed_renamed_or_foreign_onnx_file_is_refused(model, tmp_path):
    import onnx

    from tasks.release.serving_artifact import build_onnx_artifact
    from thaw.onnx_export import ONNX_DIR, ONNX_META, check_onnx_file, read_onnx_meta

    model_dir, test = model
    report = build_onnx_artifact(model_dir, test.texts, test.labels, 0.95, 0.995)
    path, meta_path = model_dir / ONNX_DIR / report.file, model_dir / ONNX_DIR / ONNX_META
    original = path.read_bytes()
    meta = json.loads(meta_path.read_text())

    path.write_bytes(original + b"\x00")
    with pytest.raises(UserError, match="changed since it was exported"):
        read_onnx_meta(model_dir)
    path.write_bytes(original)
    meta_path.write_text(json.dumps(meta | {"file": "../../etc/passwd"}))
    with pytest.raises(UserError, match="not one of thaw's ONNX files"):
        read_onnx_meta(model_dir)
    meta_path.write_text(json.dumps(meta))
    assert read_onnx_meta(model_dir)["sha256"] == meta["sha256"]

    graph = onnx.load(str(path))
    graph.graph.node[0].domain = "evil.custom"
    foreign = tmp_path / "foreign.onnx"
    onnx.save(graph, str(foreign))
    with pytest.raises(UserError, match="operator domain 'evil.custom'"):
        check_onnx_file(foreign)
    graph = onnx.load(str(path))
    external = tmp_path / "external" / "model.onnx"
    external.parent.mkdir()
    onnx.save(graph, str(external), save_as_external_data=True, all_tensors_to_one_file=True, size_threshold=0)
    with pytest.raises(UserError, match="stored outside the file"):
        check_onnx_file(external)
    # the same in a Constant's value, and in a node inside an If's branch: not initializers
    from onnx import helper

    stored_elsewhere = onnx.TensorProto(name="c", data_type=onnx.TensorProto.UINT8, dims=[8])
    stored_elsewhere.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "elsewhere.bin"), ("offset", "0"), ("length", "8")):
        stored_elsewhere.external_data.add(key=key, value=value)
    out = [helper.make_tensor_value_info("y", onnx.TensorProto.UINT8, [8])]
    branch = helper.make_graph([helper.make_node("Constant", [], ["y"], value=stored_elsewhere)], "b", [], out)
    custom = helper.make_graph([helper.make_node("Evil", [], ["y"], domain="evil.custom")], "b", [], out)
    flag = helper.make_tensor_value_info("flag", onnx.TensorProto.BOOL, [])
    for then, said in ((branch, "tensor 'c' is stored outside the file"), (custom, "operator domain 'evil.custom'")):
        node = helper.make_node("If", ["flag"], ["y"], then_branch=then, else_branch=then)
        inner = tmp_path / "inner.onnx"
        onnx.save(helper.make_model(helper.make_graph([node], "g", [flag], out)), str(inner))
        with pytest.raises(UserError, match=said):
            check_onnx_file(inner)
    shutil.rmtree(model_dir / ONNX_DIR)
    assert read_onnx_meta(model_dir) is None


def test_a_text_gets_the_same_vector_alone_or_in_a_batch_from_either_export(model, tmp_path):
    # int8 dynamic quantisation takes one activation scale per call from every row in it:
    # batched, a text's vector (and label) would depend on the texts beside it
    import numpy as np
    import onnx

    from thaw.modeling import encode_texts
    from thaw.onnx_export import FP32_FILE, INT8_FILE, OnnxEncoder, export_encoder, quantize_int8
    from thaw.serving import ThawPredictor

    model_dir, test = model
    served = ThawPredictor(model_dir, use_onnx=False)
    export_encoder(served.encoder, served.tokenizer, served.backbone_cfg.pooling, tmp_path / FP32_FILE)
    quantize_int8(tmp_path / FP32_FILE, tmp_path / INT8_FILE)
    texts = test.texts[:24]
    encoded = encode_texts(served.tokenizer, texts, served.backbone_cfg.max_length)
    for name, alone in ((FP32_FILE, False), (INT8_FILE, True)):
        encoder = OnnxEncoder(tmp_path / name)
        assert encoder.rows_alone is alone
        batched = encoder.embed(encoded, 64)
        one_by_one = np.vstack([encoder.embed({k: [v[i]] for k, v in encoded.items()}, 64) for i in range(len(texts))])
        np.testing.assert_allclose(batched, one_by_one, rtol=0, atol=2e-6)
    # ONNX Runtime's optimiser fuses the quantisation into the products
    # (DynamicQuantizeMatMul) in a graph it saves: read alone too
    from onnx import TensorProto, helper, numpy_helper

    weights = [
        numpy_helper.from_array(np.ones((4, 2), np.int8), "w"),
        numpy_helper.from_array(np.ones(2, np.float32), "s"),
    ]
    node = helper.make_node("DynamicQuantizeMatMul", ["x", "w", "s"], ["y"], domain="com.microsoft")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    graph = helper.make_graph([node], "fused", [x], [y], weights)
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(tmp_path / "fused.onnx"))
    assert OnnxEncoder(tmp_path / "fused.onnx").rows_alone
