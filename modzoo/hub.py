"""Pretrained weights: resolve a name to a local file whose sha256 has been checked.

``resolve(source)`` takes

======================  =============================================================
``path/to/file``        a local file
``https://HOST/PATH``   downloaded once into ``$MODZOO_HOME/checkpoints/HOST/PATH``
                        (``MODZOO_HOME`` defaults to ``~/.cache/modzoo``)
``hf://ORG/REPO/FILE``  a file of a Hugging Face repo, fetched by huggingface_hub into its
                        own cache (``HF_HUB_CACHE``, shared with timm)
``timm:ARCH.TAG``       the weights of a timm pretrained cfg: ``model.safetensors`` of its
                        Hugging Face repo, else its ``url``
``modzoo://NAME``       a zoo model (``configs/*/metafile.yml``): its ``Weights`` checked
``NAME``                against its ``Sha256``; without published weights, the newest
                        checkpoint of ``work_dirs/NAME/`` (a run of its Reproduce command)
======================  =============================================================

The expected sha256 is the caller's (``sha256=``), else the metafile's, else the ``-<hex>``
suffix of the file name (torch.hub's convention; ``publish_model.py`` names files
``{name}_{yyyymmdd}-{sha256[:8]}``). Any prefix of 8 or more hex digits is accepted.

A download goes to ``<file>.part``, resumes that file when it exists (HTTP ``Range``), shows a
progress bar and is renamed into place only after its hash matches; on a mismatch the part file
is deleted and :class:`HashMismatchError` names the URL and both hashes. With
``HF_HUB_OFFLINE=1`` nothing is fetched: a file that is not cached raises
:class:`WeightsNotFoundError` saying where to put it. Loading the file is
``modzoo.weights``' job (weights only).
"""
import glob
import hashlib
import logging
import os
import os.path as osp
import re
import urllib.error
import urllib.request
from typing import Optional
from urllib.parse import unquote, urlparse

from filelock import FileLock
from mmengine.logging import print_log
from tqdm import tqdm

HASH_SUFFIX = re.compile(r'-([0-9a-f]{8,64})\.[^./]+$')
SCHEMES = ('http://', 'https://', 'hf://', 'timm:', 'modzoo://')
URL_SCHEME = re.compile(r'^([A-Za-z][A-Za-z0-9+.-]*)://')
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 30


class WeightsNotFoundError(FileNotFoundError):
    """The weights are neither on disk nor fetchable now (missing file, offline)."""


class DownloadError(OSError):
    """A server answered with an error, or could not be reached."""


class HashMismatchError(ValueError):
    """A file's sha256 is not the expected one."""


class UnsupportedSchemeError(ValueError):
    """A source names a URL scheme the hub does not fetch (``ftp://``, ``s3://``, ``htps://``)."""


def modzoo_home() -> str:
    """``$MODZOO_HOME``, by default ``~/.cache/modzoo``."""
    return osp.expanduser(os.environ.get('MODZOO_HOME', osp.join('~', '.cache', 'modzoo')))


def offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set to a true value (as huggingface_hub reads it)."""
    return os.environ.get('HF_HUB_OFFLINE', '').upper() in ('1', 'ON', 'YES', 'TRUE')


def resolve(source: str, sha256: Optional[str] = None, progress: bool = True) -> str:
    """The local path of ``source`` (see the module docstring), fetched if needed and checked
    against ``sha256`` (a hex prefix of at least 8 digits; by default the metafile's or the file
    name's, when there is one).

    Raises:
        WeightsNotFoundError: a local file is missing, or a remote one is not cached offline.
        DownloadError: the server answered with an error or could not be reached.
        HashMismatchError: the file's sha256 differs from the expected one.
        KeyError: an unknown zoo name or timm model (the message lists the closest names).
        UnsupportedSchemeError: ``source`` is a URL of another scheme (``ftp://``, ``s3://``).
    """
    check_scheme(source)
    if source.startswith(('http://', 'https://')):
        return download(source, sha256, progress)
    if source.startswith('hf://'):
        repo_id, filename = _split_hf(source)
        return _hf_file(repo_id, filename, sha256=sha256, progress=progress)
    if source.startswith('timm:'):
        return _timm_weights(source[len('timm:'):], sha256, progress)
    if source.startswith('modzoo://'):
        return _zoo_weights(source[len('modzoo://'):], sha256, progress)
    path = osp.expanduser(source)
    if osp.isfile(path):
        check_sha256(path, _expected(sha256, path), source)
        return path
    if os.sep in source or osp.splitext(source)[1]:
        raise WeightsNotFoundError(f'checkpoint file {source!r} does not exist')
    return _zoo_weights(source, sha256, progress)


def check_scheme(source: str) -> None:
    """Raise :class:`UnsupportedSchemeError` when ``source`` looks like a URL (``NAME://``) of a
    scheme the hub does not fetch; the message lists those it does."""
    match = URL_SCHEME.match(source)
    if match and not source.startswith(SCHEMES):
        raise UnsupportedSchemeError(
            f'{source!r}: the scheme {match.group(1)}:// is not supported; weights can be a local '
            f'path or start with {", ".join(SCHEMES)}')


def download(url: str, sha256: Optional[str] = None, progress: bool = True) -> str:
    """Fetch ``url`` into :func:`cache_path` unless it is there already; return that path.

    A cached file is used without any request (and checked when a hash is expected); one that
    does not match is fetched again.
    """
    dst = cache_path(url)
    expected = _expected(sha256, dst)
    part = dst + '.part'
    lock = osp.join(modzoo_home(), 'locks', hashlib.sha1(dst.encode()).hexdigest() + '.lock')
    os.makedirs(osp.dirname(lock), exist_ok=True)
    with FileLock(lock):  # one download per file, across processes
        if osp.isfile(dst):
            if expected is None or file_sha256(dst).startswith(expected):
                return dst
            print_log(f'{dst} does not match sha256 {expected}: fetching {url} again',
                      logger='current', level=logging.WARNING)
            os.remove(dst)
        if offline():
            raise WeightsNotFoundError(
                f'{url} is not cached and HF_HUB_OFFLINE is set: put the file at {dst}'
                + (f' (sha256 {expected}...)' if expected else ''))
        os.makedirs(osp.dirname(dst), exist_ok=True)
        _fetch(url, part, dst, progress)
        actual = file_sha256(part)
        if expected is not None and not actual.startswith(expected):
            os.remove(part)
            raise HashMismatchError(f'{url}: sha256 {actual} does not match the expected '
                                    f'{expected}; the download was deleted')
        os.replace(part, dst)
    return dst


def cache_path(url: str) -> str:
    """``$MODZOO_HOME/checkpoints/<host[:port]>/<url path>`` of an http(s) URL."""
    parsed = urlparse(url)
    parts = [p for p in unquote(parsed.path).split('/') if p]
    if not parts or any(p in ('.', '..') for p in parts):
        raise ValueError(f'URL {url!r} does not name a file')
    return osp.join(modzoo_home(), 'checkpoints', parsed.netloc, *parts)


def file_sha256(path: str) -> str:
    """Hex sha256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b''):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(path: str, expected: Optional[str], source: str) -> None:
    """Raise :class:`HashMismatchError` naming ``source`` unless ``path`` starts with
    ``expected`` (None: nothing to check)."""
    if expected is None:
        return
    actual = file_sha256(path)
    if not actual.startswith(expected):
        raise HashMismatchError(f'{source} ({path}): sha256 {actual} does not match the '
                                f'expected {expected}')


def _expected(sha256: Optional[str], filename: str) -> Optional[str]:
    """The caller's hash (validated, lower case), else the file name's ``-<hex>`` suffix."""
    if sha256 is None:
        match = HASH_SUFFIX.search(osp.basename(filename))
        return match.group(1) if match else None
    if not re.fullmatch(r'[0-9a-fA-F]{8,64}', sha256):
        raise ValueError(f'sha256 {sha256!r} must be 8 to 64 hex digits')
    return sha256.lower()


def _fetch(url: str, part: str, dst: str, progress: bool) -> None:
    """Write the bytes of ``url`` to ``part``, resuming after the bytes already there."""
    offset = osp.getsize(part) if osp.exists(part) else 0
    headers = {'User-Agent': 'modzoo'}
    if offset:
        headers['Range'] = f'bytes={offset}-'
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                          timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # the part file is stale: start again
            os.remove(part)
            return _fetch(url, part, dst, progress)
        raise DownloadError(f'cannot download {url}: HTTP {error.code} {error.reason}') from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, 'reason', error)
        raise DownloadError(f'cannot reach {url} ({reason}); without network access, fetch the '
                            f'file elsewhere and put it at {dst}') from error
    with response:
        if response.status != 206:  # the server sent the whole file
            offset = 0
        remaining = response.length
        total = None if remaining is None else offset + remaining
        with open(part, 'ab' if offset else 'wb') as f, tqdm(
                total=total, initial=offset, unit='B', unit_scale=True, unit_divisor=1024,
                desc=osp.basename(dst), disable=not progress) as bar:
            try:
                for chunk in iter(lambda: response.read(CHUNK_BYTES), b''):
                    f.write(chunk)
                    bar.update(len(chunk))
            except OSError as error:  # socket errors and http.client.IncompleteRead
                raise DownloadError(f'download of {url} broke off ({error}); run again to '
                                    f'resume from {part}') from error
    if total is not None and osp.getsize(part) < total:
        raise DownloadError(f'download of {url} stopped at {osp.getsize(part)} of {total} '
                            f'bytes; run again to resume from {part}')


def _split_hf(uri: str):
    """``hf://ORG/REPO/PATH/IN/REPO`` -> (``ORG/REPO``, ``PATH/IN/REPO``)."""
    parts = uri[len('hf://'):].split('/')
    if len(parts) < 3 or not all(parts):
        raise ValueError(f'{uri!r} is not of the form hf://ORG/REPO/FILE')
    return '/'.join(parts[:2]), '/'.join(parts[2:])


def _hf_file(repo_id: str, filename: str, revision: Optional[str] = None,
             sha256: Optional[str] = None, progress: bool = True) -> str:
    """A file of a Hugging Face repo from huggingface_hub's cache, downloaded when missing."""
    import huggingface_hub
    from huggingface_hub import constants, errors

    uri = f'hf://{repo_id}/{filename}'
    expected = _expected(sha256, filename)
    path = huggingface_hub.try_to_load_from_cache(repo_id, filename, revision=revision)
    if not isinstance(path, str):  # not cached (None) or cached as absent
        try:
            path = huggingface_hub.hf_hub_download(
                repo_id, filename, revision=revision, local_files_only=offline(),
                tqdm_class=None if progress else _SilentTqdm)
        except errors.LocalEntryNotFoundError as error:
            raise WeightsNotFoundError(
                f'{uri} is not in the Hugging Face cache {constants.HF_HUB_CACHE} and cannot be '
                f'fetched{" (HF_HUB_OFFLINE is set)" if offline() else ""}. On a machine with '
                f'network run `hf download {repo_id} {filename}` and copy its Hugging Face cache '
                f'folder to {constants.HF_HUB_CACHE}, or pass the local path of the file '
                'instead') from error
        except (errors.RepositoryNotFoundError, errors.EntryNotFoundError,
                errors.RevisionNotFoundError) as error:
            raise DownloadError(f'cannot download {uri}: {error}') from error
    check_sha256(path, expected, uri)
    return path


class _SilentTqdm(tqdm):
    """A tqdm that shows nothing (huggingface_hub takes a tqdm class)."""

    def __init__(self, *args, **kwargs):
        kwargs['disable'] = True
        super().__init__(*args, **kwargs)


def _timm_weights(name: str, sha256: Optional[str], progress: bool) -> str:
    """The weights file of timm's pretrained cfg ``ARCH[.TAG]``."""
    import difflib

    import timm
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError:  # a known architecture with an unknown tag
        cfg = None
    if cfg is None:
        close = difflib.get_close_matches(name, timm.list_pretrained(), n=5, cutoff=0.6)
        raise KeyError(f'timm has no pretrained weights named {name!r}'
                       + (f'; closest: {", ".join(close)}' if close else ''))
    if cfg.hf_hub_id:
        repo_id, _, revision = cfg.hf_hub_id.partition('@')
        return _hf_file(repo_id, cfg.hf_hub_filename or 'model.safetensors', revision or None,
                        sha256, progress)
    if cfg.url:
        return download(cfg.url, sha256, progress)
    if cfg.file:
        return resolve(cfg.file, sha256, progress)
    raise KeyError(f'timm pretrained cfg {name!r} names no file, URL or Hugging Face repo')


def _zoo_weights(name: str, sha256: Optional[str], progress: bool) -> str:
    """The weights of zoo model ``name``: its metafile ``Weights`` checked against its
    ``Sha256``, else the newest checkpoint of a local run (:func:`local_run_checkpoint`)."""
    from modzoo.model_index import find_model

    info = find_model(name)
    if info.weights:
        return resolve(info.weights, sha256 or info.sha256, progress)
    repo = osp.dirname(osp.dirname(osp.dirname(info.metafile)))  # configs/<family>/metafile.yml
    work_dirs = [osp.join('work_dirs', name), osp.join(repo, 'work_dirs', name)]
    for work_dir in work_dirs:
        path = local_run_checkpoint(work_dir)
        if path is not None:
            check_sha256(path, _expected(sha256, path), f'modzoo://{name}')
            return path
    raise WeightsNotFoundError(
        f'zoo model {name!r} has no published weights and no checkpoint in '
        f'{osp.join("work_dirs", name)}/; make it with: {info.train_command}')


def local_run_checkpoint(work_dir: str) -> Optional[str]:
    """The newest checkpoint of a training run in ``work_dir``: the one its
    ``last_checkpoint`` file names, else the newest ``*.pth``; None when there is none."""
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            path = f.read().strip()
        if osp.isfile(path):
            return path
        if osp.isfile(osp.join(work_dir, osp.basename(path))):  # the run dir was moved
            return osp.join(work_dir, osp.basename(path))
    paths = glob.glob(osp.join(work_dir, '*.pth'))
    return max(paths, key=osp.getmtime) if paths else None
