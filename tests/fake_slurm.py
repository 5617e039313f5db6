"""A stand-in for SLURM's ``sbatch``, ``sacct``, ``squeue``, ``scancel`` and ``srun``, so the
real submission path (submitit writing sbatch scripts and reading sacct) runs in tests.

State lives in ``$FAKE_SLURM_DIR``: ``submissions.jsonl`` records every sbatch call (its
``#SBATCH`` flags) and ``jobs/<id>.json`` each job's state. A submitted job waits for its
``afterok`` dependencies, is cancelled when one of them did not complete (``--kill-on-invalid-dep``),
then runs its script, one job at a time (no job starts while a file ``hold`` exists there).
``$FAKE_SLURM_REJECT_PARTITION`` names a partition sbatch refuses, and ``$FAKE_SLURM_ACCEPT``
how many submissions it accepts before refusing the rest. :func:`install` writes the commands into a folder to put on ``PATH``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}
COMMANDS = ("sbatch", "sacct", "squeue", "scancel", "srun")


def install(bin_dir: Path) -> Path:
    """Write the fake commands into ``bin_dir`` (each calls this file with its name)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in COMMANDS:
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve()} {name} \"$@\"\n")
        path.chmod(0o755)
    return bin_dir


def _root() -> Path:
    root = Path(os.environ["FAKE_SLURM_DIR"])
    (root / "jobs").mkdir(parents=True, exist_ok=True)
    return root


def _state_path(job_id: str) -> Path:
    return _root() / "jobs" / f"{job_id}.json"


def _read(job_id: str) -> dict:
    try:
        return json.loads(_state_path(job_id).read_text())
    except (OSError, ValueError):
        return {}


def _write(job_id: str, **fields) -> None:
    state = {**_read(job_id), **fields}
    tmp = _state_path(job_id).with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(state))
    tmp.replace(_state_path(job_id))


def _flags(script: Path, argv: list[str]) -> dict:
    flags = {}
    for line in script.read_text().splitlines() + [f"#SBATCH {a}" for a in argv]:
        found = re.match(r"#SBATCH --([\w-]+)(?:=(.*))?$", line.strip())
        if found:
            flags[found.group(1)] = (found.group(2) or "").strip("'\"")
    return flags


def sbatch(argv: list[str]) -> int:
    script = Path(argv[-1])
    flags = _flags(script, argv[:-1])
    if flags.get("partition") and flags["partition"] == os.environ.get("FAKE_SLURM_REJECT_PARTITION"):
        print("sbatch: error: invalid partition specified: " + flags["partition"], file=sys.stderr)
        return 1
    root = _root()
    accepted = len((root / "submissions.jsonl").read_text().splitlines()) if (root / "submissions.jsonl").exists() else 0
    if accepted >= int(os.environ.get("FAKE_SLURM_ACCEPT", "1000000")):
        print("sbatch: error: Batch job submission failed: Requested node configuration is not available", file=sys.stderr)
        return 1
    with open(root / "counter", "a+") as counter:
        fcntl.flock(counter, fcntl.LOCK_EX)
        counter.seek(0)
        job_id = str(int(counter.read() or 1000) + 1)
        counter.seek(0)
        counter.truncate()
        counter.write(job_id)
    deps = flags.get("dependency", "")
    after = deps.split(":")[1:] if deps.startswith("afterok:") else []
    _write(job_id, state="PENDING", after=after, name=flags.get("job-name", ""))
    with open(root / "submissions.jsonl", "a") as log:
        log.write(json.dumps({"job_id": job_id, "flags": flags}) + "\n")
    subprocess.Popen([sys.executable, __file__, "_run", job_id, str(script), flags.get("kill-on-invalid-dep", "no")],
                     start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=open(root / f"runner-{job_id}.log", "w"), env=os.environ.copy())
    print(f"Submitted batch job {job_id}")
    return 0


def _run(job_id: str, script: str, kill_on_invalid: str) -> int:
    time.sleep(1.0)  # a scheduler's latency: the submitter has finished writing the job's files by then
    while True:
        if _read(job_id).get("state") == "CANCELLED":
            return 0
        states = [_read(dep).get("state", "UNKNOWN") for dep in _read(job_id).get("after", [])]
        if any(s in TERMINAL and s != "COMPLETED" for s in states):
            if kill_on_invalid == "yes":
                _write(job_id, state="CANCELLED", reason="DependencyNeverSatisfied")
                return 0
        elif all(s == "COMPLETED" for s in states) and not (_root() / "hold").exists():
            break
        time.sleep(0.2)
    with open(_root() / "run.lock", "w") as lock:  # one job at a time on this small machine
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _read(job_id).get("state") == "CANCELLED":
            return 0
        _write(job_id, state="RUNNING")
        env = {**os.environ, "SLURM_JOB_ID": job_id, "SLURM_JOB_NUM_NODES": "1", "SLURM_NTASKS": "1",
               "SLURM_JOB_NODELIST": "fakenode", "SLURM_NODEID": "0"}
        done = subprocess.run(["bash", script], env=env)
        _write(job_id, state="COMPLETED" if done.returncode == 0 else "FAILED", exit_code=done.returncode)
    return 0


def srun(argv: list[str]) -> int:
    out = err = None
    while argv and argv[0].startswith("--"):
        flag = argv.pop(0)
        if flag in ("--output", "--error"):
            value = argv.pop(0).replace("%j", os.environ["SLURM_JOB_ID"]).replace("%t", "0")
            out, err = (value, err) if flag == "--output" else (out, value)
    env = {**os.environ, "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_STEP_ID": "0"}
    for path in (out, err):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(out or os.devnull, "a") as stdout, open(err or os.devnull, "a") as stderr:
        return subprocess.run(" ".join(argv), shell=True, env=env, stdout=stdout, stderr=stderr).returncode


def sacct(argv: list[str]) -> int:
    ids = [argv[i + 1] for i, a in enumerate(argv) if a == "-j"]
    print("JobID|State|NodeList")
    for job_id in ids:
        state = _read(job_id).get("state")
        if state:
            print(f"{job_id}|{state}|fakenode")
    return 0


def squeue(argv: list[str]) -> int:
    print("JOBID STATE NAME")
    for path in sorted((_root() / "jobs").glob("*.json")):
        state = json.loads(path.read_text())
        if state.get("state") not in TERMINAL:
            print(f"{path.stem} {state['state']} {state.get('name', '')}")
    return 0


def scancel(argv: list[str]) -> int:
    for job_id in (a for a in argv if a.isdigit()):
        if _read(job_id).get("state") in ("PENDING", None):
            _write(job_id, state="CANCELLED", reason="scancel")
        with open(_root() / "scancel.log", "a") as log:
            log.write(job_id + "\n")
    return 0


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "_run":
        sys.exit(_run(*args))
    sys.exit({"sbatch": sbatch, "sacct": sacct, "squeue": squeue, "scancel": scancel, "srun": srun}[command](args))
