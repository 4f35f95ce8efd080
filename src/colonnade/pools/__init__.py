"""Process model: the master (activation service), workers and single-process mode.

- ``single.py``: one process serves everything (``--workers 0``); ``reload.py``: live
  reload of a serving process.
- ``master.py``: the activation service, wiring its parts: ``frontdoor.py`` (listening
  sockets, connections no worker has), ``workers.py`` and ``spawn.py`` (worker
  processes), ``supervision.py`` (health, recycling, idle, rapid-fail),
  ``commands.py`` (control commands); ``pool.py``: pool and worker records, states.
- ``worker.py``: a pool's worker process; ``routes.py``: which pool serves a request;
  ``routing.py``: a worker's side of it, handing connections over; ``ipc.py``: the
  master-worker control channel. The master's process is started by
  ``management/master_process.py``.
- ``config.py``: what workers are built from; ``sandbox.py``: identity, limits,
  Landlock; ``control.py``: the control socket of ``colonnade pools|recycle|stop|start``.

See ``docs/process-model.md``.
"""
