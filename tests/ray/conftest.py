"""A real local Ray cluster for the suite: started on loopback once per session, stopped afterwards.

`suggest.distributed.local_cluster`: `ray start --head --block` in its own process group with a fresh
temp dir, 2 CPUs and no dashboard; teardown ends that process group only. Skipped, with the reason,
only where Ray is not installed (`pip install "suggest[ray]"`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("ray", reason='Ray is not installed: pip install "suggest[ray]" (or the test extra)')


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """The address ("127.0.0.1:PORT") of a 2-CPU Ray head started for this session."""
    from suggest.distributed import local_cluster

    with local_cluster(cpus=2) as address:
        yield address
