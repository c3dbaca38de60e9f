"""Ready-made jobs on the runtime: ingest a corpus into an index, query it."""
from aaflow_core.pipelines.discover import discover
from aaflow_core.pipelines.ingest import IngestConfig, IngestResult, ingest
from aaflow_core.pipelines.query import Hit, query

__all__ = ["Hit", "IngestConfig", "IngestResult", "discover", "ingest", "query"]
