"""BGP password files: what is read, and every way a secret file is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from calico.bgp.secrets import SecretRef, SecretUnavailable, read_secret, read_secrets

REF = SecretRef("bgp", "border")


def put(directory: Path, data: bytes, mode: int = 0o600, ref: SecretRef = REF) -> Path:
    path = directory / ref.name / ref.key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def refusal(directory: Path) -> str:
    with pytest.raises(SecretUnavailable) as info:
        read_secret(REF, directory)
    return str(info.value)


def test_the_file_content_less_one_trailing_newline(tmp_path: Path) -> None:
    put(tmp_path, b"s3cr\\et x'#\n")
    assert read_secret(REF, tmp_path) == "s3cr\\et x'#"
    put(tmp_path, b"pw\n\n", mode=0o640)  # group access is allowed; one newline is stripped
    with pytest.raises(SecretUnavailable, match="line break"):
        read_secret(REF, tmp_path)


def test_a_symlink_to_a_private_file_is_followed(tmp_path: Path) -> None:
    """A mounted Kubernetes Secret volume is symlinks to the data files."""
    target = put(tmp_path, b"pw", ref=SecretRef("data", "pw"))
    (tmp_path / "bgp").mkdir()
    (tmp_path / "bgp" / "border").symlink_to(target)
    assert read_secret(REF, tmp_path) == "pw"


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    assert refusal(tmp_path) == f"cannot open {tmp_path}/bgp/border: No such file or directory"


@pytest.mark.parametrize("mode", [0o604, 0o602, 0o601, 0o644, 0o666])
def test_others_may_not_access_the_file(tmp_path: Path, mode: int) -> None:
    path = put(tmp_path, b"pw", mode)
    assert refusal(tmp_path) == (
        f"{path} is accessible to others (mode {mode:04o}); chmod o-rwx it"
    )


def test_unreadable_file(tmp_path: Path) -> None:
    path = put(tmp_path, b"pw")
    if os.geteuid() == 0:  # root reads anything: make it unopenable another way
        path.unlink()
        path.mkdir(mode=0o700)
        assert refusal(tmp_path) == f"{path} is not a regular file"
    else:
        os.chmod(path, 0o000)
        assert "Permission denied" in refusal(tmp_path)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "is empty"),
        (b"\n", "is empty"),
        (b'a"b', "double quote or a line break, which BIRD cannot quote"),
        (b"a\rb", "double quote or a line break"),
        (b"\xff\xfe", "is not UTF-8 text"),
        (b"x" * 81, "holds more than 80 bytes (TCP MD5 key limit)"),
    ],
)
def test_unusable_content(tmp_path: Path, data: bytes, why: str) -> None:
    put(tmp_path, data)
    message = refusal(tmp_path)
    assert why in message
    assert str(tmp_path / "bgp" / "border") in message


def test_the_longest_key(tmp_path: Path) -> None:
    put(tmp_path, b"x" * 80 + b"\n")
    assert read_secret(REF, tmp_path) == "x" * 80


def test_read_secrets_splits_found_and_unusable(tmp_path: Path) -> None:
    put(tmp_path, b"pw")
    other = SecretRef("bgp", "other")
    found, unusable = read_secrets([REF, other, REF], tmp_path)
    assert found == {REF: "pw"}
    assert set(unusable) == {other}
    assert "pw" not in unusable[other]
