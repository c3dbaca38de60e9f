"""Ready-made jobs on the runtime: ingest a corpus into an index, query it, answer questions."""
from aaflow_core.pipelines.ask import Answer, AskConfig, ask
from aaflow_core.pipelines.discover import discover
from aaflow_core.pipelines.ingest import IngestConfig, IngestResult, ingest
from aaflow_core.pipelines.query import Hit, query

__all__ = ["Answer", "AskConfig", "Hit", "ask", "IngestConfig", "IngestResult", "discover", "ingest", "query"]
