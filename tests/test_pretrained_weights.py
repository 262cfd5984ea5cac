"""ImageNet weights as download jobs: which file a row fine-tunes (the same as the builders load),
and the verified, atomic fetch of `python -m scratchdet.models.pretrained` over a local server."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest
import torch

from scratchdet.errors import DataError
from scratchdet.models import build_model
from scratchdet.models import pretrained as pt
from scratchdet.paper_tables import load_table

ROOT = Path(__file__).resolve().parent.parent
PRETRAINED_ROWS = [
    r
    for p in sorted((ROOT / "params").glob("*.tsv"))
    for r in load_table(p)
    if r.pretrained and not r.unpublished
]


class _Requested(Exception):
    pass


@pytest.mark.parametrize(
    "model",
    [r.model for r in PRETRAINED_ROWS]
    + [
        {"name": "ssd300_resnet101", "pretrained": True},
        {
            "family": "resnet",
            "depth": 18,
            "root_kernel": 7,
            "root_stride": 2,
            "root_convs": 1,
            "maxpool": True,
            "maxpool_kernel": 3,
            "extras": "ssd",
            "style": "torchvision",
            "pretrained": True,
        },
    ],
    ids=repr,
)
def test_the_weights_named_for_a_row_are_those_its_builder_loads(model, monkeypatch):
    loaded = []

    def record(weights):
        loaded.append(weights)
        raise _Requested

    monkeypatch.setattr("scratchdet.models.vgg.load_state_dict", record)
    monkeypatch.setattr("scratchdet.models.resnet.load_state_dict", record)
    with torch.device("meta"), pytest.raises(_Requested):
        build_model(model, 20)
    assert loaded == [pt.imagenet_weights(model)]
    assert pt.weights_file(loaded[0]) in pt.checkpoint_path(loaded[0])


def test_a_model_trained_from_scratch_needs_no_weights():
    assert pt.imagenet_weights({"name": "scratchdet300"}) is None
    assert pt.imagenet_weights("dsod300") is None
    assert pt.imagenet_weights({"name": "ssd300_vgg16", "pretrained": False}) is None


PAYLOAD = bytes(range(256)) * 512
PREFIX = hashlib.sha256(PAYLOAD).hexdigest()[:8]


@pytest.fixture()
def server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # http.server's naming
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/weights.pth"
    httpd.shutdown()


def test_fetch_verifies_the_hash_in_the_file_name(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SCRATCHDET_PROGRESS", "lines")  # as in a job's log
    dest = tmp_path / "hub/checkpoints" / f"net-{PREFIX}.pth"
    assert pt.main(["--url", server, "--out", str(dest)]) == 0
    assert dest.read_bytes() == PAYLOAD
    assert f"download net-{PREFIX}.pth:" in capsys.readouterr().err  # its progress
    assert pt.fetch_weights(server, dest) == dest  # verified copy kept


def test_a_download_with_the_wrong_hash_leaves_nothing(server, tmp_path, capsys):
    dest = tmp_path / "net-00000000.pth"
    with pytest.raises(DataError, match="cannot fetch"):
        pt.fetch_weights(server, dest)
    assert list(tmp_path.iterdir()) == []
    assert pt.main(["--url", server, "--out", str(dest)]) == 2
    assert str(dest) in capsys.readouterr().err


def test_a_corrupt_copy_or_an_unverifiable_name_is_refused(server, tmp_path):
    dest = tmp_path / f"net-{PREFIX}.pth"
    dest.write_bytes(b"truncated")
    with pytest.raises(DataError, match="delete it and run again"):
        pt.fetch_weights(server, dest)
    with pytest.raises(DataError, match="no SHA-256 prefix"):
        pt.fetch_weights(server, tmp_path / "net.pth")
