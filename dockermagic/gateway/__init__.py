"""The gateway: one service holds the Docker engine; students reach it with a token.

A module per concept:

* :mod:`~dockermagic.gateway.config`: the teacher's file: users and tokens,
  the policy ceiling, the quotas; checking a request against them;
* :mod:`~dockermagic.gateway.scheduler`: fair queueing of programs by user;
* :mod:`~dockermagic.gateway.audit`: the append-only audit log;
* :mod:`~dockermagic.gateway.wire`: what crosses the network (JSON shapes,
  checked on arrival), shared by both ends;
* :mod:`~dockermagic.gateway.hub`: who a token belongs to, asked of a
  JupyterHub and kept a while;
* :mod:`~dockermagic.gateway.oauth`: the Hub's sign-in for browsers
  (JupyterHub's service OAuth, signed cookies);
* :mod:`~dockermagic.gateway.page`: the status page (HTML; a teacher's of
  everyone, a student's of their own);
* :mod:`~dockermagic.gateway.server`: the HTTP service (aiohttp), loaded
  only by ``dockermagic gateway serve``;
* :mod:`~dockermagic.gateway.client`: the runners' and sessions' backend when
  ``DOCKERMAGIC_GATEWAY`` is set (``requests`` only: a kernel needs no socket).

Importing this package loads none of them.
"""

from __future__ import annotations

__all__: list[str] = []
