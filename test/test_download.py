"""scenedino-download, offline: from a mirror laid out like the hub, and through huggingface_hub's own cache."""
from __future__ import annotations

import hashlib

import pytest

from scenedino_core.cli.download import main
from scenedino_core.download import HUB_REPO, RELEASES, download_checkpoint, find_downloaded_checkpoint


def _fill(folder, name):
    sub = folder / RELEASES[name]
    sub.mkdir(parents=True)
    (sub / "checkpoint.pt").write_bytes(b"weights of " + name.encode())
    (sub / "training_config.yaml").write_text("model: {}\n")


def test_mirror_download_and_report(tmp_path, capsys):
    _fill(tmp_path / "mirror", "ssc-kitti-360-dinov2")
    assert main(["ssc-kitti-360-dinov2", "--mirror", str(tmp_path / "mirror"), "--dir", str(tmp_path / "ck")]) == 0
    out = capsys.readouterr().out
    digest = hashlib.sha256(b"weights of ssc-kitti-360-dinov2").hexdigest()
    assert digest in out and "checkpoint.pt" in out
    assert find_downloaded_checkpoint(tmp_path / "ck") == tmp_path / "ck" / "ssc-kitti-360-dinov2" / "checkpoint.pt"


def test_hub_cache_is_used_offline(tmp_path):
    """The real huggingface_hub code path, served from a cache laid out like the hub's (no network)."""
    pytest.importorskip("huggingface_hub")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / ("models--" + HUB_REPO.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    _fill(repo / "snapshots" / commit, "ssc-kitti-360-dino")
    files = download_checkpoint("ssc-kitti-360-dino", tmp_path / "ck", cache_dir=tmp_path / "hf", offline=True)
    assert [f.path.name for f in files] == ["checkpoint.pt", "training_config.yaml"]
    assert files[0].path.read_bytes() == b"weights of ssc-kitti-360-dino"


def test_errors(tmp_path, capsys):
    assert main(["ssc-kitti-360-dino", "--mirror", str(tmp_path), "--dir", str(tmp_path / "ck")]) == 2
    assert "seg-best-dino/checkpoint.pt" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown checkpoint"):
        download_checkpoint("ssc-nope", tmp_path)
    assert find_downloaded_checkpoint(tmp_path / "empty") is None
