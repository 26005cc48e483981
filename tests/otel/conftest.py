from tests.ingest.conftest import client, no_leaked_threads, service  # noqa: F401 - the real ingest service
