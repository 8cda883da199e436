"""Where data-set files come from: the search path, the digest table, and the
download into the cache.

Search order for the folder holding a data set's files (first complete match
wins; under each root both ``root/<subdir>/`` and ``root/`` are tried, and
each file may be ``name`` or ``name.gz``):

1. the explicit ``root=`` argument,
2. ``$PYCONVNET_DATA`` (several folders may be joined with ``os.pathsep``),
3. the cache, ``$XDG_CACHE_HOME/pyconvnet`` or ``~/.cache/pyconvnet``,
4. known system locations (``/usr/share/datasets``, where Debian's
   ``dataset-fashion-mnist`` package installs ``fashion-mnist/``),
5. a download from the canonical mirror into the cache (when ``download``).

Integrity is checked on the SHA-256 of the *decompressed* content, so any
faithful recompression of a canonical file passes and a corrupt or truncated
one fails.  Downloads are always verified, and are written to a temporary
file, verified, then renamed into place, so the cache never holds a bad file.
"""
from __future__ import annotations

import logging
import os
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ._io import PathLike, read_bytes, sha256_hex

log = logging.getLogger("pyconvnet.data")

ENV_VAR = "PYCONVNET_DATA"
_ROOT_LABEL = "root= argument"
SYSTEM_ROOTS: Tuple[Path, ...] = (Path("/usr/share/datasets"), Path("/usr/local/share/datasets"))


class DatasetNotFoundError(FileNotFoundError):
    """The data set's files were found nowhere and could not be downloaded.

    The message lists every folder searched and how to provide the files, in the
    words of the Python API (``root=``, ``download=True``); a front end with other
    words for them (the command line's ``--data-root``) calls :meth:`explain`.
    """

    def __init__(self, msg: str = "", parts: Optional[dict] = None):
        super().__init__(msg)
        self.parts = parts

    def explain(self, root_option: str = "root=DIR", root_label: str = "root= argument",
                download_option: Optional[str] = "allow download=True") -> str:
        """The message with these words for the explicit folder and the download switch
        (``download_option=None``: downloading is always tried there, so no advice)."""
        if self.parts is None:
            return str(self)
        return _not_found_message(**self.parts, root_option=root_option, root_label=root_label,
                                  download_option=download_option)


def _not_found_message(title, names, looked, why, subdir, source, dest, root_option, root_label,
                       download_option) -> str:
    folders = "\n".join(f"  - {d} ({root_label if label == _ROOT_LABEL else label}){note}"
                        for d, label, note in looked)
    fetch = (f"; or {download_option} on a machine with network access, which fetches them from {source} "
             f"into {dest}" if download_option else f"; with network access they are downloaded from {source} "
             f"into {dest} and verified")
    return (f"{title} data set not found. Looked for the files {names} in these folders, in order:\n{folders}\n"
            f"{why} To provide the files, put them (raw or gzip'd) in a folder DIR or DIR/{subdir} and either "
            f"pass {root_option} or set the environment variable {ENV_VAR}=DIR (several folders may be joined "
            f"with '{os.pathsep}'){fetch}.")


class ChecksumError(ValueError):
    """A file's decompressed content does not have the expected SHA-256."""


@dataclass(frozen=True)
class Spec:
    key: str                      # "mnist"
    title: str                    # "MNIST"
    subdirs: Tuple[str, ...]      # per-data-set folders under a root, first is the canonical one
    files: Tuple[str, ...]        # canonical (uncompressed) file names
    mirrors: Tuple[str, ...] = ()  # base URLs, file fetched as base + name + ".gz"
    archive_url: Optional[str] = None     # tar.gz holding archive_prefix + name
    archive_prefix: str = ""


_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_CIFAR_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",)

SPECS: Dict[str, Spec] = {
    "mnist": Spec(
        "mnist", "MNIST", ("mnist", "MNIST/raw"), _IDX_FILES,
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",),
    ),
    "fashion-mnist": Spec(
        "fashion-mnist", "Fashion-MNIST", ("fashion-mnist", "FashionMNIST/raw"), _IDX_FILES,
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    ),
    "cifar10": Spec(
        # canonical archive MD5 (of the .tar.gz itself): c32a1d4ab5d03f1284b67883e8d87530;
        # the members are checked individually against the table below instead.
        "cifar10", "CIFAR-10", ("cifar-10-batches-bin",), _CIFAR_FILES,
        archive_url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        archive_prefix="cifar-10-batches-bin/",
    ),
}

