"""A checkpointed batch in its own process, for the crash tests to SIGKILL: chain or agent over N inputs.

python checkpoint_worker.py KIND BASE_URL CHECKPOINT N OUT  ->  OUT holds the outputs as LangChain JSON.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def question(i: int) -> str:
    return f"q-{i} how many words come back from echo number {i}"


def build(kind: str, base_url: str, n: int) -> tuple[Any, list[Any]]:
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(base_url=base_url, api_key="not-needed", model="echo", max_retries=0, temperature=0)
    if kind == "chain":
        prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
        return prompt | model | StrOutputParser(), [{"q": question(i)} for i in range(n)]
    from langchain.agents import create_agent

    return create_agent(model, tools=[]), [{"messages": [{"role": "user", "content": question(i)}]} for i in range(n)]


if __name__ == "__main__":
    kind, base_url, checkpoint, n, out = sys.argv[1:6]
    from langchain_core.load import dumps

    from aaflow_adapters.langchain import AAFlowRunnable

    chain, inputs = build(kind, base_url, int(n))
    outputs = AAFlowRunnable(chain, checkpoint=checkpoint, batch_size=8, max_concurrency=16).batch(inputs)
    Path(out).write_text(dumps(outputs))
