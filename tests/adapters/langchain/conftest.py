"""Shared LangChain pieces: the real bundled model, a real FAISS store, a callback recorder."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import ParrotFakeChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough

QUESTIONS = [
    "How do I decode a JSON document?", "What does fnmatch do with wildcards?", "How to split a shell command line?",
    "Which exception is raised for invalid JSON?", "How can I pretty print JSON with indentation?",
    "Does fnmatch ignore case on Windows?", "How are quotes handled by shlex?", "What is a JSONDecoder?",
    "How do I serialize a Python dict to a string?", "What does shlex.quote return?",
    "Can fnmatch translate a pattern to a regex?", "How do I load JSON from a file object?",
    "What is the punctuation_chars option?", "How do I sort keys when dumping JSON?",
    "Which characters does fnmatch treat specially?", "How do I read tokens one by one with shlex?",
    "What does object_hook do?", "Is shlex POSIX compliant?",
]


@pytest.fixture(scope="session")
def hf_embeddings() -> Any:
    """Real HuggingFaceEmbeddings on the bundled all-MiniLM-L6-v2 (offline), loaded once."""
    from langchain_huggingface import HuggingFaceEmbeddings

    from aaflow_core.models.embedding import bundled_model_path

    return HuggingFaceEmbeddings(model_name=str(bundled_model_path()))


@pytest.fixture(scope="session")
def corpus_docs(small_corpus: Path) -> list[Document]:
    """The start of each pydoc page (6 KB): ~30 chunks in all keeps model time inside the test budget."""
    return [Document(page_content=p.read_text(encoding="utf-8")[:6000], metadata={"source": p.name})
            for p in sorted(small_corpus.glob("*.txt"))]


@pytest.fixture(scope="session")
def splitter() -> Any:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    return RecursiveCharacterTextSplitter(chunk_size=600, chunk_overlap=60)


@pytest.fixture(scope="session")
def faiss_store(hf_embeddings: Any, corpus_docs: list[Document], splitter: Any) -> Any:
    from langchain_community.vectorstores import FAISS

    return FAISS.from_documents(splitter.split_documents(corpus_docs), hf_embeddings)


def format_docs(docs: list[Document]) -> str:
    return "\n\n".join(f"[{d.metadata['source']}] {d.page_content[:80]}" for d in docs)


def rag_chain(retriever: Runnable[Any, Any], model: Runnable[Any, Any] | None = None) -> Runnable[Any, Any]:
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from the context."), ("human", "Context:\n{context}\n\nQuestion: {question}")]
    )
    return ({"context": retriever | RunnableLambda(format_docs), "question": RunnablePassthrough()}
            | prompt | (model or ParrotFakeChatModel()) | StrOutputParser())


class Recorder(BaseCallbackHandler):
    """Every callback event as (event, run name, tags, parent run name): comparable across runs."""

    def __init__(self) -> None:
        self.names: dict[UUID, str] = {}
        self.raw: list[tuple[str, UUID, UUID | None, tuple[str, ...], str | None]] = []
        self._lock = threading.Lock()

    def _add(self, event: str, run_id: UUID, parent: UUID | None, tags: list[str] | None, name: str | None) -> None:
        with self._lock:
            if name is not None:
                self.names[run_id] = name
            self.raw.append((event, run_id, parent, tuple(sorted(tags or [])), name))

    def events(self) -> list[tuple[str, str, tuple[str, ...], str | None]]:
        out = [(e, self.names.get(r, "?"), t, self.names.get(p) if p else None) for e, r, p, t, _ in self.raw]
        return sorted(out, key=repr)

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                       tags: list[str] | None = None, **kw: Any) -> None:
        self._add("chain_start", run_id, parent_run_id, tags, kw.get("name"))

    def on_chain_end(self, outputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kw: Any) -> None:
        self._add("chain_end", run_id, parent_run_id, kw.get("tags"), None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None, **kw: Any) -> None:
        self._add(f"chain_error:{type(error).__name__}", run_id, parent_run_id, kw.get("tags"), None)

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                            tags: list[str] | None = None, **kw: Any) -> None:
        self._add(f"chat_start:{messages[0][-1].content[:40]}", run_id, parent_run_id, tags, kw.get("name"))

    def on_llm_end(self, response: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kw: Any) -> None:
        self._add(f"llm_end:{response.generations[0][0].text[:40]}", run_id, parent_run_id, kw.get("tags"), None)

    def on_retriever_start(self, serialized: Any, query: str, *, run_id: UUID, parent_run_id: UUID | None = None,
                           tags: list[str] | None = None, **kw: Any) -> None:
        self._add(f"retriever_start:{query}", run_id, parent_run_id, tags, kw.get("name"))

    def on_retriever_end(self, documents: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kw: Any) -> None:
        ids = ",".join(d.id or "" for d in documents)
        self._add(f"retriever_end:{ids}", run_id, parent_run_id, kw.get("tags"), None)

    def on_tool_start(self, serialized: Any, input_str: str, *, run_id: UUID, parent_run_id: UUID | None = None,
                      tags: list[str] | None = None, **kw: Any) -> None:
        self._add(f"tool_start:{input_str[:60]}", run_id, parent_run_id, tags, kw.get("name"))

    def on_tool_end(self, output: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kw: Any) -> None:
        self._add(f"tool_end:{str(getattr(output, 'content', output))[:60]}", run_id, parent_run_id, kw.get("tags"),
                  None)
