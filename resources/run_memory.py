"""Where an asset's output waits for the next step of the same run: in memory.

Dagster's default IO manager pickles every output to the instance's disk and keeps it:
for an extracted batch or a staged import that is every user's data, left outside
anything an erasure or a retention rule reaches. The assets that hand data to the next
step of their run (their jobs run in one process) use this key instead.
"""

import dagster as dg

IN_RUN_MEMORY = "in_run_memory"
IN_RUN_MEMORY_RESOURCES = {IN_RUN_MEMORY: dg.mem_io_manager}
