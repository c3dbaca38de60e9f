"""argv: BASE_URL BATCH_DIR N OUT. Runs prompt | ChatOpenAI | parser with remote="batch-api" over N inputs
and writes the outputs as JSON to OUT (the test kills this process while it polls, then runs it again)."""
from __future__ import annotations

import json
import sys

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI

from aaflow_adapters.langchain import AAFlowRunnable
from aaflow_core.remote.batches import BatchLimits

base_url, batch_dir, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
chain = ChatPromptTemplate.from_template("Q: {q}") | ChatOpenAI(base_url=base_url, api_key="k", model="m") | StrOutputParser()
runnable = AAFlowRunnable(chain, remote="batch-api", batch_dir=batch_dir, batch_limits=BatchLimits(poll_s=0.1, max_poll_s=0.2))
print("started", flush=True)
outputs = runnable.batch([{"q": f"question {i}"} for i in range(n)])
with open(out, "w") as f:
    json.dump({"outputs": outputs, "usage": runnable.last_batch_usage.to_dict()}, f)
