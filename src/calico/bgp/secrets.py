"""BGP passwords from files on the node: Calico's secretKeyRef without Kubernetes.

Calico's BGPPeer `password` and BGPConfiguration `nodeMeshPassword` name a Kubernetes Secret
(`secretKeyRef: {name, key}`). calico-py keeps that shape, so upstream manifests apply, and
reads the value from the file `<secrets dir>/<name>/<key>` on each node (default
/etc/calico/secrets, `CALICO_SECRETS_DIR`), the layout of a mounted Secret volume. One
mechanism only: environment variables would leak into every child process (BIRD, Felix) and
cannot spell every secret name.

The file must be a regular file (symlinks are followed, as in a mounted Secret) that others
cannot access (mode & 0o007 == 0); its content is the password, less one trailing newline.
BIRD strings have no escapes: a password with a double quote or a line break cannot be
written, so it is unusable like a missing file. Whoever renders a peer whose secret is
unusable leaves that peer out (fail closed): no session rather than one without a password.
Messages name the file, never the content.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from calico.model.network import BGPPassword

DEFAULT_SECRETS_DIR = Path("/etc/calico/secrets")
_MAX_BYTES = 80  # Linux's TCP_MD5SIG_MAXKEYLEN: the longest TCP MD5 key


@dataclass(frozen=True, slots=True, order=True)
class SecretRef:
    """A validated secretKeyRef (calico.model.network.SecretKeyRef checks both parts)."""

    name: str
    key: str

    def __str__(self) -> str:
        return f"{self.name}/{self.key}"


def password_ref(password: BGPPassword | None) -> SecretRef | None:
    """The reference of a BGPPeer `password` or BGPConfiguration `nodeMeshPassword`."""
    ref = password.secretKeyRef if password is not None else None
    return SecretRef(ref.name, ref.key) if ref is not None else None


class SecretUnavailable(Exception):
    """The secret cannot be used; the message names the file and why (never the value)."""


def secret_path(ref: SecretRef, directory: Path) -> Path:
    return directory / ref.name / ref.key


def read_secret(ref: SecretRef, directory: Path) -> str:
    """The password for `ref`, or SecretUnavailable."""
    path = secret_path(ref, directory)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        raise SecretUnavailable(f"cannot open {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SecretUnavailable(f"{path} is not a regular file")
        if st.st_mode & 0o007:
            raise SecretUnavailable(
                f"{path} is accessible to others (mode {stat.S_IMODE(st.st_mode):04o});"
                " chmod o-rwx it"
            )
        data = os.read(fd, _MAX_BYTES + 2).removesuffix(b"\n")  # a regular file: one read
    finally:
        os.close(fd)
    if len(data) > _MAX_BYTES:
        raise SecretUnavailable(f"{path} holds more than {_MAX_BYTES} bytes (TCP MD5 key limit)")
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise SecretUnavailable(f"{path} is not UTF-8 text") from None
    if not text:
        raise SecretUnavailable(f"{path} is empty")
    if '"' in text or "\n" in text or "\r" in text:
        raise SecretUnavailable(
            f"{path} holds a double quote or a line break, which BIRD cannot quote"
        )
    return text


def read_secrets(
    refs: Iterable[SecretRef], directory: Path
) -> tuple[dict[SecretRef, str], Mapping[SecretRef, str]]:
    """(passwords, why each unavailable one is) for `refs`."""
    found: dict[SecretRef, str] = {}
    missing: dict[SecretRef, str] = {}
    for ref in set(refs):
        try:
            found[ref] = read_secret(ref, directory)
        except SecretUnavailable as exc:
            missing[ref] = str(exc)
    return found, missing
