"""`python -m pra release-lock` (what `make run` does first): a stale Snakemake lock is released, a live
run's lock is left alone."""
import subprocess
import sys

from conftest import run


def _named_snakemake(cwd):
    """A process whose command line says snakemake, working in `cwd` (once it has exec'd)."""
    import time
    from pathlib import Path

    p = subprocess.Popen(["bash", "-c", "exec -a snakemake sleep 60"], cwd=cwd)
    cmdline = Path(f"/proc/{p.pid}/cmdline")
    deadline = time.time() + 10
    while not cmdline.read_bytes().startswith(b"snakemake") and time.time() < deadline:
        time.sleep(0.01)
    return p


def test_a_lock_is_released_only_when_no_snakemake_runs_in_the_folder(tmp_path):
    from pra.locks import lock_files, release

    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("x")
    assert lock_files(tmp_path)
    # a process named snakemake working in the folder (as a run would) keeps the lock
    live = _named_snakemake(tmp_path)
    try:
        assert "left alone" in release(tmp_path)
        assert lock_files(tmp_path)
    finally:
        live.kill()
        live.wait()
    # one working elsewhere does not
    other = tmp_path / "other"
    other.mkdir()
    elsewhere = _named_snakemake(other)
    try:
        p = run([sys.executable, "-m", "pra", "release-lock", "--directory", str(tmp_path)])
    finally:
        elsewhere.kill()
        elsewhere.wait()
    assert "released a stale lock" in p.stderr and not lock_files(tmp_path)
    assert release(tmp_path) == "not locked"
