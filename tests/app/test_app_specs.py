"""The app's spec handling: the edited spec's YAML loads in ``hwsim show`` to the same numbers,
uploads go through the CLI's loader and limits (same messages), edits use ``--set`` syntax;
the job cache; the ``hwsim app`` command's host warning and lazy imports."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hwsim.app.jobs import Jobs
from hwsim.app.specs import (
    Uploads,
    device_names,
    parse_overrides,
    set_override,
    spec_yaml,
    whatif_device,
    whatif_filename,
)
from hwsim.cli import guard
from hwsim.cli.app import app
from hwsim.cli.app_cmd import network_warning
from hwsim.spec.cluster import list_clusters, load_cluster
from hwsim.spec.device import Device
from hwsim.spec.errors import SpecError
from hwsim.spec.load import DEVICES_DIR, MAX_FILE_BYTES, load_device
from hwsim.spec.overrides import apply_overrides


def _data_url(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return "data:application/x-yaml;base64," + base64.b64encode(raw).decode()


def _numbers(spec: Device) -> list[tuple[str, float, str]]:
    return [(path, q.value, q.source) for path, q in spec.iter_sourced()]


@pytest.mark.parametrize("name", device_names())
def test_edited_device_yaml_reloads_to_the_same_spec(name: str, tmp_path: Path) -> None:
    dev = load_device(name)
    edited = whatif_device(name, [f"memory.{dev.main_memory.name}.bandwidth=x1.189"])
    path = tmp_path / whatif_filename(name)
    path.write_text(spec_yaml(edited), encoding="utf-8")
    again = load_device(str(path))
    # every number exactly, with its source (a rounded override text is written out in SI)
    assert _numbers(again) == _numbers(edited) and again.sources == edited.sources
    assert guard.run(app, ["show", str(path)]) == 0


@pytest.mark.parametrize("name", list_clusters())
def test_cluster_yaml_reloads_to_the_same_spec(name: str, tmp_path: Path) -> None:
    c = load_cluster(name)
    path = tmp_path / "c.yaml"
    path.write_text(spec_yaml(c), encoding="utf-8")
    assert load_cluster(str(path)) == c


def test_override_edits_are_set_syntax() -> None:
    assert parse_overrides("a=x2; b = 3 TB/s\n# note\nc=+20%  # why") == [
        "a=x2",
        "b = 3 TB/s",
        "c=+20%",
    ]
    text = set_override("memory.hbm.bandwidth=x2; compute.units=100", "memory.hbm.bandwidth", "x4")
    assert text == "compute.units=100; memory.hbm.bandwidth=x4"
    assert set_override(text, "compute.units", None) == "memory.hbm.bandwidth=x4"


def test_bad_edit_is_the_clis_message(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SpecError) as err:
        whatif_device("h100-sxm", ["memory.hbm.bandwidth=-3 TB/s"])
    step = ["--", "decode", "--model", "llama-3.1-8b"]
    code = guard.run(
        app, ["whatif", "--device", "h100-sxm", "--set", "memory.hbm.bandwidth=-3 TB/s", *step]
    )
    assert code == 2
    assert str(err.value) in " ".join(capsys.readouterr().err.split())


def test_upload_uses_the_clis_loader(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    up = Uploads(tmp_path / "up")
    good = (DEVICES_DIR / "h100-sxm.yaml").read_text()
    key = up.add("my-gpu.yaml", _data_url(good))
    assert up.owns(key) and load_device(key) == load_device("h100-sxm")
    bad = good.replace("value: 3.35 TB/s", "value: 3.35 TB/z", 1)
    assert bad != good
    with pytest.raises(SpecError) as err:
        up.add("typo.yaml", _data_url(bad))
    path = tmp_path / "typo.yaml"
    path.write_text(bad)
    assert guard.run(app, ["show", str(path)]) == 2
    cli = " ".join(capsys.readouterr().err.split())
    # the same message but for the folder the file sits in
    assert str(err.value).split("typo.yaml", 1)[1] in cli
    with pytest.raises(SpecError, match="not allowed"):
        up.add("evil.yaml", _data_url("x: !!python/object/apply:os.system ['true']\n"))
    with pytest.raises(SpecError, match="specs are limited"):
        up.add("huge.yaml", _data_url(b"#" * (MAX_FILE_BYTES + 10)))
    with pytest.raises(SpecError, match=r"\.yaml"):
        up.add("notes.txt", _data_url(good))


def test_jobs_cache_results_and_errors() -> None:
    jobs = Jobs(workers=1)
    calls: list[int] = []

    def work(_progress: object) -> int:
        calls.append(1)
        return 42

    assert jobs.get("k", work).value == 42
    assert jobs.get("k", work).value == 42 and len(calls) == 1  # cached

    def bad(_progress: object) -> int:
        raise SpecError("expected a positive integer, got 0", key="batch")

    state = jobs.get("bad", bad)
    assert state.done and state.error == "batch: expected a positive integer, got 0"
    gate = threading.Event()

    def slow(progress: object) -> int:
        progress("step 1 of 2")  # type: ignore[operator]
        gate.wait(10)
        return 7

    first = jobs.get("slow", slow, wait_s=0.05)
    assert not first.done and first.progress == "step 1 of 2"
    gate.set()
    assert jobs.get("slow", slow, wait_s=10).value == 7


def test_only_loopback_hosts_go_unwarned() -> None:
    assert network_warning("127.0.0.1") is None and network_warning("localhost") is None
    warning = network_warning("0.0.0.0")
    assert warning is not None and "anyone" in warning


def test_app_command_warns_before_opening_to_the_network(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import hwsim.app.server

    served: list[tuple[str, int]] = []
    monkeypatch.setattr(hwsim.app.server, "run", lambda host, port: served.append((host, port)))
    assert guard.run(app, ["app", "--port", "9123"]) == 0
    assert served == [("127.0.0.1", 9123)] and "warning" not in capsys.readouterr().err
    assert guard.run(app, ["app", "--host", "0.0.0.0"]) == 0
    assert served[-1] == ("0.0.0.0", 8050) and "anyone" in capsys.readouterr().err
    assert guard.run(app, ["app", "--port", "0"]) == 2


def test_app_command_imports_nothing_heavy() -> None:
    code = (
        "import json, sys; import hwsim.cli.app; print(json.dumps([m for m in "
        "('dash', 'flask', 'plotly', 'simpy', 'scipy.stats') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_overrides_of_the_page_equal_the_whatif_engine() -> None:
    ovs = ["memory.hbm.bandwidth=x2", "compute.peak.bf16=+20%"]
    assert whatif_device("h100-sxm", ovs) == apply_overrides(load_device("h100-sxm"), ovs)
