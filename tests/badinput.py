"""Shared harness of the bad-input corpus: run a CLI stage in this process and check that it
fails as a user should see it: exit status 2, one line on stderr naming the file, record and
problem, no traceback, and nothing written to (or left in) the output paths."""

from __future__ import annotations

import hashlib
from pathlib import Path

from rewarddiff.cli import main


def snapshot(paths) -> dict[Path, str | None]:
    """Content hash of each path (None = absent; a folder hashes its file names and bytes)."""
    state = {}
    for path in map(Path, paths):
        if path.is_dir():
            digest = hashlib.sha256()
            for f in sorted(p for p in path.rglob("*") if p.is_file()):
                digest.update(str(f.relative_to(path)).encode() + f.read_bytes())
            state[path] = "dir:" + digest.hexdigest()
        elif path.exists():
            state[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            state[path] = None
    return state


def assert_clean_error(capsys, argv, *fragments, outputs=(), keep=()):
    """``rewarddiff argv`` exits 2 with one stderr line holding every fragment; each path of
    ``outputs`` is absent afterwards (no empty folder either) and each of ``keep`` (the
    user's inputs) is byte for byte as before. Returns the error line."""
    before = snapshot(keep)
    capsys.readouterr()
    try:  # an exception other than UserError escapes: a bug
        status = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse's usage errors
        status = exit_.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2, f"exit {status}; stderr: {err}"
    assert "Traceback" not in err
    assert len(lines) == 1, err
    for fragment in fragments:
        assert str(fragment) in lines[0], lines[0]
    for path in map(Path, outputs):
        assert not path.exists(), f"{path} was written by a failed stage"
    assert snapshot(keep) == before, "a user input was changed"
    return lines[0]