# SHA-256 of the DECOMPRESSED canonical files.  Computed from local faithful
# copies whose MD5 equals the publishers' canonical MD5 of the uncompressed
# files (MNIST: 6bbc9ace.., a25bea73.., 2646ac64.., 27ae3e4e..; Fashion-MNIST:
# f4a8712d.., 9018921c.., 8181f547.., 15d48437..; CIFAR-10 bin: 5dd7e06a..,
# 5ea93a67.., 942cd6a4.., ae636b3b.., 53f37980.., test 803d5f7f..).
SHA256: Dict[str, Dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    "cifar10": {
        "data_batch_1.bin": "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5",
        "data_batch_2.bin": "a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed",
        "data_batch_3.bin": "bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67",
        "data_batch_4.bin": "014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48",
        "data_batch_5.bin": "755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add",
        "test_batch.bin": "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b",
    },
}

_MAX_MEMBER_BYTES = 64 << 20  # sanity bound on an archive member we read


def cache_dir() -> Path:
    """The download cache: ``$XDG_CACHE_HOME/pyconvnet`` if that variable holds an
    absolute path, else ``~/.cache/pyconvnet``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "pyconvnet"


def search_roots(root: Optional[PathLike] = None) -> List[Tuple[Path, str]]:
    """The roots searched, in order, each with a label saying where it came from."""
    roots: List[Tuple[Path, str]] = []
    if root is not None:
        roots.append((Path(os.path.expanduser(os.fspath(root))), _ROOT_LABEL))
    for part in os.environ.get(ENV_VAR, "").split(os.pathsep):
        if part.strip():
            roots.append((Path(os.path.expanduser(part.strip())), f"${ENV_VAR}"))
    roots.append((cache_dir(), "cache"))
    for p in SYSTEM_ROOTS:
        roots.append((p, "system location"))
    return roots


def _candidate_dirs(spec: Spec, root: Optional[PathLike]) -> List[Tuple[Path, str]]:
    out: List[Tuple[Path, str]] = []
    seen = set()
    for r, label in search_roots(root):
        for d in [r / s for s in spec.subdirs] + [r]:
            key = os.path.abspath(d)
            if key not in seen:
                seen.add(key)
                out.append((d, label))
    return out


def _find_in(d: Path, names: Sequence[str]) -> Dict[str, Path]:
    found: Dict[str, Path] = {}
    for name in names:
        for cand in (d / name, d / (name + ".gz")):
            try:
                if cand.is_file():
                    found[name] = cand
                    break
            except OSError:  # unreadable folder: treat as absent
                pass
    return found


def locate(spec: Spec, root: Optional[PathLike] = None, download: bool = True) -> Dict[str, Path]:
    """Return ``{canonical name: path}`` for every file of ``spec``, all from the
    first folder on the search path that holds the complete set, downloading
    into the cache if none does.  Raises :class:`DatasetNotFoundError`."""
    looked: List[Tuple[Path, str, str]] = []
    for d, label in _candidate_dirs(spec, root):
        found = _find_in(d, spec.files)
        if len(found) == len(spec.files):
            log.debug("%s: using %s (%s)", spec.title, d, label)
            return found
        note = ""
        if found:
            missing = [n for n in spec.files if n not in found]
            note = f" [incomplete: has {len(found)} of {len(spec.files)} files, missing {', '.join(missing)}]"
        looked.append((d, label, note))

    dest = cache_dir() / spec.subdirs[0]
    if download:
        try:
            return download_files(spec, dest)
        except ChecksumError:
            raise
        except Exception as exc:  # network/OS failure: fall through to the explanation
            why = f"Downloading into {dest} failed: {type(exc).__name__}: {exc}."
            cause: Optional[BaseException] = exc
    else:
        why = "Download was not attempted (download=False)."
        cause = None
    parts = dict(title=spec.title, names=", ".join(f"{n}[.gz]" for n in spec.files), looked=looked, why=why,
                 subdir=spec.subdirs[0], source=spec.archive_url or spec.mirrors[0], dest=dest)
    err = DatasetNotFoundError("", parts)
    err.args = (err.explain(),)
    raise err from cause


def load_bytes(spec: Spec, name: str, path: Path, verify: bool = True) -> bytes:
    """Decompressed content of ``path``, checked against the digest table when ``verify``."""
    data = read_bytes(path)
    if verify:
        _check_digest(spec, name, data, str(path), hint=" Delete or replace the file, or pass verify=False "
                      "to load it unchecked.")
    return data


def _check_digest(spec: Spec, name: str, data: bytes, where: str, hint: str = "") -> None:
    expected = SHA256[spec.key][name]
    actual = sha256_hex(data)
    if actual != expected:
        raise ChecksumError(
            f"{where}: SHA-256 of the decompressed content is {actual}, expected {expected} for "
            f"{spec.title} {name} ({len(data)} bytes): the file is corrupt, truncated or not the canonical "
            f"one.{hint}"
        )


# --------------------------------------------------------------------------- download

def _fetch(url: str, dest: str) -> None:
    """Download ``url`` to the file ``dest`` (tests replace this hook)."""
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"refusing to fetch non-HTTP URL {url!r}")
    req = urllib.request.Request(url, headers={"User-Agent": "pyconvnet"})
    with urllib.request.urlopen(req, timeout=60) as resp, open(dest, "wb") as out:  # noqa: S310
        while True:
            chunk = resp.read(1 << 20)
            if not chunk:
                break
            out.write(chunk)


def _tmp_in(d: Path, name: str) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=d)
    os.close(fd)
    return tmp


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def download_files(spec: Spec, dest: Path) -> Dict[str, Path]:
    """Fetch every file of ``spec`` into ``dest``, verify all, then rename all into
    place; on any failure nothing new is left in ``dest``."""
    created = []
    p = dest
    while not p.exists():
        created.append(p)
        p = p.parent
    dest.mkdir(parents=True, exist_ok=True)
    temps: Dict[str, Tuple[str, Path]] = {}
    try:
        if spec.archive_url:
            _download_archive(spec, dest, temps)
        else:
            _download_each(spec, dest, temps)
        result = {}
        for name, (tmp, final) in temps.items():
            os.replace(tmp, final)
            result[name] = final
        return result
    except BaseException:
        for tmp, _ in temps.values():
            _remove(tmp)
        for d in created:  # innermost first
            try:
                d.rmdir()
            except OSError:
                break
        raise


def _download_each(spec: Spec, dest: Path, temps: Dict[str, Tuple[str, Path]]) -> None:
    for name in spec.files:
        errors = []
        for base in spec.mirrors:
            url = base + name + ".gz"
            tmp = _tmp_in(dest, name)
            temps[name] = (tmp, dest / (name + ".gz"))
            log.info("downloading %s", url)
            try:
                _fetch(url, tmp)
            except Exception as exc:
                errors.append(f"{url}: {exc}")
                _remove(tmp)
                del temps[name]
                continue
            try:
                data = read_bytes(tmp)
            except ValueError as exc:
                raise ChecksumError(f"{url}: downloaded file is corrupt: {exc}") from None
            _check_digest(spec, name, data, url, hint=" Nothing was saved.")
            break
        else:
            raise OSError(f"could not download {name}: " + "; ".join(errors))


def _download_archive(spec: Spec, dest: Path, temps: Dict[str, Tuple[str, Path]]) -> None:
    url = spec.archive_url
    assert url is not None
    archive = _tmp_in(dest, "archive")
    try:
        log.info("downloading %s", url)
        _fetch(url, archive)
        try:
            tf = tarfile.open(archive, mode="r:*")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ChecksumError(f"{url}: downloaded archive is not a readable tar file: {exc}") from None
        with tf:
            for name in spec.files:
                member_name = spec.archive_prefix + name
                try:
                    member = tf.getmember(member_name)
                except KeyError:
                    raise ChecksumError(f"{url}: archive has no member {member_name!r}") from None
                # Only regular files, read through extractfile() and written to a
                # path we build ourselves: no links, no archive-controlled paths.
                if not member.isfile() or member.size > _MAX_MEMBER_BYTES:
                    raise ChecksumError(f"{url}: archive member {member_name!r} is not a regular file of sane size")
                try:
                    fobj = tf.extractfile(member)
                    assert fobj is not None
                    data = fobj.read()
                except (tarfile.TarError, OSError, EOFError) as exc:
                    raise ChecksumError(f"{url}: archive is corrupt reading {member_name!r}: {exc}") from None
                _check_digest(spec, name, data, f"{url} member {member_name}", hint=" Nothing was saved.")
                tmp = _tmp_in(dest, name)
                temps[name] = (tmp, dest / name)
                with open(tmp, "wb") as f:
                    f.write(data)
    finally:
        _remove(archive)
