"""The benchmarks' memory instrument: what the issue's memory checks are read with."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.common import fresh_process_env
from tests.conftest import REPO

PROBE = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from benchmarks.common import peak_memory
transient = np.ones(96 * 2**20 // 8)  # an earlier, larger peak in the same process
del transient
with peak_memory("cpu") as peak:
    body = np.ones(32 * 2**20 // 8)
    del body
print(json.dumps(peak["bytes"] / 2**20))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to reset the peak-RSS mark")
def test_peak_memory_reads_the_body_alone():
    """32 MiB allocated inside the block after a 96 MiB transient before it reads 32 MiB (the
    earlier measure, the growth of ru_maxrss, read 17 MiB here)."""
    out = subprocess.run([sys.executable, "-c", PROBE, str(REPO)], capture_output=True, text=True, check=True, env=fresh_process_env())
    assert json.loads(out.stdout.strip().splitlines()[-1]) == pytest.approx(32, abs=2)


def test_gpu_checks_script_parses_and_handles_every_step_it_lists():
    """tools/gpu_checks.sh runs only under a GPU lease, where a typo costs device time: it must
    parse, and every step its header lists must be one it acts on."""
    import re

    script = REPO / "tools" / "gpu_checks.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    listed = re.search(r"# Steps, in this order: ([a-z0-9 -]+?) \(", text).group(1).split()
    handled = set(re.findall(r"want ([a-z0-9-]+)", text))
    assert listed and set(listed) == handled, (listed, handled)
