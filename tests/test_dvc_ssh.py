"""The DVC round trip through a real remote protocol: an SSH server on 127.0.0.1 (Debian's
openssh-server, started here as root on a free port with its own host key and one authorized key)
stands for the lab's remote `lab`.

No training runs: the rows come from the remote shipped in the repository. One clone pulls a
table's rows and the scale's dataset, pushes them to `lab` with `scratchdet artifacts push` and
commits; a second clone of it gets them back through SSH alone (`scratchdet artifacts pull`), byte
for byte, then the rest from the shipped remote, and Snakemake plans only reports. An unreachable
`lab` is one line naming it, exit 2.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.test_dvc_roundtrip import (
    GIT,
    only_reports,
    project_copy,
    restored_files,
    run,
    use_remote,
)
from tests.test_workflow import plan, train_jobs

SSHD = "/usr/sbin/sshd"
TABLE = "results/default/dsod_table6"
DATASET = "data.dvc"

pytestmark = [
    pytest.mark.skipif(
        not os.path.exists(SSHD),
        reason=f"{SSHD} not installed (Debian: apt-get install openssh-server)",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="starting sshd on a free port needs root"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> str:
    """A new ed25519 key pair at `path` (+ .pub); returns the public key line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "scratchdet-test", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path.with_suffix(".pub").read_text().strip()


@pytest.fixture()
def sshd(tmp_path, monkeypatch):
    """An sshd on 127.0.0.1:<free port> that lets root in with a key made here; HOME points at a
    folder of its own, so that no key or ssh config of the machine takes part. (DVC's SSH
    filesystem, sshfs, does not check host keys: known_hosts is for a plain `ssh` only.)"""
    etc, home = tmp_path / "sshd", tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    etc.mkdir()
    keygen(etc / "host_key")
    (etc / "authorized_keys").write_text(keygen(home / ".ssh" / "id_ed25519") + "\n")
    port = free_port()
    (etc / "sshd_config").write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {etc / 'host_key'}",
                f"PidFile {etc / 'sshd.pid'}",
                f"AuthorizedKeysFile {etc / 'authorized_keys'}",
                "StrictModes no",
                "UsePAM no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "Subsystem sftp internal-sftp",
                "",
            ]
        )
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
    with open(etc / "sshd.log", "w") as log:
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(etc / "sshd_config")], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            for _ in range(100):
                assert proc.poll() is None, f"sshd exited: {(etc / 'sshd.log').read_text()}"
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                pytest.fail(
                    f"sshd does not listen on port {port}: {(etc / 'sshd.log').read_text()}"
                )
            monkeypatch.setenv("HOME", str(home))
            yield {"port": port, "key": home / ".ssh" / "id_ed25519"}
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def scratchdet(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        [sys.executable, "-m", "scratchdet", "artifacts", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def set_lab(repo: Path, url: str, key: Path) -> None:
    """This clone's `lab` remote (.dvc/config.local), logging in with `key`."""
    run("dvc", "remote", "add", "--local", "--force", "lab", url, cwd=repo)
    run("dvc", "remote", "modify", "--local", "lab", "keyfile", str(key), cwd=repo)


def test_artifacts_go_to_the_lab_remote_and_come_back_through_ssh(tmp_path, sshd):
    storage = tmp_path / "lab-storage"  # the SSH server's folder behind the remote `lab`
    url = f"ssh://root@127.0.0.1:{sshd['port']}{storage}"

    # First clone: one table's rows and the dataset from the shipped remote, pushed to `lab`.
    first = project_copy(tmp_path / "first", artifacts=True)
    run("dvc", "pull", "-R", TABLE, DATASET, cwd=first)
    set_lab(first, url, sshd["key"])
    pushed = scratchdet("push", "--results", "results/default", "--remote", "lab", cwd=first)
    assert pushed.returncode == 0, pushed.stderr
    dvc_files = [line for line in pushed.stdout.splitlines() if line.endswith(".dvc")]
    assert DATASET in dvc_files and all(f.startswith((TABLE, DATASET)) for f in dvc_files)
    assert len(dvc_files) >= 2, pushed.stdout
    for f in dvc_files:  # each names its remote, so that a plain `dvc pull` finds it
        assert yaml.safe_load((first / f).read_text())["outs"][0]["remote"] == "lab", f
    assert any((storage / "files" / "md5").rglob("*.dir"))  # on the server, through SSH
    run(*GIT, "add", "-A", cwd=first)
    run(*GIT, "commit", "-qm", "artifacts on lab", cwd=first)

    second = tmp_path / "second"
    run(*GIT, "clone", "-q", str(first), str(second), cwd=tmp_path)

    # `lab` unreachable: one line naming it and how to set it, before DVC runs.
    closed = f"ssh://root@127.0.0.1:{free_port()}{storage}"
    set_lab(second, closed, sshd["key"])
    failed = scratchdet("pull", "--results", TABLE, cwd=second)
    assert failed.returncode == 2, failed.stderr
    assert failed.stderr.count("\n") == 1, failed.stderr
    assert (
        f"DVC remote 'lab' ({closed}) cannot be reached:" in failed.stderr
        and "set its url with `dvc remote modify --local lab url <URL>`" in failed.stderr
    )
    assert not any((second / TABLE).rglob("metrics.json"))  # nothing pulled

    # Through SSH alone (the shipped remote pointed nowhere): the table and the dataset come back
    # byte for byte.
    set_lab(second, url, sshd["key"])
    use_remote(second, tmp_path / "nowhere")
    pulled = scratchdet("pull", "--results", TABLE, cwd=second)
    assert pulled.returncode == 0, pulled.stderr
    run("dvc", "pull", DATASET, cwd=second)  # names `lab`: the shipped remote is not asked
    folders = ("data", TABLE)
    assert restored_files(second, *folders) == restored_files(first, *folders)
    assert restored_files(second, TABLE) and not any((second / "results").rglob("*.pt"))

    # The rest from the shipped remote; then only reports are left to make.
    use_remote(second, second / "dvc-remote")
    pulled = scratchdet("pull", "--results", "results/default", cwd=second)
    assert pulled.returncode == 0, pulled.stderr
    planned = plan(second)
    assert train_jobs(planned) == [] and only_reports(planned), planned
    shutil.rmtree(storage)
