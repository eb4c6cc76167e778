"""TF Serving's REST contract, run here: the server binary cannot be installed on these
machines, so this module follows its rules to test what it would do with an export.

``predict(runner, body)`` takes a Predict request body as TF Serving's REST API does
(``POST /v1/models/NAME[/versions/N]:predict``) and returns (HTTP status, response body),
following ``tensorflow_serving/util/json_tensor.cc``:
- ``signature_name`` (default ``serving_default``), then exactly one of ``instances`` (row
  format: a list with one item per batch element, objects keyed by input name when the
  signature has several inputs) or ``inputs`` (columnar: the whole tensors, by name);
- ``{"b64": "..."}`` for string inputs only, decoded with the standard alphabet;
- numbers checked against the input's dtype (a float is no int32; an int token beyond
  2^24 - 1 is refused for float32, as it would lose precision); lists must be regular;
- responses: ``{"predictions": ...}`` for row requests (all outputs sharing their first
  dimension; a list of values with one output, of objects with several) and ``{"outputs":
  ...}`` for columnar ones; string outputs come back as ``{"b64": ...}`` only when their
  name ends in ``_bytes``; floats are written as TF Serving writes them (6 significant
  digits unless that would not read back, ``NaN``/``Infinity`` bare);
- errors: HTTP 400 (404 for an unknown model) with ``{"error": "..."}`` carrying TF
  Serving's message texts (a JSON parse error names Python's parser's reason, not rapidjson's).
The signature runs in a TF1 graph session (``SessionRunner``), the way the server runs it,
so graph-mode failures show here too. ``ContractServer`` puts it behind a loopback HTTP
server with the REST URLs, for clients such as ``scripts/serve_client.py``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

DEFAULT_SIGNATURE = "serving_default"
BYTES_SUFFIX = "_bytes"  # string outputs whose name ends so are returned as {"b64": ...}
FLOAT_EXACT = {tf.float32: 2**24 - 1, tf.float64: 2**53 - 1}  # largest int token a float holds exactly
INTS = {tf.int8, tf.int16, tf.int32, tf.uint8, tf.int64}
STATUS = {  # TF status codes -> HTTP (tensorflow_serving/model_servers/http_server.cc)
    tf.errors.INVALID_ARGUMENT: 400, tf.errors.FAILED_PRECONDITION: 400, tf.errors.OUT_OF_RANGE: 400,
    tf.errors.NOT_FOUND: 404, tf.errors.UNIMPLEMENTED: 501, tf.errors.RESOURCE_EXHAUSTED: 429,
    tf.errors.DEADLINE_EXCEEDED: 504, tf.errors.UNAVAILABLE: 503,
}


class RestError(Exception):
    """A request TF Serving would refuse: its HTTP status and message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


# --- the model, run as the server runs it -------------------------------------------------

class SessionRunner:
    """An exported version folder loaded into a TF1 graph session (tag ``serve``), with its
    signatures' inputs and outputs as the SavedModel declares them."""

    def __init__(self, model_dir: str | Path):
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            meta = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], str(model_dir))
        # __saved_model_init_op restores tables at load time: not a signature clients call
        self.signatures = {k: v for k, v in meta.signature_def.items() if not k.startswith("__")}

    def inputs(self, signature: str) -> dict:
        """Input alias -> (dtype, shape as a list with None for unknown dimensions)."""
        return {alias: (tf.dtypes.as_dtype(info.dtype),
                        None if info.tensor_shape.unknown_rank else
                        [None if d.size < 0 else d.size for d in info.tensor_shape.dim])
                for alias, info in self.signatures[signature].inputs.items()}

    def run(self, signature: str, inputs: dict) -> dict:
        sig = self.signatures[signature]
        feed = {sig.inputs[alias].name: value for alias, value in inputs.items()}
        aliases = sorted(sig.outputs)
        values = self.session.run([sig.outputs[a].name for a in aliases], feed_dict=feed)
        return dict(zip(aliases, values))

    def close(self) -> None:
        self.session.close()


# --- JSON -> tensors ----------------------------------------------------------------------

def _json_type(value) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return "Number"
    return {str: "String", list: "Array", dict: "Object"}[type(value)]


def _type_name(dtype: tf.DType) -> str:
    """TF's DataTypeString: float, double, int32, string, ..."""
    return types_pb2.DataType.Name(tf.dtypes.as_dtype(dtype).as_datatype_enum)[3:].lower()


def _pretty(value) -> str:
    return json.dumps(value, indent=4)


