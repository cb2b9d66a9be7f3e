"""mlx.launch hostfiles as the distributed supervisor reads them: a host name that ssh would take for an option
(and run, as with -oProxyCommand) or that holds spaces is refused before anything starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlx_manager.engine.distributed.supervisor import read_hostfile


def hostfile(tmp_path: Path, entries: object) -> Path:
    path = tmp_path / "hosts.json"
    path.write_text(json.dumps(entries))
    return path


def test_a_hostfile_gives_one_host_per_rank_with_its_ips_and_python(tmp_path: Path) -> None:
    path = hostfile(
        tmp_path,
        [{"ssh": "localhost", "ips": ["127.0.0.1"]}, {"ssh": "node-b", "ips": ["10.0.0.2"], "python": "/opt/py"}],
    )
    first, second = read_hostfile(path)
    assert (first.ssh, first.ips, first.python) == ("localhost", ("127.0.0.1",), None)
    assert (second.ssh, second.ips, second.python) == ("node-b", ("10.0.0.2",), "/opt/py")


@pytest.mark.parametrize("name", ["-oProxyCommand=touch /tmp/pwned", "node b", "", "node\tb"])
def test_a_host_name_ssh_would_misread_is_refused(tmp_path: Path, name: str) -> None:
    path = hostfile(tmp_path, [{"ssh": "localhost", "ips": ["127.0.0.1"]}, {"ssh": name, "ips": ["10.0.0.2"]}])
    with pytest.raises(ValueError, match="not a host name"):
        read_hostfile(path)


def test_a_hostfile_that_is_not_a_list_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="JSON list"):
        read_hostfile(hostfile(tmp_path, {"ssh": "localhost"}))
