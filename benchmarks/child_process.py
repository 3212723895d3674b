"""Run a benchmark's measured part in a child process and watch the peak memory of its whole tree
(Beam may start workers), so the numbers do not include the parent's imports."""
import os
import subprocess
import sys
import time
from typing import List, Sequence, Tuple

import psutil


def cpu_seconds() -> float:
  """User + system CPU seconds of this process and its reaped children (what other jobs' load
  does not change, unlike wall time)."""
  return sum(os.times()[:4])


def run_watched(argv: Sequence[str], cwd: str) -> Tuple[int, List[str], int]:
  """`python argv...` in `cwd`: (exit code, its stdout lines, peak RSS in bytes of it and its
  children, sampled every 50 ms)."""
  child = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, cwd=cwd)
  peak = 0
  parent = psutil.Process(child.pid)
  while child.poll() is None:
    try:
      procs = [parent] + parent.children(recursive=True)
      peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
    except psutil.Error:
      pass
    time.sleep(0.05)
  return child.returncode, child.stdout.read().strip().splitlines(), peak
