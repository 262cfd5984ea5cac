"""scratchdet.data.download: resumable verified transfers over a real local HTTP server, and
extraction that refuses archive members escaping the target folder."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from pathlib import Path
from typing import ClassVar

import pytest

from scratchdet.data.download import extract, fetch, verify
from scratchdet.errors import DataError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /file, honouring `Range: bytes=N-` unless the server says not to."""

    honour_range: ClassVar[bool] = True
    requests: ClassVar[list[str | None]] = []

    def do_GET(self):  # http.server's naming
        rng = self.headers.get("Range")
        type(self).requests.append(rng)
        start = int(rng.split("=")[1].rstrip("-")) if rng and self.honour_range else 0
        body = PAYLOAD[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    _Handler.requests = []
    _Handler.honour_range = True
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/file"
    httpd.shutdown()


MD5 = hashlib.md5(PAYLOAD).hexdigest()


def test_fetch_resumes_a_partial_file_with_a_range_request(server, tmp_path):
    dest = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:1000])
    fetch(server, dest, md5=MD5)
    assert dest.read_bytes() == PAYLOAD
    assert _Handler.requests == ["bytes=1000-"]
    assert not (tmp_path / "a.bin.part").exists()


def test_fetch_restarts_when_the_server_ignores_range(server, tmp_path):
    _Handler.honour_range = False
    dest = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(b"x" * 1000)
    fetch(server, dest, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert dest.read_bytes() == PAYLOAD


def test_a_wrong_checksum_leaves_no_file_behind(server, tmp_path):
    dest = tmp_path / "a.bin"
    with pytest.raises(DataError, match="md5 is"):
        fetch(server, dest, md5="0" * 32)
    assert not dest.exists() and not (tmp_path / "a.bin.part").exists()


def test_fetch_refuses_a_download_it_cannot_verify(server, tmp_path):
    with pytest.raises(DataError, match="no checksum"):
        fetch(server, tmp_path / "a.bin")


def test_a_verified_file_is_not_fetched_again(server, tmp_path):
    dest = tmp_path / "a.bin"
    dest.write_bytes(PAYLOAD)
    fetch(server, dest, md5=MD5)
    assert _Handler.requests == []


def test_a_corrupt_existing_file_is_named_with_what_to_do(server, tmp_path):
    dest = tmp_path / "a.bin"
    dest.write_bytes(PAYLOAD[:-1])
    with pytest.raises(DataError, match=r"a.bin: .*md5 is .*delete it and run again"):
        fetch(server, dest, md5=MD5)
    assert dest.exists() and _Handler.requests == []  # kept, not overwritten behind the user


def test_a_missing_source_mentions_no_partial_file(tmp_path):
    with pytest.raises(DataError, match="failed after 1 tries") as info:
        fetch("http://127.0.0.1:9/nothing", tmp_path / "a.bin", md5=MD5, retries=1)
    assert "partial file" not in str(info.value)


def test_manual_archives_are_never_fetched(server, tmp_path):
    with pytest.raises(DataError, match="log in first"):
        fetch(server, tmp_path / "t.tar", manual="log in first")
    assert _Handler.requests == []
    (tmp_path / "t.tar").write_bytes(PAYLOAD)
    assert fetch(server, tmp_path / "t.tar", manual="log in first") == tmp_path / "t.tar"


def test_verify_names_the_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    verify(path, md5=hashlib.md5(b"abc").hexdigest())
    with pytest.raises(DataError, match=str(path)):
        verify(path, sha256="1" * 64)


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return path


def test_extract_merges_archives_sharing_a_tree(tmp_path):
    a = _tar(tmp_path / "a.tar", {"VOCdevkit/VOC2007/ImageSets/trainval.txt": b"1\n"})
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as zf:
        zf.writestr("VOCdevkit/VOC2007/ImageSets/test.txt", "2\n")
    out = tmp_path / "out"
    assert extract(a, out, tmp_path / "a.done") == 1
    extract(tmp_path / "b.zip", out)
    sets = out / "VOCdevkit/VOC2007/ImageSets"
    assert sorted(p.name for p in sets.iterdir()) == ["test.txt", "trainval.txt"]
    assert "1 members" in (tmp_path / "a.done").read_text()
    assert [p.name for p in out.iterdir()] == ["VOCdevkit"]  # no scratch folder left


def test_extract_refuses_a_tar_member_escaping_the_folder(tmp_path):
    evil = _tar(tmp_path / "evil.tar", {"../escaped.txt": b"x"})
    with pytest.raises(DataError, match="unsafe member"):
        extract(evil, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()


def test_extract_refuses_a_zip_member_escaping_the_folder(tmp_path):
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr("../../escaped.txt", "x")
    with pytest.raises(DataError, match="outside"):
        extract(tmp_path / "evil.zip", tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "out" / "ok.txt").exists()  # checked before anything is written


def test_extract_rejects_other_files(tmp_path):
    (tmp_path / "x.tar").write_bytes(b"not an archive")
    with pytest.raises(DataError, match="neither a tar nor a zip"):
        extract(tmp_path / "x.tar", tmp_path / "out")