def b64decode(text: str) -> bytes:
    """Base64 as TF Serving decodes it (absl::Base64Unescape): the standard alphabet,
    whitespace skipped, padding optional but exact when given."""
    data = re.sub(r"\s", "", text).replace(".", "=")
    body = data.rstrip("=")
    pad = len(data) - len(body)
    if re.search(r"[^A-Za-z0-9+/]", body) or len(body) % 4 == 1 or pad not in (0, -len(body) % 4):
        raise RestError("Unable to base64 decode")
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error:
        raise RestError("Unable to base64 decode") from None


def _leaf(value, dtype: tf.DType):
    """One JSON scalar as a value of ``dtype``, or the error TF Serving gives."""
    if dtype == tf.string:
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, dict):
            if not _is_b64(value) or not isinstance(value["b64"], str):
                raise RestError(f"JSON Value: {_pretty(value)} not formatted correctly for base64 data")
            return b64decode(value["b64"])
    elif dtype == tf.bool:
        if isinstance(value, bool):
            return value
    elif not isinstance(value, bool) and isinstance(value, (int, float)):
        if dtype.is_floating:
            limit = FLOAT_EXACT.get(dtype, FLOAT_EXACT[tf.float32]) if isinstance(value, int) else float(dtype.max)
            if math.isfinite(value) and abs(value) > limit:
                raise RestError(f"Cannot convert JSON value: {value} to {_type_name(dtype)} without loss of precision.")
            return value
        bound = tf.int64 if dtype == tf.int64 else tf.int32  # rapidjson's IsInt / IsInt64
        if dtype in INTS and isinstance(value, int) and bound.min <= value <= bound.max:
            return value
    raise RestError(f"JSON Value: {_pretty(value)} Type: {_json_type(value)} is not of expected type: {_type_name(dtype)}")


def _is_b64(value) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def to_tensor(value, dtype: tf.DType) -> np.ndarray:
    """A JSON value (nested lists of scalars) as a regular array of ``dtype``: the shape is
    read along the first elements, then every list must fit it (TF Serving's messages)."""
    shape, probe = [], value
    while isinstance(probe, list):
        shape.append(len(probe))
        probe = probe[0] if probe else None
    flat = []

    def walk(item, level):
        if isinstance(item, list):
            if level >= len(shape):
                raise RestError(f"Encountered list at unexpected level: {level} expected < {len(shape)}")
            if len(item) != shape[level]:
                raise RestError(f"Encountered list at unexpected size: {len(item)} at level: {level} "
                                f"expected size: {shape[level]}")
            for child in item:
                walk(child, level + 1)
        elif level != len(shape):
            raise RestError(f"JSON Value: {_pretty(item)} found at incorrect level: {level + 1} in the JSON DOM. "
                            f"Expected at level: {len(shape)}")
        else:
            flat.append(_leaf(item, dtype))

    if isinstance(value, dict) and not _is_b64(value):
        raise RestError(f"JSON Value: {_pretty(value)} Type: Object is not of expected type: {_type_name(dtype)}")
    walk(value, 0)
    array = np.array(flat, dtype=object if dtype == tf.string else dtype.as_numpy_dtype)
    return array.reshape(shape)


def _rows(instances: list, names: list[str], inputs: dict) -> dict:
    """Row format: one item per batch element, stacked per input."""
    keyed = isinstance(instances[0], dict) and not _is_b64(instances[0])
    if len(names) > 1 and not keyed:
        raise RestError("instances is a plain list, but expecting list of objects as multiple input tensors "
                        "required as per tensorinfo_map")
    columns = {name: [] for name in names}
    for i, item in enumerate(instances):
        is_object = isinstance(item, dict) and not _is_b64(item)
        if keyed and not is_object:
            raise RestError(f"Expecting object but got list at item {i} of input list")
        if not keyed and is_object:
            raise RestError(f"Expecting value/list but got object at item {i} of input list")
        if keyed:
            for key in item:
                if key not in columns:
                    raise RestError(f"Failed to process element: {i} key: {key} of 'instances' list. Error: "
                                    f"INVALID_ARGUMENT: JSON object: does not have named input: {key}")
            if set(item) != set(names):
                raise RestError(f"Failed to process element: {i} of 'instances' list. JSON object: "
                                f"{_pretty(item)} must only have keys: {','.join(sorted(names))}")
        for name in names:
            try:
                tensor = to_tensor(item[name] if keyed else item, inputs[name][0])
                first = columns[name][0] if columns[name] else tensor
                if tensor.size != first.size:
                    raise RestError(f"Expecting tensor size: {first.size} but got: {tensor.size}")
                if tensor.shape != first.shape:
                    raise RestError(f"Expecting shape {_shape(first.shape)} but got: {_shape(tensor.shape)}")
            except RestError as e:
                where = f" key: {name}" if keyed else ""
                raise RestError(f"Failed to process element: {i}{where} of 'instances' list. Error: "
                                f"INVALID_ARGUMENT: {e.message}") from None
            columns[name].append(tensor)
    return {name: np.stack(values) for name, values in columns.items()}


