"""TF Serving's REST contract (tests.support.serving) on every exportable method's export:
each signature run in a graph session from a JSON request equals the eager SavedModel, and
bad requests get TF Serving's 400s."""

import base64
import io
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.support import serving
from tf_translate import config, registry
from tf_translate.export import serving_config

EXPORTABLE = registry.names(exportable=True)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runners(exports):
    made = {}

    def get(method):
        if method not in made:
            version = exports(method)[1]
            cfg = config.load(version / "config.json")  # as completed by the data (StarGAN's domains)
            made[method] = (cfg, serving.SessionRunner(version), tf.saved_model.load(str(version)))
        return made[method]

    yield get
    for _, runner, _ in made.values():
        runner.close()


def png_bytes(height, width, channels=3, seed=0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels), np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels.squeeze()).save(out, "PNG")
    return out.getvalue()


def to_json(array):
    if array.dtype == object:
        return [{"b64": base64.b64encode(v).decode()} for v in array]
    return array.tolist()


def decoded(value):
    """A response value with {"b64": ...} leaves decoded."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [decoded(v) for v in value]
    return value


def check_equal(got, want, name):
    if want.dtype == object:  # PNG outputs: the same pixels
        for g, w in zip(got, want):
            np.testing.assert_array_equal(tf.io.decode_png(g).numpy(), tf.io.decode_png(w).numpy())
    else:  # TF Serving writes 6 significant digits
        np.testing.assert_allclose(np.array(got, np.float32), want, rtol=2e-6, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("method", EXPORTABLE)
def test_every_signature_through_json_equals_the_saved_model(runners, method):
    cfg, runner, loaded = runners(method)
    assert "serving_default" in runner.signatures
    for signature in runner.signatures:
        inputs = serving_config.example_inputs(runner.inputs(signature), batch=2, side=32, domains=cfg.data.domains)
        eager = {k: v.numpy() for k, v in loaded.signatures[signature](
            **{k: tf.constant(v) for k, v in inputs.items()}).items()}
        # columnar: the whole tensors by name; the response holds the outputs by name (or the one output)
        status, body = serving.predict(runner, json.dumps(
            {"signature_name": signature, "inputs": {k: to_json(v) for k, v in inputs.items()}}))
        assert status == 200, body
        outputs = decoded(json.loads(body)["outputs"])
        outputs = outputs if len(eager) > 1 else {next(iter(eager)): outputs}
        for name, want in eager.items():
            check_equal(outputs[name], want, f"{signature}/{name}")
        # row format: one object (or bare value with a single input) per batch element
        names = sorted(inputs)
        rows = [{k: to_json(inputs[k])[i] for k in names} if len(names) > 1 else to_json(inputs[names[0]])[i]
                for i in range(2)]
        status, body = serving.predict(runner, json.dumps({"signature_name": signature, "instances": rows}))
        assert status == 200, body
        predictions = decoded(json.loads(body)["predictions"])
        for name, want in eager.items():
            got = [p[name] for p in predictions] if len(eager) > 1 else predictions
            check_equal(got, want, f"{signature}/{name} (rows)")
        for name in eager:  # strings come back as b64 exactly when the output's name ends in _bytes
            if eager[name].dtype == object:
                assert name.endswith("_bytes")


def error(runner, request) -> str:
    status, body = serving.predict(runner, request if isinstance(request, (str, bytes)) else json.dumps(request))
    assert status == 400, body
    return json.loads(body)["error"]


def test_bad_requests_get_tf_servings_errors(runners):
    _, runner, _ = runners("cyclegan")
    image = np.zeros((32, 32, 3)).tolist()
    assert error(runner, "{not json").startswith("JSON Parse error: ")
    assert error(runner, b"") == "JSON Parse error: The document is empty"
    assert error(runner, [1, 2]).endswith("Is not object")
    assert error(runner, {"signature_name": "nope", "instances": [image]}) == \
        'Serving signature name: "nope" not found in signature def'
    assert error(runner, {"instances": [image], "inputs": [image]}).endswith(
        "expecting only one of 'inputs' or 'instances' keys to exist ")
    assert error(runner, {"signature": "a2b"}) == "Missing 'inputs' or 'instances' key"
    assert error(runner, {"instances": []}).endswith("No values in 'instances' array")
    assert error(runner, {"instances": [[[["x"] * 3] * 32] * 32]}).endswith(
        'Type: String is not of expected type: float')
    assert "is not of expected type: float" in error(runner, {"instances": [[[[True] * 3] * 32] * 32]})
    assert error(runner, {"instances": [image, np.zeros((32, 30, 3)).tolist()]}) == (
        "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
        "Expecting tensor size: 3072 but got: 2880")
    assert "Encountered list at unexpected size: 2 at level: 3 expected size: 3" in error(
        runner, {"inputs": [[[[0, 0, 0], [0, 0]]]]})
    assert "without loss of precision" in error(runner, {"inputs": [[[[2**25, 0, 0]]]]})
    assert error(runner, {"inputs": np.zeros((1, 8, 8, 1)).tolist()}) == \
        "input images: shape [1,8,8,1] does not match the signature's [?,?,?,3]"
    assert error(runner, {"signature_name": "a2b_bytes", "instances": [{"b64": "not base64!"}]}).endswith(
        "Unable to base64 decode")
    assert "not of expected type: string" in error(runner, {"signature_name": "a2b_bytes", "instances": [3]})


def test_bytes_endpoint_fails_cleanly_on_fuzzed_input(runners):
    """Random, truncated and empty bytes: a 400 with the decoder's message, every time, and
    the session still answers good requests afterwards."""
    _, runner, _ = runners("cyclegan")
    good = png_bytes(20, 24)
    rng = np.random.default_rng(0)
    cases = [b"", b"\x89PNG\r\n\x1a\n", good[: len(good) // 2], good[:40], rng.bytes(3), rng.bytes(200),
             b"GIF89a" + rng.bytes(50), b"\xff\xd8\xff" + rng.bytes(100)]
    cases += [bytes(rng.integers(0, 256, int(n), np.uint8)) for n in rng.integers(1, 400, 12)]
    for data in cases:
        request = {"signature_name": "a2b_bytes", "instances": [{"b64": base64.b64encode(data).decode()}]}
        assert error(runner, request), data[:16]
    status, body = serving.predict(runner, json.dumps(
        {"signature_name": "a2b_bytes", "instances": [{"b64": base64.b64encode(good).decode()}]}))
    assert status == 200
    out = tf.io.decode_png(decoded(json.loads(body)["predictions"])[0]).numpy()
    assert out.shape == (20, 24, 3)


def test_b64_and_float_writing_follow_tf_serving():
    assert serving.b64decode("c2VydmluZw==") == b"serving" == serving.b64decode("c2Vydmlu Zw")
    for bad in ("c2VydmluZw=", "c2V-dmluZw", "a"):
        with pytest.raises(serving.RestError, match="Unable to base64 decode"):
            serving.b64decode(bad)
    floats = {"x": np.array([[0.5, 3.0, 9e6, 1 / 3, np.nan, -np.inf]], np.float32)}
    assert serving.format_response(floats, row=True) == \
        '{"predictions": [[0.5,3.0,9e+06,0.333333343,NaN,-Infinity]]}'
    strings = {"output_bytes": np.array([b"\x00\xff"], object), "name": np.array([b"cat"], object)}
    assert json.loads(serving.format_response(strings, row=False))["outputs"] == {
        "output_bytes": [{"b64": "AP8="}], "name": ["cat"]}
    with pytest.raises(serving.RestError, match="inconsistent batch size: 2 expecting: 1"):
        serving.format_response({"a": np.zeros(1), "b": np.zeros(2)}, row=True)


def test_contract_server_on_loopback(exports):
    _, version = exports("cyclegan")
    with serving.ContractServer({"cartoons": version}) as server:
        def call(path, body=None):
            request = urllib.request.Request(server.url + path, data=body, method="POST" if body else "GET")
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        status, body = call("/v1/models/cartoons")
        assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"
        png = base64.b64encode(png_bytes(16, 16)).decode()
        request = json.dumps({"signature_name": "a2b_bytes", "instances": [{"b64": png}]}).encode()
        status, body = call(f"/v1/models/cartoons/versions/{version.name}:predict", request)
        assert status == 200 and tf.io.decode_png(base64.b64decode(body["predictions"][0]["b64"])).shape == (16, 16, 3)
        assert call("/v1/models/dogs:predict", request) == (404, {"error": "Servable not found for request: "
                                                                            "Latest(dogs)"})
        assert call("/v1/models/cartoons:predict", b"[") [0] == 400
        assert call("/v1/oops", b"{}") == (400, {"error": "Malformed request: POST /v1/oops"})


@pytest.mark.parametrize("method", EXPORTABLE)
def test_warmup_requests_cover_and_run_every_signature(exports, runners, method):
    _, version = exports(method)
    _, runner, _ = runners(method)
    requests = serving_config.read_warmup(version)
    assert sorted(name for name, _ in requests) == sorted(set(runner.signatures) - {"serving_default"})
    for name, inputs in requests:
        outputs = runner.run(name, inputs)
        for key, value in outputs.items():
            assert len(value) == 1
            if value.dtype == object:
                assert tf.io.decode_png(value[0]).shape[-1] in (1, 3)
            else:
                assert np.isfinite(value).all(), f"{name}/{key}"


def test_models_config_lists_every_export_and_reads_back(exports, tmp_path, capsys):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    from tf_translate import cli

    root = tmp_path / "exported"
    root.mkdir()
    for method in ("cyclegan", "dtn"):
        (root / method).symlink_to(exports(method)[1].parent, target_is_directory=True)
    (root / "notes").mkdir()  # no versions in it: not a model
    assert cli.main(["export", "--serving-config", str(tmp_path / "models.config"), "--models", str(root)]) == 0
    config = text_format.Parse((tmp_path / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    entries = {c.name: c for c in config.model_config_list.config}
    assert sorted(entries) == ["cyclegan", "dtn"]
    assert entries["dtn"].base_path == str((root / "dtn").resolve()) and entries["dtn"].model_platform == "tensorflow"
    assert cli.main(["export", "--serving-config", str(tmp_path / "docker.config"), "--models", str(root),
                     "--server-root", "/models/"]) == 0
    config = text_format.Parse((tmp_path / "docker.config").read_text(), model_server_config_pb2.ModelServerConfig())
    assert [c.base_path for c in config.model_config_list.config] == ["/models/cyclegan", "/models/dtn"]
    assert cli.main(["export", "--serving-config", str(tmp_path / "x.config"), "--models", str(root / "notes")]) == 2
    assert "no exported model in it" in capsys.readouterr().err


def test_serve_client_against_the_contract_server(exports, tmp_path, capsys):
    from tf_translate import cli

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.full((16, 24, 3), 200, np.uint8)).save(folder / "plain.png")
    rotated = Image.fromarray(np.full((16, 24, 3), 90, np.uint8))
    exif = rotated.getexif()
    exif[0x0112] = 6  # EXIF orientation: rotate 90 degrees: a person sees it 24 high, 16 wide
    rotated.save(folder / "rotated.jpg", exif=exif)
    Image.new("RGBA", (20, 20), (0, 0, 0, 0)).save(folder / "clear.png")
    (folder / "broken.png").write_bytes(png_bytes(20, 20)[:60])
    cyclegan, stargan = exports("cyclegan")[1], exports("stargan")[1]
    with serving.ContractServer({"cyclegan": cyclegan, "stargan": stargan}) as server:
        run = lambda *args: cli.main(["serve-client", *map(str, args)], command=None)  # noqa: E731
        assert run(server.url + "/v1/models/cyclegan", folder, "--output", tmp_path / "x") == 2
        assert "a2b_bytes, b2a_bytes; choose one with --signature" in capsys.readouterr().err
        with pytest.raises(SystemExit) as stopped:  # broken.png named, the other three written
            run(server.url + "/v1/models/cyclegan:predict", folder, "--output", tmp_path / "out",
                "--signature", "b2a_bytes", "--batch", "2")
        assert stopped.value.code == 1
        err = capsys.readouterr().err
        assert "broken.png" in err and err.count("failed:") == 1
        sizes = {p.name: Image.open(p).size for p in (tmp_path / "out").iterdir()}
        assert sizes == {"plain.png": (24, 16), "rotated.png": (16, 24), "clear.png": (20, 20)}
        with pytest.raises(SystemExit):  # the server refuses every image: each is named with its reason
            run(server.url + "/v1/models/stargan", folder / "plain.png", folder / "clear.png", "--output",
                tmp_path / "s", "--to", "nowhere")
        err = capsys.readouterr().err
        assert err.count("HTTP 400") == 2 and err.count("unknown domain in") == 2 and "nowhere" in err
        assert run(server.url + "/v1/models/stargan/versions/1", folder / "plain.png", "--output", tmp_path / "s",
                   "--to", "sad") == 0
    assert run("http://127.0.0.1:9/v1/models/cyclegan", folder, "--output", tmp_path / "y") == 2
    assert "cannot reach the server" in capsys.readouterr().err
    assert run("http://127.0.0.1:9/v1/models/cyclegan", tmp_path / "nope.png", "--output", tmp_path / "y") == 2
    assert "nope.png: no such file or folder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def fuzzed(exports, tmp_path_factory) -> dict:
    """Every exportable method's tiny export, every signature fed hostile requests in one
    process (tests/support/fuzz_signatures.py), then a good one: {version folder: [outcomes]}."""
    versions = []
    for method in EXPORTABLE:
        try:
            versions.append(str(exports(method)[1]))
        except pytest.skip.Exception:  # fast style without the VGG-16 weights: the others still run
            pass
    out = tmp_path_factory.mktemp("fuzz") / "outcomes.json"
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "support" / "fuzz_signatures.py"), str(out), *versions],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"the serving process died (exit {done.returncode}): {done.stderr[-3000:]}"
    return json.loads(out.read_text())


def test_decompression_bombs_are_refused_before_decoding(fuzzed):
    """A 12000 x 12000 PNG of 140 KB, and JPEG, GIF, BMP and WebP files that declare huge sizes,
    to every bytes signature: InvalidArgument naming the size and the limit; the process lives
    (it would abort on std::bad_alloc) and answers a good request afterwards."""
    from tests.support.fuzz_signatures import bombs

    cases = set(bombs())
    for version, rows in fuzzed.items():
        limit = config.load(Path(version) / "config.json").export.max_pixels
        signatures = {row["signature"] for row in rows if row["case"] in cases}
        assert signatures == {name for name in {row["signature"] for row in rows} if name.endswith("_bytes")}
        for row in rows:
            where = f"{version} {row['signature']} {row['case']}: {row['outcome']}"
            if row["case"] == "webp animated":  # TensorFlow's WebP decoder crashes on animations
                assert row["outcome"].startswith("InvalidArgument") and "animated WebP" in row["outcome"], where
            elif row["case"] in cases:
                assert row["outcome"].startswith("InvalidArgument") and f"limit of {limit:,} pixels" in row["outcome"]
                size = "3600000000 pixels" if row["case"] == "gif frame 60000x60000" else row["case"].split()[-1]
                assert size in row["outcome"], where
        assert all(row["outcome"] == "result" for row in rows if row["case"] == "good"), version


def test_float_signatures_survive_fuzzed_tensors(fuzzed):
    """NaN, Inf, empty, 1 x 1, huge and wrongly shaped tensors to every float signature: a result
    or a refusal, never a crash; over the pixel limit refused before the generator runs."""
    for version, rows in fuzzed.items():
        fixed = config.load(Path(version) / "config.json").method == "dtn"  # one input size only
        floats = [row for row in rows if row["case"] not in ("good",) and not row["signature"].endswith("_bytes")]
        assert floats, version
        for row in floats:
            where = f"{version} {row['signature']} {row['case']}: {row['outcome']}"
            assert row["outcome"] == "result" or row["outcome"].startswith(("InvalidArgument", "refused")), where
            if row["case"] in ("nan", "inf", "-inf"):
                assert row["outcome"] == "result", where
            sized = ("3000x3000", "zero side") if not fixed else ()  # a fixed-size input keeps its size
            if row["case"] in (*sized, "empty batch", "rank 3", "wrong channels"):
                assert row["outcome"] != "result", where
            if row["case"] == "100 x 256x256" and not fixed:
                assert "pixels per request" in row["outcome"], where
