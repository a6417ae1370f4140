"""The files of prometheus_client's multiprocess mode, kept to one set per live process.

Each process writes its counters and histograms to `<type>_<pid>.db` in the shared directory,
and a scrape adds up every file. A process that has exited keeps counting there, so its file
is folded into `<type>_archive.db` (its counts stay in the totals, and the directory does not
grow by one file per process that ever ran: gunicorn's recycled workers, one work horse per
job, one cron run every few minutes). Folding holds METRICS_LOCK exclusively, and a scrape
holds it shared, so a scrape never sees a process's counts in both files or in neither.

Only the standard library and prometheus_client are imported here: gunicorn.conf.py loads this
file by its path in the gunicorn master, which must not import the shop.
"""
from __future__ import annotations

import fcntl
import os
import re

METRICS_LOCK = "merge.lock"
_KINDS = ("counter", "histogram", "summary")
_PROCESS_FILE = re.compile(r"(counter|histogram|summary)_(\d+)\.db$")


def fold(path: str, pid: int) -> None:
    """Add the files of process `pid`, which has exited, into the archive files (written
    aside, then renamed) and remove them."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key
    from prometheus_client.multiprocess import MultiProcessCollector

    with open(os.path.join(path, METRICS_LOCK), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for kind in _KINDS:
            dead = os.path.join(path, f"{kind}_{pid}.db")
            if not os.path.exists(dead):
                continue
            archive = os.path.join(path, f"{kind}_archive.db")
            sources = [f for f in (archive, dead) if os.path.exists(f)]
            # accumulate=False: buckets stay per bucket, as a process writes them.
            merged = MultiProcessCollector.merge(sources, accumulate=False)
            aside = os.path.join(path, f"{kind}_archive.tmp")  # not *.db: no scrape reads it
            if os.path.exists(aside):
                os.remove(aside)
            out = MmapedDict(aside)
            try:
                for metric in merged:
                    for sample in metric.samples:
                        key = mmap_key(metric.name, sample.name, list(sample.labels),
                                       list(sample.labels.values()), metric.documentation)
                        out.write_value(key, sample.value, 0.0)
            finally:
                out.close()
            os.replace(aside, archive)
            os.remove(dead)


def fold_gone(path: str) -> list[int]:
    """Fold the files of every process that is no longer running (one killed, or a previous
    run's); returns their pids. A file whose pid runs again (reused) is left: it is still
    counted, and folded once that process is gone."""
    gone = set()
    for name in os.listdir(path):
        match = _PROCESS_FILE.match(name)
        if match and not running(int(match.group(2))):
            gone.add(int(match.group(2)))
    for pid in sorted(gone):
        fold(path, pid)
    return sorted(gone)


def running(pid: int) -> bool:
    """Whether process `pid` exists (a zombie, not yet waited for, still does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
