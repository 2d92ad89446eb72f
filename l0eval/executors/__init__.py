"""Where family runs execute: in this process (``local``, the default) or over a Ray cluster (``ray``).

- ``local``: each family in turn, in this process, exactly as ``l0eval run`` always ran one family.
- ``units``: what the Ray executor schedules: one family trained here (toy or synthetic world), or one
  memory-sized shard of an LLM family's members (one model load, every activation batch streamed
  through all SAEs of the shard).
- ``records``: one JSON record per finished SAE, so a re-run skips what is done, and the family
  results assembled from them.
- ``ray``: the driver (imports Ray; nothing else here does).
"""
