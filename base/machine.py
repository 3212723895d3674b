"""Facts about this machine's CPU, read from Linux's /proc/cpuinfo (empty on other systems).

Training statistics, `--precision auto` and the benchmarks all record or use them: one parser.
"""
import platform
from typing import Dict, List

_CPUINFO = '/proc/cpuinfo'
# Flags of native bfloat16 arithmetic: AVX512-BF16 (AMD Zen 4, Intel Cooper Lake and later) and
# AMX-BF16 (Intel Sapphire Rapids and later).
BF16_FLAGS = ('avx512_bf16', 'amx_bf16')


def _first_cpu(path: str = _CPUINFO) -> Dict[str, str]:
  """The `key: value` lines of the first processor in /proc/cpuinfo."""
  fields = {}
  try:
    with open(path) as f:
      for line in f:
        if not line.strip():
          if fields:
            break
          continue
        key, _, value = line.partition(':')
        fields[key.strip()] = value.strip()
  except OSError:
    pass
  return fields


def cpu_model(path: str = _CPUINFO) -> str:
  """The CPU's model name, e.g. 'AMD EPYC 9B14'; the platform's own word where Linux's is absent."""
  return _first_cpu(path).get('model name') or platform.processor() or platform.machine()


def cpu_flags(path: str = _CPUINFO) -> List[str]:
  """The CPU's feature flags, as /proc/cpuinfo lists them."""
  return _first_cpu(path).get('flags', '').split()


def simd_flags(path: str = _CPUINFO) -> List[str]:
  """The CPU's vector and matrix instruction sets, which set its step time (and `--precision
  auto`), sorted: e.g. avx, avx2, fma only, or avx512f ... avx512_bf16."""
  return sorted(f for f in cpu_flags(path) if f.startswith(('avx', 'fma', 'amx')))


def has_native_bf16(flags: List[str]) -> bool:
  """Whether CPU `flags` include native bfloat16 arithmetic."""
  return bool(set(BF16_FLAGS) & set(flags))
