"""The one file-reload mechanism: policy files and certificate pairs swapped the way Kubernetes volumes are."""

from __future__ import annotations

import os
from pathlib import Path

from webhook.tls import certs
from webhook.tls.reloader import Reloading
from webhook.tls.context import CertReloader


def swap_data(folder: Path, files: dict[str, bytes], stamp: str) -> None:
    """Update `folder` like the kubelet updates a ConfigMap or Secret volume: new folder, swap ..data."""
    target = folder / f"..{stamp}"
    target.mkdir(parents=True)
    for name, data in files.items():
        (target / name).write_bytes(data)
    link = folder / "..data_tmp"
    os.symlink(target.name, link)
    os.replace(link, folder / "..data")
    for name in files:
        if not (folder / name).is_symlink():
            os.symlink(f"..data/{name}", folder / name)


def number(path: str) -> int:
    return int(Path(path).read_text())


def test_a_swapped_file_is_reloaded_once_and_an_unchanged_one_is_not(tmp_path: Path) -> None:
    swap_data(tmp_path, {"n": b"1"}, "1")
    watched = Reloading(str(tmp_path / "n"), number, "number")
    assert (watched.value, watched.check()) == (1, False)
    swap_data(tmp_path, {"n": b"2"}, "2")
    assert watched.check() and watched.value == 2
    assert not watched.check() and (watched.reloads, watched.failures) == (1, 0)


def test_a_bad_version_keeps_the_last_good_value_and_is_counted_once_until_the_file_changes(tmp_path: Path) -> None:
    swap_data(tmp_path, {"n": b"1"}, "1")
    watched = Reloading(str(tmp_path / "n"), number, "number")
    swap_data(tmp_path, {"n": b"not a number"}, "2")
    assert not watched.check() and not watched.check()
    assert (watched.value, watched.failures) == (1, 1)
    swap_data(tmp_path, {"n": b"3"}, "3")
    assert watched.check() and (watched.value, watched.reloads, watched.failures) == (3, 1, 1)


def test_a_missing_file_keeps_the_value_without_counting_a_failure(tmp_path: Path) -> None:
    (tmp_path / "n").write_text("1")
    watched = Reloading(str(tmp_path / "n"), number, "number")
    (tmp_path / "n").unlink()
    assert not watched.check() and (watched.value, watched.failures) == (1, 0)


def test_a_certificate_pair_reloads_through_the_same_mechanism_and_a_mismatched_pair_is_refused(tmp_path: Path) -> None:
    first, second = certs.generate(["localhost"], days=365), certs.generate(["localhost"], days=30)
    swap_data(tmp_path, {"tls.crt": first.serving.cert_pem, "tls.key": first.serving.key_pem}, "1")
    reloader = CertReloader(tmp_path)
    assert reloader.not_after == certs.not_after(first.serving.cert_pem).timestamp()
    swap_data(tmp_path, {"tls.crt": second.serving.cert_pem, "tls.key": first.serving.key_pem}, "2")
    assert not reloader.check() and reloader.failures == 1
    swap_data(tmp_path, {"tls.crt": second.serving.cert_pem, "tls.key": second.serving.key_pem}, "3")
    assert reloader.check() and reloader.reloads == 1
    assert reloader.not_after == certs.not_after(second.serving.cert_pem).timestamp()
