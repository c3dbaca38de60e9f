"""aaflow's side-by-side benchmark suite: stock LangChain/LlamaIndex vs aaflow on the same inputs.

    python -m benchmarks run [--quick] [--suite ingest,remote,rag,scaling,determinism]
    python -m benchmarks render [RESULTS_JSON]

Not part of the installed package: it imports aaflow_core, the adapters and the frameworks.
"""