def _shape(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _columns(value, names: list[str], inputs: dict) -> dict:
    """Columnar format: the whole tensors, by input name (extra names are ignored)."""
    if not isinstance(value, dict) or _is_b64(value):
        if len(names) > 1:
            raise RestError("inputs is a plain value/list, but expecting an object as multiple input tensors "
                            "required as per tensorinfo_map")
        return {names[0]: to_tensor(value, inputs[names[0]][0])}
    missing = [name for name in names if name not in value]
    if missing:
        raise RestError(f"Missing named input: {missing[0]} in 'inputs' object.")
    return {name: to_tensor(value[name], inputs[name][0]) for name in names}


def parse_request(body: bytes | str, runner: SessionRunner) -> tuple[str, dict, bool]:
    """(signature name, input arrays, whether the request was in row format)."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
    except UnicodeDecodeError as e:
        raise RestError(f"JSON Parse error: Invalid encoding in string. at offset: {e.start}") from None
    if not text.strip():
        raise RestError("JSON Parse error: The document is empty")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise RestError(f"JSON Parse error: {e.msg} at offset: {e.pos}") from None
    if not isinstance(doc, dict):
        raise RestError(f"JSON Value: {_pretty(doc)} Is not object")
    signature = doc.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(signature, str):
        raise RestError(f"JSON Value: {_pretty(doc)} not formatted correctly. 'signature_name' key must be a "
                        "string value.")
    signature = signature or DEFAULT_SIGNATURE
    if signature not in runner.signatures:
        raise RestError(f'Serving signature name: "{signature}" not found in signature def')
    inputs = runner.inputs(signature)
    names = sorted(inputs)
    if "instances" in doc and "inputs" in doc:
        raise RestError(f"JSON Value: {_pretty(doc)} Not formatted correctly expecting only one of 'inputs' or "
                        "'instances' keys to exist ")
    if "instances" in doc:
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise RestError(f"JSON Value: {_pretty(doc)} Excepting 'instances' to be an list/array")
        if not instances:
            raise RestError(f"JSON Value: {_pretty(doc)} No values in 'instances' array")
        return signature, _rows(instances, names, inputs), True
    if "inputs" in doc:
        return signature, _columns(doc["inputs"], names, inputs), False
    raise RestError("Missing 'inputs' or 'instances' key")


def check_inputs(arrays: dict, inputs: dict) -> None:
    """Shapes against the signature's: the server's graph would fail on them (its text varies
    with the op; this one names the input)."""
    for name, array in arrays.items():
        dtype, shape = inputs[name]
        if shape is not None and (array.ndim != len(shape) or any(
                want is not None and got != want for got, want in zip(array.shape, shape))):
            want = ",".join("?" if d is None else str(d) for d in shape)
            raise RestError(f"input {name}: shape {_shape(array.shape)} does not match the signature's [{want}]")


# --- tensors -> JSON ----------------------------------------------------------------------

def _number(value, dtype) -> str:
    """A float as TF Serving writes it: %g (6 digits) unless that does not read back."""
    value = dtype.type(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    text = f"{value:g}"
    if dtype.type(text) != value:
        text = f"{value:.{9 if dtype == np.float32 else 17}g}"
    return text if ("." in text or "e" in text) else text + ".0"


def _write(value, name: str) -> str:
    """An output array (or element) as JSON text."""
    array = np.asarray(value)
    if array.ndim:
        return "[" + ",".join(_write(item, name) for item in array) + "]"
    item = array.item()
    if array.dtype.kind in "SOU":
        data = item if isinstance(item, bytes) else str(item).encode("utf-8")
        if name.endswith(BYTES_SUFFIX):
            return json.dumps({"b64": base64.b64encode(data).decode("ascii")})
        return json.dumps(data.decode("utf-8", errors="replace"))
    if array.dtype.kind == "b":
        return "true" if item else "false"
    if array.dtype.kind == "f":
        return _number(item, array.dtype)
    return str(int(item))


def format_response(outputs: dict, row: bool) -> str:
    """The response body: ``predictions`` (row) or ``outputs`` (columnar)."""
    names = sorted(outputs)
    if not names:
        raise RestError("Cannot convert empty tensor map to JSON", 500)
    if not row:
        if len(names) == 1:
            return '{"outputs": ' + _write(outputs[names[0]], names[0]) + "}"
        return '{"outputs": {' + ", ".join(f"{json.dumps(n)}: {_write(outputs[n], n)}" for n in names) + "}}"
    batch = None
    for name in names:
        shape = np.shape(outputs[name])
        if not shape:
            raise RestError(f"Tensor name: {name} has no shape information ")
        if shape[0] < 1:
            raise RestError(f"Tensor name: {name} has invalid batch size: {shape[0]}")
        if batch is not None and shape[0] != batch:
            raise RestError(f"Tensor name: {name} has inconsistent batch size: {shape[0]} expecting: {batch}")
        batch = shape[0]
    if len(names) == 1:
        items = [_write(item, names[0]) for item in outputs[names[0]]]
    else:
        items = ["{" + ", ".join(f"{json.dumps(n)}: {_write(outputs[n][i], n)}" for n in names) + "}"
                 for i in range(batch)]
    return '{"predictions": [' + ", ".join(items) + "]}"


def error_body(message: str) -> str:
    return json.dumps({"error": message})


def status_message(error: tf.errors.OpError) -> str:
    """The op's own message, as the server's status carries it: Python's session adds a
    "Graph execution error" preamble and the Python stack where the op was defined."""
    text = error.message
    match = re.search(r"\nNode: '[^']*'\n(.*?)(?:\n\nOriginal stack trace|\Z)", text, re.S)
    return match[1].strip() if match else re.sub(r"\AGraph execution error:\s*", "", text).strip()


def predict(runner: SessionRunner, body: bytes | str) -> tuple[int, str]:
    """(HTTP status, JSON body) for a Predict request, as TF Serving answers it."""
    try:
        signature, arrays, row = parse_request(body, runner)
        check_inputs(arrays, runner.inputs(signature))
        try:
            outputs = runner.run(signature, arrays)
        except tf.errors.OpError as e:
            raise RestError(status_message(e), STATUS.get(e.error_code, 500)) from None
        return 200, format_response(outputs, row)
    except RestError as e:
        return e.status, error_body(e.message)


# --- the REST URLs on loopback ------------------------------------------------------------

PREDICT_URL = re.compile(r"(?i)/v1/models/([^/:]+)(?:/versions/(\d+))?:predict")
STATUS_URL = re.compile(r"(?i)/v1/models/([^/:]+)(?:/versions/(\d+))?(/metadata)?")


class ContractServer:
    """TF Serving's REST URLs for exported models (name -> version folder) on 127.0.0.1:
    ``POST /v1/models/NAME[/versions/N]:predict``, ``GET /v1/models/NAME`` (status) and
    ``GET /v1/models/NAME/metadata`` (the signatures).
    Use as a context manager; ``url`` is its address."""

    def __init__(self, models: dict, port: int = 0):
        self.versions = {name: Path(path) for name, path in models.items()}
        self.runners = {name: SessionRunner(path) for name, path in self.versions.items()}
        self.lock = threading.Lock()  # one session run at a time, like a single-threaded batch
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: str):
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._send(*outer.handle_post(self.path, body))

            def do_GET(self):
                self._send(*outer.handle_get(self.path))

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def _model(self, name: str, version: str | None):
        if name not in self.runners or (version and version != self.versions[name].name):
            which = f"Specific({name}, {version})" if version else f"Latest({name})"
            raise RestError(f"Servable not found for request: {which}", 404)
        return self.runners[name]

    def handle_post(self, path: str, body: bytes) -> tuple[int, str]:
        match = PREDICT_URL.fullmatch(path)
        try:
            if not match:
                raise RestError(f"Malformed request: POST {path}")
            runner = self._model(match[1], match[2])
        except RestError as e:
            return e.status, error_body(e.message)
        with self.lock:
            return predict(runner, body)

    def handle_get(self, path: str) -> tuple[int, str]:
        match = STATUS_URL.fullmatch(path)
        try:
            if not match:
                raise RestError(f"Malformed request: GET {path}")
            self._model(match[1], match[2])
        except RestError as e:
            return e.status, error_body(e.message)
        version = self.versions[match[1]].name
        if match[3]:  # GetModelMetadata: the signatures, as the SignatureDefMap proto's JSON
            from google.protobuf import json_format
            from tensorflow_serving.apis import get_model_metadata_pb2

            signatures = get_model_metadata_pb2.SignatureDefMap()
            for name, signature in self.runners[match[1]].signatures.items():
                signatures.signature_def[name].CopyFrom(signature)
            return 200, json.dumps({"model_spec": {"name": match[1], "signature_name": "", "version": version},
                                    "metadata": {"signature_def": json_format.MessageToDict(
                                        signatures, preserving_proto_field_name=True)}})
        return 200, json.dumps({"model_version_status": [{"version": version, "state": "AVAILABLE", "status": {
            "error_code": "OK", "error_message": ""}}]})

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        for runner in self.runners.values():
            runner.close()
