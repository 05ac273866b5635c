"""GPU detection and the torch build choice, from the outputs the real tools print (fed in here:
this machine has no GPU), and the wire format's own checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.core.errors import StudioError
from studio.runtime import protocol
from studio.runtime.manager import GpuInfo, choose_torch, detect_gpu

SMI_HEADER = """+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 570.86.15              Driver Version: 570.86.15      CUDA Version: 12.8     |
|-----------------------------------------+------------------------+----------------------+"""

PROC_VERSION = ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 UTC 2024\n"
                "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")

ROCMINFO = """*******
Agent 1
  Name:                    AMD Ryzen 9 7950X
  Marketing Name:          AMD Ryzen 9 7950X 16-Core Processor
  Device Type:             CPU
*******
Agent 2
  Name:                    gfx1100
  Marketing Name:          Radeon RX 7900 XTX
  Device Type:             GPU
"""


def fake_run(outputs: dict[str, str]):
    def run(cmd: list[str]) -> str | None:
        key = " ".join(cmd)
        for k, v in outputs.items():
            if key == k:
                return v
        return None
    return run


def test_nvidia_smi(tmp_path: Path) -> None:
    gpu = detect_gpu(fake_run({"nvidia-smi --query-gpu=name,driver_version --format=csv,noheader":
                               "NVIDIA GeForce RTX 4090, 570.86.15\n", "nvidia-smi": SMI_HEADER}),
                     proc_version=tmp_path / "none")
    assert gpu == GpuInfo("nvidia", "NVIDIA GeForce RTX 4090", "570.86.15", "12.8", "nvidia-smi")
    build = choose_torch(gpu)
    assert build.tag == "cu128" and build.index_url == "https://download.pytorch.org/whl/cu128"
    assert "RTX 4090" in gpu.describe() and "570.86.15" in gpu.describe()


def test_proc_driver_version_without_nvidia_smi(tmp_path: Path) -> None:
    proc = tmp_path / "version"
    proc.write_text(PROC_VERSION)
    gpu = detect_gpu(fake_run({}), proc_version=proc)
    assert (gpu.vendor, gpu.driver) == ("nvidia", "535.183.01")
    build = choose_torch(gpu)  # too old for the CUDA lines current torch ships
    assert build.tag == "cpu" and "update the driver" in build.reason


@pytest.mark.parametrize("driver,tag", [("580.95.05", "cu130"), ("575.51", "cu128"), ("560.35.03", "cu126"),
                                        ("566.36", "cu126"), ("570.26", "cu128"), ("560.27", "cpu")])
def test_driver_table(driver: str, tag: str) -> None:
    assert choose_torch(GpuInfo("nvidia", "x", driver)).tag == tag


def test_rocm_and_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.platform", "linux")
    gpu = detect_gpu(fake_run({"rocminfo": ROCMINFO}), proc_version=tmp_path / "none")
    assert (gpu.vendor, gpu.name) == ("amd", "Radeon RX 7900 XTX")
    assert choose_torch(gpu).tag.startswith("rocm")
    none = detect_gpu(fake_run({}), proc_version=tmp_path / "none")
    assert none.vendor == "none" and choose_torch(none).tag == "cpu"


def test_this_machine_has_no_gpu() -> None:
    # The real tools, run for real: none of them finds a GPU here.
    assert detect_gpu().vendor == "none"


def test_override() -> None:
    none = GpuInfo("none")
    assert choose_torch(none, "cu126").index_url.endswith("/cu126")
    assert choose_torch(none, "default").index_url is None
    with pytest.raises(StudioError, match="unknown torch build"):
        choose_torch(none, "cuda12")


def test_protocol_lines() -> None:
    line = protocol.encode({"op": "generate", "prompt": "café ☕\nsecond line"})
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert protocol.decode(line, "op")["prompt"] == "café ☕\nsecond line"
    for bad, why in [(b"not json\n", "not JSON"), (b"[1, 2]\n", "not a JSON object"),
                     (b'{"op": 5}\n', "missing string field"), (b"\xff\xfe\n", "not UTF-8"), (b"\n", "empty")]:
        with pytest.raises(protocol.ProtocolError, match=why):
            protocol.decode(bad, "op")


def test_request_round_trip(tmp_path: Path) -> None:
    from studio.engine.base import GenerationRequest

    req = GenerationRequest(start_image=tmp_path / "a.png", prompt="p", width=32, height=48, num_frames=9, fps=16,
                            seed=2 ** 40, last_image=tmp_path / "b.png", loras=((tmp_path / "l.safetensors", 0.5),),
                            face_landmarks=((1.0, 2.5),) * 68, extra={"memory": "none", "face_motion": False})
    assert protocol.request_from_json(protocol.decode(protocol.encode(protocol.request_to_json(req)), "prompt")) == req
    with pytest.raises(protocol.ProtocolError, match="invalid generation request"):
        protocol.request_from_json({"prompt": "no image"})


def test_base_python_for_the_venv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import sys

    from studio.runtime.manager import base_python

    monkeypatch.delenv("CONTINUITY_STUDIO_PYTHON", raising=False)
    assert base_python() == sys.executable  # from source / pip install: this Python
    # A frozen bundle's executable is the app itself: a python3 >= 3.10 from PATH is used.
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(sys.executable, bin_dir / "python3")
    monkeypatch.setenv("PATH", str(bin_dir))
    assert base_python() == str(bin_dir / "python3")
    (bin_dir / "python3").unlink()
    (bin_dir / "python3").write_text("#!/bin/sh\necho False\n")  # an old Python 3
    (bin_dir / "python3").chmod(0o755)
    with pytest.raises(StudioError, match="needs Python 3.10 or newer .*python3-venv"):
        base_python()
    monkeypatch.setenv("CONTINUITY_STUDIO_PYTHON", str(tmp_path / "nope"))
    with pytest.raises(StudioError, match="CONTINUITY_STUDIO_PYTHON does not name a file"):
        base_python()
