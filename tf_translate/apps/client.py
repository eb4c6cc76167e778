"""A REST client for a model served by TF Serving: sends image files to its bytes signature
(``*_bytes``: encoded image in, PNG out) in batches and saves what comes back.

Files are read as everywhere in tf_translate (EXIF rotation applied, alpha composited on
white, greyscale and 16-bit made 8-bit RGB, huge images refused from their header) and sent
as PNG, so the server sees the picture a person sees. A batch the server refuses is retried
one image at a time, so a bad file is named and the others are still translated.
"""

from __future__ import annotations

import base64
import io
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from tf_translate.apps.outputs import output_paths
from tf_translate.data.images import DataError, ImageError, input_files, read_image


class ClientError(RuntimeError):
    """The server cannot be reached or refused the request; the message says which and why."""

    def __init__(self, message: str, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


def model_url(url: str) -> str:
    """``http://HOST:PORT/v1/models/NAME[/versions/N]`` without a trailing ``:predict`` or slash."""
    url = url.rstrip("/")
    url = url[: -len(":predict")] if url.endswith(":predict") else url
    if "/v1/models/" not in url:
        raise ClientError(f"{url}: expected a model URL, http://HOST:8501/v1/models/NAME[/versions/N]")
    return url


def call(url: str, payload: dict | None = None, timeout: float = 300.0) -> dict:
    """GET (no payload) or POST JSON; the parsed answer, or ClientError with the server's error."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        body = e.read().decode("utf-8", "replace")
        try:
            message = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            message = body.strip() or e.reason
        raise ClientError(f"{url}: HTTP {e.code}: {message.strip().splitlines()[0]}") from None  # TF's first line
    except urllib.error.URLError as e:
        raise ClientError(f"{url}: cannot reach the server ({e.reason})", unreachable=True) from None


def bytes_signature(url: str, chosen: str | None) -> tuple[str, list[str]]:
    """The bytes signature to call (``chosen``, or the model's only one) and its input names."""
    try:
        signatures = call(url + "/metadata")["metadata"]["signature_def"]["signature_def"]
    except (KeyError, TypeError):
        raise ClientError(f"{url}/metadata: not TF Serving's model metadata (no signature_def)") from None
    available = sorted(name for name in signatures if name.endswith("_bytes"))
    if chosen is None:
        if len(available) != 1:
            raise ClientError(f"{url}: this model has the bytes signatures {', '.join(available) or 'none'}; "
                              "choose one with --signature")
        chosen = available[0]
    if chosen not in signatures:
        raise ClientError(f"{url}: no signature {chosen!r}; it has {', '.join(sorted(signatures))}")
    return chosen, sorted(signatures[chosen].get("inputs", {}))


def png_b64(path: Path, max_pixels: int) -> str:
    out = io.BytesIO()
    Image.fromarray(read_image(path, max_pixels=max_pixels)).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode("ascii")


def translate(url: str, inputs: list[str], output: str | Path, *, signature: str | None = None,
              domain: str | None = None, style_weights: list[float] | None = None, batch: int = 8,
              max_pixels: int = 50_000_000, timeout: float = 300.0) -> tuple[list[Path], list[str]]:
    """Translate image files (and the images in folders) through a served model; returns the
    files written and one line per file that failed."""
    url = model_url(url)
    if batch < 1:
        raise ClientError(f"--batch {batch}: must be at least 1")
    try:
        paths = input_files(inputs)
    except DataError as e:
        raise ClientError(str(e)) from None
    if not paths:
        raise ClientError(f"no image files in {', '.join(inputs)}")
    name, input_names = bytes_signature(url, signature)
    extra = {}
    if "domain" in input_names:
        if domain is None:
            raise ClientError(f"{name} needs the target domain: give --to NAME")
        extra["domain"] = domain
    if "style_weights" in input_names:
        if style_weights is None:
            raise ClientError(f"{name} needs style weights: give --style-weights 1,0,...")
        extra["style_weights"] = list(style_weights)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    targets, renamed = output_paths(paths, output)
    for line in renamed:
        print(f"note: {line}", file=sys.stderr)
    written, failed = [], []

    def send(group):
        rows = [{"image_bytes": {"b64": data}, **extra} if extra else {"b64": data} for _, _, data in group]
        results = call(url + ":predict", {"signature_name": name, "instances": rows}, timeout)["predictions"]
        for (_, target, _), result in zip(group, results):
            png = result["output_bytes"] if isinstance(result, dict) and "output_bytes" in result else result
            target.write_bytes(base64.b64decode(png["b64"]))
            written.append(target)

    with tqdm(total=len(paths), unit="image", desc="translate", file=sys.stderr) as bar:
        for start in range(0, len(paths), batch):
            group = []
            for path, target in zip(paths[start: start + batch], targets[start: start + batch]):
                try:
                    group.append((path, target, png_b64(path, max_pixels)))
                except ImageError as e:
                    failed.append(str(e))
            try:
                if group:
                    send(group)
            except ClientError as e:
                if e.unreachable:
                    raise
                if len(group) == 1:
                    failed.append(f"{group[0][0]}: {e}")
                else:
                    for one in group:  # find the image the server refused; send the others
                        try:
                            send([one])
                        except ClientError as single:
                            failed.append(f"{one[0]}: {single}")
            bar.update(len(paths[start: start + batch]))
    return written, failed
