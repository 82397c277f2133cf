"""Atomic writes, safetensors checkpoints with a JSON config, and per-stage run manifests."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import tempfile
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from rewarddiff import UserError, __version__


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temp path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from None


def existing_file(path: str | Path, kind: str = "") -> Path:
    """``path`` if it is a file; else a UserError saying what it is instead (``kind``: what
    was expected, e.g. ``"a FASTA file"``)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected {kind or 'a file'}")
    if not path.exists():
        raise UserError(f"{path}: file not found")
    return path


def read_user_text(path: str | Path, kind: str = "a text file") -> str:
    """The text of a user's file (any line endings; a UTF-8 BOM dropped). A UserError naming
    the file (and line) for a missing path, a folder, a gzip file, bytes that are not UTF-8
    and NUL bytes (binary data)."""
    raw = existing_file(path, kind).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raise UserError(f"{path}: gzip-compressed; decompress it first (gunzip {Path(path).name})")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line}: byte 0x{raw[err.start]:02x} is not UTF-8 text "
                        f"(expected {kind})") from None  # fmt: skip
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        raise UserError(f"{path}: line {line}: NUL byte (binary data, expected {kind})")
    return text


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict) -> None:
    """Write ``tensors`` as safetensors with ``metadata`` (JSON-serialisable) in the header."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"config": json.dumps(metadata, default=str)})


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Inverse of :func:`save_tensors`; no pickle is involved. A file that is not a complete
    safetensors file with our JSON config (truncated, a renamed pickle, foreign) is a
    UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found" + (" (a folder)" if path.is_dir() else ""))
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            text = (f.metadata() or {}).get("config")
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise UserError(
            f"{path}: not a readable safetensors checkpoint ({str(err).splitlines()[0]})"
        ) from None
    if text is None:
        raise UserError(f"{path}: safetensors file without the JSON config rewarddiff writes")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: its JSON config is invalid ({err.msg})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{path}: its JSON config is not an object")
    return tensors, meta


def matching_checkpoint(path: str | Path, settings: dict):
    """The scratch checkpoint at ``path`` as ``(tensors, meta)`` if it was written for
    ``settings`` (its ``meta["settings"]``); otherwise None — silently when there is none,
    after one line saying why when it is unreadable or was written for other settings."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        checkpoint = load_tensors(path)
    except UserError as err:  # truncated or foreign file: it holds no progress to keep
        print(f"{path}: unreadable ({type(err).__name__}); starting afresh", flush=True)
        return None
    saved = checkpoint[1].get("settings")
    if saved != settings:
        changed = ", ".join(settings_diff(saved or {}, settings)) or "format"
        print(f"{path}: written for other inputs or settings ({changed}); starting afresh",
              flush=True)  # fmt: skip
        return None
    return checkpoint


def save_model(path: str | Path, model: torch.nn.Module, config: dict) -> None:
    """Model weights as safetensors plus the JSON config that rebuilds the network."""
    save_tensors(path, model.state_dict(), config)


def flatten_state(prefix: str, state) -> tuple[dict[str, torch.Tensor], object]:
    """Split a nested state (optimizer/RNG) into tensors and a JSON skeleton referencing them."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(obj, key):
        if isinstance(obj, torch.Tensor):
            tensors[key] = obj
            return {"__tensor__": key}
        if isinstance(obj, dict):
            return {
                "__dict__": [
                    [walk(k, f"{key}.k{i}"), walk(v, f"{key}.{i}")]
                    for i, (k, v) in enumerate(obj.items())
                ]
            }
        if isinstance(obj, (list, tuple)):
            return {"__list__": [walk(v, f"{key}.{i}") for i, v in enumerate(obj)]}
        return obj

    return tensors, walk(state, prefix)


def unflatten_state(skeleton, tensors: dict[str, torch.Tensor]):
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__dict__" in skeleton:
            return {
                unflatten_state(k, tensors): unflatten_state(v, tensors)
                for k, v in skeleton["__dict__"]
            }
        if "__list__" in skeleton:
            return [unflatten_state(v, tensors) for v in skeleton["__list__"]]
    return skeleton


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions(names=("torch", "numpy", "snakemake", "biopython", "rdkit")) -> dict:
    versions = {"rewarddiff": __version__, "python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _is_record(path: Path) -> bool:
    """Run records and scratch files that do not determine a result: manifests, logs, temp
    files, checkpoints."""
    name = path.name
    return (
        name.startswith(".")
        or name in ("manifest.json", "checkpoint.safetensors")
        or name.endswith((".manifest.json", ".log", ".partial.csv"))
    )


def content_hash(path: str | Path) -> str:
    """SHA-256 (16 hex digits) of a file's bytes; of a folder, of every file's relative name
    and bytes except run records (:func:`_is_record`). Equal content, equal hash."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: not found")
    digest = hashlib.sha256()
    files = (
        [path]
        if path.is_file()
        else sorted(p for p in path.rglob("*") if p.is_file() and not _is_record(p))
    )
    for file in files:
        if file != path:
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def settings_diff(old, new, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts (``a.b``), sorted."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [] if old == new else [prefix or "<value>"]
    keys = sorted(set(old) | set(new), key=str)
    return [d for k in keys for d in settings_diff(
        old.get(k), new.get(k), f"{prefix}.{k}" if prefix else str(k))]  # fmt: skip


# scratch files a failed or interrupted stage keeps: the progress a re-run resumes from
SCRATCH = ("checkpoint.safetensors", "train_log.partial.csv")


@contextmanager
def stage_output(path: str | Path):
    """Create output folder ``path`` (and missing parents) for a stage. If the stage fails,
    remove what it created there (files, then folders left empty) except its scratch
    checkpoints (:data:`SCRATCH`), so a failure leaves no partial output; files and folders
    that were there before are kept."""
    path = Path(path)
    before = set(path.rglob("*")) if path.exists() else set()
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        new = sorted(set(path.rglob("*")) - before, key=lambda p: -len(p.parts))
        for item in new:
            if item.is_file() and item.name not in SCRATCH:
                item.unlink()
        for folder in [p for p in new if p.is_dir()] + missing:
            try:
                folder.rmdir()
            except OSError:  # not empty (scratch files, or another stage's): keep it
                pass
        raise


def probe_writable(folder: str | Path) -> None:
    """Create ``folder`` and a file in it (removed at once): a read-only or full destination
    fails here, before hours of work, with the OSError naming the path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
    os.close(fd)
    os.unlink(probe)


def config_hash(obj) -> str:
    """Short SHA-256 of ``obj`` as canonical JSON: equal settings, equal hash."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def compute_device() -> str:
    """What torch computes on here: ``cuda (<GPU name>)`` or ``cpu``."""
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return "cpu"


class Manifest:
    """``manifest.json`` for a stage: inputs, params and their hash, versions, git commit,
    seed, host, device, wall time."""

    def __init__(self, stage: str, inputs: dict, params: dict, seed: int | None = None):
        self.record = {
            "stage": stage,
            "inputs": inputs,
            "input_hashes": {  # of the inputs that are one existing file or folder
                k: content_hash(v)
                for k, v in inputs.items()
                if isinstance(v, str | Path) and v and os.path.exists(v)
            },
            "params": params,
            "config_hash": config_hash({"stage": stage, "params": params}),
            "seed": seed,
            "versions": package_versions(),
            "git_commit": git_commit(),
            "host": platform.node(),
            "device": compute_device(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        self._t0 = time.time()

    def write(self, path: str | Path, **results) -> None:
        self.record.update(results)
        self.record["wall_time_s"] = round(time.time() - self._t0, 3)
        write_json(path, self.record)
