"""Password hashes of htpasswd files, made by the real ``htpasswd`` (apache2-utils)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from colonnade.providers.users import hashes, syscrypt
from colonnade.providers.users.hashes import UnusableHashError, method, verify

HTPASSWD = shutil.which("htpasswd")
needs_htpasswd = pytest.mark.skipif(
    HTPASSWD is None, reason="htpasswd (apache2-utils) is not installed: make sysdeps"
)

#: Every format this htpasswd writes (its help: -B, -m, -2, -5, -d, -s, -p) and the
#: method we read it as. -d (DES crypt) is accepted where crypt(3) has DES, as
#: Apache does on Linux; it keeps 8 characters of the password only.
FORMATS = [
    ("-B", "bcrypt"),
    ("-m", "apr1"),
    ("-2", "crypt"),
    ("-5", "crypt"),
    ("-d", "des"),
    ("-s", "sha1"),
    ("-p", "plain"),
]


def htpasswd_hash(flag: str, password: str) -> bytes:
    """The stored value ``htpasswd -nb FLAG`` writes for ``password``."""
    assert HTPASSWD is not None
    args = [HTPASSWD, "-nb", flag]
    if flag == "-B":
        args += ["-C", "4"]  # the cheapest cost: the format is the point, not the time
    out = subprocess.run(
        [*args, "someone", password], capture_output=True, check=True
    ).stdout.strip()
    user, _, stored = out.partition(b":")
    assert user == b"someone"
    return stored


@needs_htpasswd
@pytest.mark.parametrize(("flag", "kind"), FORMATS)
def test_every_htpasswd_format_checks_the_right_password_only(flag: str, kind: str) -> None:
    password = "Zebra-horse 7"
    stored = htpasswd_hash(flag, password)
    assert method(stored) == kind
    assert verify(stored, password.encode())
    assert not verify(stored, b"zebra-horse 7")
    assert not verify(stored, b"")


@needs_htpasswd
@pytest.mark.parametrize("flag", ["-B", "-m", "-2", "-5", "-s", "-p"])
def test_utf8_passwords(flag: str) -> None:
    password = "pässwörd-Ω"
    stored = htpasswd_hash(flag, password)
    assert verify(stored, password.encode("utf-8"))
    assert not verify(stored, password.encode("latin-1", "replace"))


@needs_htpasswd
def test_des_keeps_eight_characters_as_crypt_does() -> None:
    stored = htpasswd_hash("-d", "abcdefgh-and-more")
    assert verify(stored, b"abcdefgh")
    assert verify(stored, b"abcdefgh-other")
    assert not verify(stored, b"abcdefgX")


@needs_htpasswd
def test_bcrypt_reads_72_bytes_like_apache() -> None:
    long = "x" * 72
    stored = htpasswd_hash("-B", long)
    # bcrypt 5 refuses longer passwords; Apache (and we) compare the first 72 bytes.
    assert verify(stored, (long + "tail").encode())
    assert not verify(stored, b"x" * 71)


@needs_htpasswd
def test_sha256_with_rounds() -> None:
    assert HTPASSWD is not None
    out = subprocess.run(
        [HTPASSWD, "-nb2", "-r", "1000", "u", "pw"], capture_output=True, check=True
    ).stdout.strip()
    stored = out.partition(b":")[2]
    assert stored.startswith(b"$5$rounds=1000$")
    assert verify(stored, b"pw") and not verify(stored, b"pW")


def test_apr1_known_vector() -> None:
    # Apache's documentation example; both also what `openssl passwd -apr1 -salt`
    # prints, an implementation independent of ours and of htpasswd's.
    assert hashes.apr1(b"myPassword", b"r31.....") == b"$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/"
    assert hashes.apr1(b"", b"abcdefgh") == b"$apr1$abcdefgh$L.PT565ESX4Tp2bqNs7Ie."


def test_a_hash_is_never_its_own_password() -> None:
    # A value that looks like a hash is never read as plain text: stolen file
    # contents must not work as passwords.
    for stored in (
        b"$apr1$salt$abcdefghijklmnopqrstuv",
        b"{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=",
        b"WEZl.PAimhez6",
        b"$6$salt$" + b"a" * 86,
    ):
        assert not verify(stored, stored)


def test_plain_text_is_exact() -> None:
    assert verify(b"secret", b"secret")
    assert not verify(b"secret", b"Secret")
    assert not verify(b"secret", b"secret ")
    assert verify(b"{PLAIN}secret", b"secret")  # nginx's spelling


def test_ssha_of_nginx() -> None:
    import base64
    import hashlib

    salt = b"0123"
    stored = b"{SSHA}" + base64.b64encode(hashlib.sha1(b"pw" + salt).digest() + salt)
    assert verify(stored, b"pw") and not verify(stored, b"pW")


@pytest.mark.parametrize(
    "stored",
    [
        b"",
        b"{MD5}abc",
        b"$2y$05$short",
        b"$apr1$nosaltend",
        b"{SSHA}!!!",
        b"$zz$salt$hash",
    ],
)
def test_unusable_values_are_errors_not_matches(stored: bytes) -> None:
    with pytest.raises(UnusableHashError):
        verify(stored, b"anything")


def test_crypt_refuses_nul() -> None:
    assert syscrypt.available()
    assert syscrypt.crypt(b"a\x00b", b"$6$salt$") is None


@needs_htpasswd
@pytest.mark.parametrize(("flag", "kind"), FORMATS)
def test_a_nul_in_the_password_never_matches_and_never_raises(flag: str, kind: str) -> None:
    # The forms login page passes a posted password as it came (%00 included): a
    # NUL is a wrong password for every format, not an unusable hash (a 500).
    stored = htpasswd_hash(flag, "Zebra-horse 7")
    assert not verify(stored, b"Zebra-horse 7\x00")
    assert not verify(stored, b"Zebra-horse 7\x00junk")


@needs_htpasswd
@pytest.mark.parametrize("flag", ["-2", "-5", "-d"])
def test_a_password_longer_than_crypt_takes_is_wrong_not_unusable(flag: str) -> None:
    # libxcrypt refuses passphrases of 512 bytes and more; auth.basic lets 512
    # through and the forms login page 8 KiB: a wrong password, not a 500.
    stored = htpasswd_hash(flag, "Zebra-horse 7")
    assert not verify(stored, b"Zebra-horse 7" + b"x" * 499)  # 512 bytes
    assert not verify(stored, b"x" * 8000)
