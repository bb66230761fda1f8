"""Where tomograms run: in this process (``inprocess``), in local worker processes (``local``, with
``local_worker``), or on Ray actors (``ray_actors``), chosen by name in ``registry``; all three hand
out tasks and record results through one task ledger (``ledger``)."""
